"""installer/install_bundle.py for a verifyFrom-node target: the node probes its own target
after the reload (and once before the install) and reports the served chain, the serials seen
and how many handshakes in a row served the wanted serial in ROLLOUT_RESULT "served", kept
under SSM's 24,000 characters of stdout."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import time
from pathlib import Path

import pytest
from cryptography import x509
from rollout_core.probe import format_serial_hex, probe_served_certificate

from tests.unit.test_installer import INSTALLER, INSTALLER_PYTHON, node, pki  # noqa: F401 - fixtures
from tests.unit.test_installer import _server_target as server_target
from tests.unit.test_target_server import HOST, free_ports, servers, wait_for_serial  # noqa: F401 - fixture

SNI = "web.internal.example"


def installer_module():
    spec = importlib.util.spec_from_file_location("install_bundle_under_test", INSTALLER)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


IB = installer_module()


def installer_python_version() -> tuple[int, int]:
    """The node's python3 (INSTALLER_PYTHON, tests/unit/test_installer.py) version."""
    out = subprocess.run([INSTALLER_PYTHON, "-c", "import sys; print(*sys.version_info[:2])"], capture_output=True,
                         text=True, check=True).stdout.split()
    return int(out[0]), int(out[1])


def node_target(node, port: int, probes: int = 3):  # noqa: F811
    target, config, pid = server_target(node, port)
    target["verify"] = {"host": HOST, "port": port, "sni": SNI, "probes": probes}
    return target, config, pid


def chain_serials(served: dict) -> list[int]:
    return [x509.load_der_x509_certificate(bytes.fromhex(c)).serial_number for c in served["chain"]]


@pytest.mark.timeout(60)
def test_install_reports_the_new_chain_served_three_times_in_a_row(node, pki, servers):  # noqa: F811
    (port,) = free_ports(1)
    target, config, pid = node_target(node, port)
    node.put_secret(pki["old"])
    assert node.run("install", dict(target, verify=None))[0] == 0  # the operator's files, before the server runs
    servers(config, pid, node.tmp / "server.log")
    wait_for_serial(port, SNI, pki["old"].serial)

    node.put_secret(pki["new"])
    code, result = node.run("install", target, expected_serial=format_serial_hex(pki["new"].serial),
                            extra_env={"ROLLOUT_COMMAND_TIMEOUT": "10"})
    assert code == 0, result
    assert result["servedBefore"] == format_serial_hex(pki["old"].serial)
    served = result["served"]
    assert served["probes"] == served["required"] == 3 and served["error"] is None
    assert served["serialsSeen"][-3:] == [format_serial_hex(pki["new"].serial)] * 3
    assert chain_serials(served)[0] == pki["new"].serial
    if installer_python_version() >= (3, 10):
        # the whole chain as served: leaf, intermediate, root (the test server sends the fullchain file)
        assert len(served["chain"]) == 3 and served["chainComplete"] is True
    else:  # no get_unverified_chain: the leaf only, and it says so
        assert len(served["chain"]) == 1 and served["chainComplete"] is False
    assert served["at"].endswith("Z")

    code, result = node.run("rollback", target, expected_serial=format_serial_hex(pki["new"].serial),
                            extra_env={"ROLLOUT_COMMAND_TIMEOUT": "10"})
    assert code == 0, result
    assert result["served"]["serialsSeen"][-1] == format_serial_hex(pki["old"].serial)
    assert result["served"]["probes"] == 3
    assert "servedBefore" not in result


@pytest.mark.timeout(60)
def test_unreachable_target_is_an_error_text_and_the_install_still_succeeds(node, pki):  # noqa: F811
    (port,) = free_ports(1)  # nothing listens
    target, _, _ = node_target(node, port)
    target["reloadCommand"] = None
    node.put_secret(pki["new"])
    started = time.monotonic()
    code, result = node.run("install", target, expected_serial=format_serial_hex(pki["new"].serial),
                            extra_env={"ROLLOUT_COMMAND_TIMEOUT": "2"})
    assert code == 0, result
    assert result["servedBefore"] is None
    served = result["served"]
    assert served["probes"] == 0 and served["chain"] == [] and served["serialsSeen"] == []
    assert f"{HOST}:{port}" in served["error"] and "ConnectionRefused" in served["error"]
    assert served["attempts"] > 1  # it kept trying until its deadline: one command timeout
    assert time.monotonic() - started < 15


