"""Real Apache (apache2 + mod_ssl) and real Tomcat 10 (PKCS#12 keystore) as rollout targets.

Each scenario runs on a fresh local cloud through ScenarioRunner (the helpers of
test_real_servers.py); success is what a TLS client sees: the served serial (SNI) equals the
renewed certificate's serial. A config test that fails after the new files are written ends
ROLLED_BACK: the files hold the old certificate again and the server, never reloaded, still
serves it. Install the servers with scripts/install_servers.sh (root).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import pkcs12
from rollout_core.probe import format_serial_hex
from rollout_core.target_defaults import complete_target, default_files

from cert_rollout.localcloud import real_servers
from tests.e2e.conftest import target_by_id
from tests.e2e.test_real_servers import assert_stopped, expected_serial, load, run

pytestmark = [pytest.mark.e2e, pytest.mark.servers]

needs_apache = pytest.mark.skipif(not real_servers.available("apache"),
                                  reason="apache2 not installed: run scripts/install_servers.sh as root")
needs_tomcat = pytest.mark.skipif(not real_servers.available("tomcat"),
                                  reason="tomcat10 (or java / keytool) not installed: "
                                         "run scripts/install_servers.sh as root")


def assert_rolled_out(report: dict[str, Any], served: dict[str, Any], tid: str) -> dict[str, Any]:
    entry = report["events"][0]
    assert (entry["status"], entry["outcome"]) == ("SUCCEEDED", "ROLLED_OUT"), entry.get("error")
    new = expected_serial(report, "web")
    t = target_by_id(entry)[tid]
    assert t["outcome"] == "VERIFIED", t
    assert served[tid]["initial"] == report["certificates"]["web"]["serial_initial"]
    assert served[tid]["final"] == new  # a real TLS handshake to the real server, by SNI
    return served[tid]["item"]


def assert_rolled_back(report: dict[str, Any], served: dict[str, Any], tid: str) -> str:
    entry = report["events"][0]
    assert entry["outcome"] == "FAILED", entry
    t = target_by_id(entry)[tid]
    assert t["outcome"] == "ROLLED_BACK", t
    assert "install" in (t["reason"] or ""), t
    old = report["certificates"]["web"]["serial_initial"]
    assert served[tid]["initial"] == old
    assert served[tid]["final"] == old  # never reloaded with the new files
    return old


def the_kinds_default_files(item: dict[str, Any], kind: str, directory: Path, tid: str) -> None:
    """The target's files are exactly what the kind's defaults would give a short entry."""
    assert item["server"] == kind
    assert item["files"] == default_files(kind, str(directory), tid)
    short = {"targetId": tid, "server": kind, "paths": {"directory": str(directory)}}
    assert complete_target(short)["files"] == item["files"]


@needs_apache
def test_apache_target_rolls_out_and_serves_the_new_serial() -> None:
    report, served = run(load("apache.yaml"))
    item = assert_rolled_out(report, served, "apache-1")
    the_kinds_default_files(item, "apache", served["apache-1"]["directory"], "apache-1")
    assert item["testCommand"][0].endswith("apache2") and item["testCommand"][1] == "-t"
    assert item["reloadCommand"][-2:] == ["-k", "graceful"]
    assert_stopped(served)


@needs_apache
def test_apache_config_test_failure_rolls_back_and_keeps_serving_the_old_certificate() -> None:
    report, served = run(load("apache-config-test-fails.yaml"))
    old = assert_rolled_back(report, served, "apache-broken")
    leaf = (served["apache-broken"]["directory"] / "apache-broken.crt").read_bytes()
    assert format_serial_hex(x509.load_pem_x509_certificate(leaf).serial_number) == old
    assert_stopped(served)


def keystore_serial(directory: Path, tid: str) -> str:
    password = (directory / f"{tid}.p12.pass").read_text().splitlines()[0].encode()
    store = pkcs12.load_pkcs12((directory / f"{tid}.p12").read_bytes(), password)
    assert store.cert is not None and store.cert.friendly_name == tid.encode()
    return format_serial_hex(store.cert.certificate.serial_number)


@needs_tomcat
def test_tomcat_target_rolls_out_a_pkcs12_keystore_and_serves_the_new_serial() -> None:
    report, served = run(load("tomcat.yaml"))
    item = assert_rolled_out(report, served, "tomcat-1")
    directory = served["tomcat-1"]["directory"]
    the_kinds_default_files(item, "java", directory, "tomcat-1")
    assert keystore_serial(directory, "tomcat-1") == served["tomcat-1"]["final"]
    assert item["testCommand"][-1].endswith("configtest.sh")
    assert item["reloadCommand"][-1].endswith("restart.sh")
    assert_stopped(served)


@needs_tomcat
def test_tomcat_config_test_failure_rolls_back_and_keeps_serving_the_old_keystore() -> None:
    report, served = run(load("tomcat-config-test-fails.yaml"))
    old = assert_rolled_back(report, served, "tomcat-broken")
    assert keystore_serial(served["tomcat-broken"]["directory"], "tomcat-broken") == old
    assert_stopped(served)
