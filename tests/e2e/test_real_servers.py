"""Real nginx and HAProxy (Debian packages) as rollout targets on 127.0.0.1.

Each scenario runs on a fresh local cloud through ScenarioRunner (as `cert-rollout local run`
does), the runner is always closed, and the leak check must be clean. Success is what a TLS
client sees: the served serial (SNI) equals the renewed certificate's serial.
Install the servers with scripts/install_servers.sh (root).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from cert_rollout.localcloud import real_servers
from cert_rollout.localcloud import report as report_module
from cert_rollout.localcloud.cloud import free_port
from cert_rollout.localcloud.scenario import Scenario, ScenarioRunner
from tests.e2e.conftest import SCENARIOS, probe_serial, target_by_id

MISSING = [name for name in ("nginx", "haproxy") if not real_servers.available(name)]

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.servers,
    pytest.mark.skipif(bool(MISSING), reason=f"{' and '.join(MISSING)} not installed: "
                                             "run scripts/install_servers.sh as root"),
]


def load(name: str, *, fresh_port: bool = True) -> Scenario:
    """A scenario of tests/e2e/scenarios; placeholder ports are replaced by one free port."""
    raw = yaml.safe_load((SCENARIOS / name).read_text())
    if fresh_port:
        mapping: dict[int, int] = {}
        for t in raw.get("targets", []):
            if t.get("port"):
                t["port"] = mapping.setdefault(t["port"], free_port())
    return Scenario.model_validate({**raw, "base_dir": SCENARIOS})


def run(scenario: Scenario) -> tuple[dict[str, Any], dict[str, Any]]:
    """Run, finalize (leak check), snapshot the targets while the servers still run, close."""
    initial: dict[str, str | None] = {}
    runner: ScenarioRunner

    def on_step(_message: str) -> None:
        targets = getattr(runner, "targets", None)
        if targets is not None:
            for tid, t in targets.targets.items():
                if tid not in initial:
                    initial[tid] = probe_serial(t.port, t.sni)

    runner = ScenarioRunner(scenario, on_step=on_step)
    try:
        report = runner.run(keep_running=True)
        report_module.finalize(report, runner.cloud)
        assert runner.targets is not None
        served = {}
        for tid, t in runner.targets.targets.items():
            served[tid] = {"port": t.port, "sni": t.sni, "initial": initial.get(tid),
                           "final": probe_serial(t.port, t.sni), "directory": Path(t.directory),
                           "process": t.process, "item": t.inventory_item}
    finally:
        runner.close()
    assert report["leak_check"]["findings"] == [], report["leak_check"]["findings"]
    return report, served


def expected_serial(report: dict[str, Any], certificate: str) -> str:
    serial = report["certificates"][certificate]["serial_final"]
    assert serial != report["certificates"][certificate]["serial_initial"]
    return serial


def assert_stopped(served: dict[str, Any]) -> None:
    for t in served.values():
        if t["process"] is not None:
            assert t["process"].poll() is not None, "server still running after runner.close()"
        deadline = time.monotonic() + 5
        while probe_serial(t["port"], t["sni"], timeout=0.5) is not None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert probe_serial(t["port"], t["sni"], timeout=0.5) is None


def test_nginx_target_rolls_out_and_serves_the_new_serial() -> None:
    report, served = run(load("nginx.yaml"))
    entry = report["events"][0]
    assert (entry["status"], entry["outcome"]) == ("SUCCEEDED", "ROLLED_OUT"), entry.get("error")
    new = expected_serial(report, "web")
    t = target_by_id(entry)["nginx-1"]
    assert t["outcome"] == "VERIFIED", t
    assert served["nginx-1"]["initial"] == report["certificates"]["web"]["serial_initial"]
    assert served["nginx-1"]["final"] == new
    item = served["nginx-1"]["item"]
    assert item["server"] == "nginx" and item["testCommand"][1] == "-t"
    assert item["reloadCommand"][1:3] == ["-s", "reload"]
    assert_stopped(served)


def test_two_certificates_on_one_nginx_port_by_sni() -> None:
    report, served = run(load("nginx-sni.yaml"))
    assert served["nginx-web"]["port"] == served["nginx-shop"]["port"]
    for entry, (cert, tid) in zip(report["events"], (("web", "nginx-web"), ("shop", "nginx-shop")), strict=False):
        assert (entry["status"], entry["outcome"]) == ("SUCCEEDED", "ROLLED_OUT"), entry.get("error")
        new = expected_serial(report, cert)
        # (the record's served_serial_after is one probe right after Verify: nginx's old workers
        # may still answer it with the old config for ~100 ms, so the final probe is the judge)
        assert target_by_id(entry)[tid]["outcome"] == "VERIFIED"
        assert served[tid]["initial"] == report["certificates"][cert]["serial_initial"]
        assert served[tid]["final"] == new
    assert served["nginx-web"]["final"] != served["nginx-shop"]["final"]
    assert_stopped(served)


def test_nginx_config_test_failure_rolls_back_and_keeps_serving_the_old_certificate() -> None:
    report, served = run(load("nginx-config-test-fails.yaml"))
    entry = report["events"][0]
    assert entry["outcome"] == "FAILED"
    t = target_by_id(entry)["nginx-broken"]
    assert t["outcome"] in ("ROLLED_BACK", "FAILED") and t["outcome"] != "VERIFIED", t
    assert "install" in (t["reason"] or ""), t
    old = report["certificates"]["web"]["serial_initial"]
    assert served["nginx-broken"]["initial"] == old
    assert served["nginx-broken"]["final"] == old  # nginx was never reloaded with the new files
    fullchain = (served["nginx-broken"]["directory"] / "fullchain.pem").read_text()
    from cryptography import x509
    from rollout_core.probe import format_serial_hex

    assert format_serial_hex(x509.load_pem_x509_certificate(fullchain.encode()).serial_number) == old
    assert_stopped(served)


def test_haproxy_targets_roll_out_two_certificates_on_one_port() -> None:
    report, served = run(load("haproxy.yaml"))
    assert served["haproxy-web"]["port"] == served["haproxy-shop"]["port"]
    for entry, (cert, tid) in zip(report["events"], (("web", "haproxy-web"), ("shop", "haproxy-shop")), strict=False):
        assert (entry["status"], entry["outcome"]) == ("SUCCEEDED", "ROLLED_OUT"), entry.get("error")
        new = expected_serial(report, cert)
        # (the record's served_serial_after is one probe right after Verify: nginx's old workers
        # may still answer it with the old config for ~100 ms, so the final probe is the judge)
        assert target_by_id(entry)[tid]["outcome"] == "VERIFIED"
        assert served[tid]["initial"] == report["certificates"][cert]["serial_initial"]
        assert served[tid]["final"] == new
    item = served["haproxy-web"]["item"]
    assert item["files"] == [{"path": str(served["haproxy-web"]["directory"] / "haproxy.pem"),
                              "content": "combined", "mode": "0600"}]
    assert item["testCommand"][1:3] == ["-c", "-q"]
    assert_stopped(served)