@pytest.mark.timeout(60)
def test_a_stale_server_is_reported_with_the_serial_it_serves(node, pki, servers, tmp_path):  # noqa: F811
    (port,) = free_ports(1)
    target, config, pid = node_target(node, port)
    node.put_secret(pki["old"])
    assert node.run("install", dict(target, verify=None))[0] == 0
    settings = json.loads(Path(config).read_text())
    settings["listeners"][0]["fault"] = "stale"  # ignores reloads
    Path(config).write_text(json.dumps(settings))
    servers(config, pid, node.tmp / "server.log")
    wait_for_serial(port, SNI, pki["old"].serial)
    node.put_secret(pki["new"])
    code, result = node.run("install", target, expected_serial=format_serial_hex(pki["new"].serial),
                            extra_env={"ROLLOUT_COMMAND_TIMEOUT": "2"})
    assert code == 0, result
    served = result["served"]
    assert served["probes"] == 0 and served["error"] is None
    assert set(served["serialsSeen"]) == {format_serial_hex(pki["old"].serial)}
    assert chain_serials(served)[0] == pki["old"].serial
    assert probe_served_certificate(HOST, port, SNI).serial == pki["old"].serial


def test_a_target_without_verify_reports_no_evidence(node, pki):  # noqa: F811
    from tests.unit.test_installer import files_for, py

    node.put_secret(pki["new"])
    code, result = node.run("install", node.target(files_for(node), reload=py("pass")))
    assert code == 0, result
    assert "served" not in result and "servedBefore" not in result


@pytest.mark.parametrize("verify, problem", [
    ({"host": "", "port": 443}, "verify.host"),
    ({"host": "h", "port": "443"}, "verify.port"),
    ({"host": "h", "port": 443, "probes": 0}, "verify.probes"),
    ({"host": "h", "port": 443, "sni": ""}, "verify.sni"),
    ("h:443", "verify must be an object"),
])
def test_bad_verify_settings_are_refused_before_anything(node, pki, verify, problem):  # noqa: F811
    from tests.unit.test_installer import files_for, py

    node.put_secret(pki["new"])
    target = node.target(files_for(node), reload=py("pass"))
    target["verify"] = verify
    code, result = node.run("install", target)
    assert code == 2 and problem in result["error"], result
    assert not (node.ssl / "privkey.pem").exists()


def test_served_evidence_is_capped_and_says_so():
    served = {"chain": ["ab" * 3000] * 5, "chainComplete": True, "serialsSeen": ["01"], "probes": 3,
              "required": 3, "attempts": 3, "error": None, "at": "2026-12-02T00:00:00Z"}
    capped = IB.cap_served(served)
    assert len(json.dumps(capped)) <= IB.SERVED_MAX_CHARS
    assert len(capped["chain"]) == 1 and capped["chainTruncated"] == 4 and capped["chainComplete"] is False
    assert IB.cap_served(dict(served, chain=["ab"])) == dict(served, chain=["ab"])  # small: unchanged


def test_the_result_line_fits_what_ssm_keeps_of_stdout():
    result = {"action": "install", "serverOutput": "x" * 2000,
              "served": {"chain": ["ab" * 5000] * 3, "serialsSeen": [], "probes": 3}, "files": ["/a"] * 100}
    capped = IB.cap_result(result)
    line = "ROLLOUT_RESULT " + json.dumps(capped)
    assert len(line) < 24000 and len(json.dumps(capped)) <= IB.RESULT_MAX_CHARS
    assert capped["served"]["chain"] == [] and capped["served"]["chainTruncated"] == 3
    assert capped["served"]["probes"] == 3  # the verdict's evidence stays
    huge = {"serverOutput": "y" * 30000}
    assert len(json.dumps(IB.cap_result(huge))) <= IB.RESULT_MAX_CHARS


def test_probe_deadline_stays_inside_the_execution_timeout(monkeypatch):
    monkeypatch.setenv("ROLLOUT_STARTED_AT", str(int(time.time()) - 95))
    monkeypatch.setenv("ROLLOUT_EXECUTION_TIMEOUT", "100")
    left = IB.node_probe_deadline(20.0) - time.monotonic()
    assert 2.0 <= left <= 4.5  # 5 s left less RESTORE_MARGIN, not the 20 s command timeout
    monkeypatch.delenv("ROLLOUT_STARTED_AT")
    monkeypatch.delenv("ROLLOUT_EXECUTION_TIMEOUT")
    assert 19.0 <= IB.node_probe_deadline(20.0) - time.monotonic() <= 20.0
