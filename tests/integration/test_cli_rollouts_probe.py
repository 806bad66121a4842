"""`rollouts`, `history`'s heading and `status --probe` against the embedded local cloud and a real
TLS target server (cert_rollout.localcloud.target_server) serving a local Private CA certificate."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cert_rollout.cli import app
from cert_rollout.localcloud.cloud import free_port
from cert_rollout.localcloud.target_server import start_server, stop_server
from tests.integration.cli_local import aws, cloud, run, runner, table_opts  # noqa: F401 (cloud: fixture)

ROOT = Path(__file__).resolve().parents[2]
HOST = "127.0.0.1"


def _health_event(arn: str) -> dict:
    text = (ROOT / "events" / "eventbridge" / "health-renewal-completed.json").read_text()
    old = json.loads(text)["resources"][0]
    return json.loads(text.replace(old, arn))


# --------------------------------------------------------------------------- rollouts


def test_rollouts_lists_a_certificates_executions_newest_first(cloud):
    pca = cloud.private_ca()
    arn = pca.request_certificate("rollouts.internal.example", ["rollouts-alt.internal.example"])
    other = pca.request_certificate("other.internal.example", [])
    manual = cloud.start_execution({"certificateArn": arn, "force": True, "reason": "rebuilt web-2"})
    cloud.wait_for_execution(manual, timeout=120)
    cloud.start_execution({"certificateArn": other, "force": True})
    [health] = cloud.deliver_event(_health_event(arn))
    cloud.wait_for_execution(health, timeout=120)
    sm = ["--state-machine-arn", cloud.state_machine_arn, *aws(cloud)]

    r = run("rollouts", arn, "--json", *sm)
    assert r.exit_code == 0, r.stdout + r.stderr
    rows = json.loads(r.stdout)["rollouts"]
    assert [x["executionArn"] for x in rows] == [health, manual]
    assert [x["trigger"] for x in rows] == ["Health", "manual"]
    assert all(x["certificateArn"] == arn and x["serial"] and x["outcome"] for x in rows), rows
    assert rows[1]["triggerDetail"] == "rebuilt web-2"

    by_domain = json.loads(run("rollouts", "rollouts-alt.internal.example", "--json", *sm).stdout)
    assert by_domain["certificates"] == [arn]
    assert [x["executionArn"] for x in by_domain["rollouts"]] == [health, manual]
    assert len(json.loads(run("rollouts", arn, "--limit", "1", "--json", *sm).stdout)["rollouts"]) == 1

    r = run("rollouts", arn, *sm)
    assert r.exit_code == 0
    lines = r.stdout.splitlines()
    assert any(f"cert-rollout history {health}" in line for line in lines)
    assert any(rows[0]["serial"] in line for line in lines)

    r = run("rollouts", "nowhere.internal.example", *sm)
    assert r.exit_code == 2 and "nowhere.internal.example" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1

    # history heads its output with the same facts (one function: render.execution_facts)
    r = run("history", health, "--json", *aws(cloud))
    facts = json.loads(r.stdout)
    assert {k: facts[k] for k in rows[0]} == rows[0]
    r = run("history", health, *aws(cloud))
    head = r.stdout.splitlines()[:6]
    assert head[0] == f"Execution {health}"
    assert f"Serial {rows[0]['serial']}" in head
    assert any("trigger Health" in line for line in head)
    assert "States" not in r.stdout
    # in 100 columns: each serial whole on one line, the heading and one target table, nothing else
    for command in (["history", health], ["rollouts", arn, "--state-machine-arn", cloud.state_machine_arn]):
        shown = runner.invoke(app, [*command, *aws(cloud)], env={"COLUMNS": "100"}, catch_exceptions=False)
        lines = shown.stdout.splitlines()
        assert len(lines) <= 16, shown.stdout
        for serial in {x["serial"] for x in rows}:
            assert any(serial in line for line in lines), shown.stdout
            assert not [line for line in lines if serial[:11] in line and serial not in line], shown.stdout
    assert "States" in run("history", health, "--history", *aws(cloud)).stdout


# --------------------------------------------------------------------------- status --probe


@pytest.fixture()
def served_target(cloud, tmp_path):
    """A certificate of the local Private CA served by a real TLS target server on 127.0.0.1,
    and its inventory item (probe-1)."""
    pca = cloud.private_ca()
    name = "probe.internal.example"
    arn = pca.request_certificate(name, [])
    cert, chain, key = pca.current(arn)
    (tmp_path / "full.pem").write_text(cert.strip() + "\n" + chain.strip() + "\n")
    (tmp_path / "key.pem").write_bytes(key)
    port = free_port()
    config = tmp_path / "c.json"
    config.write_text(json.dumps({"listeners": [{"host": HOST, "port": port, "sites": [
        {"server_names": [name], "cert": str(tmp_path / "full.pem"), "key": str(tmp_path / "key.pem")}]}]}))
    proc = start_server(config, tmp_path / "t.pid", tmp_path / "t.log")
    r = run("targets", "add", "--certificate-arn", arn, "--id", "probe-1", "--host", HOST, "--port", str(port),
            "--sni", name, "--server", "nginx", "--instance-id", "mi-0123456789abcdef0",
            "--file", "/etc/ssl/p.pem:fullchain", *table_opts(cloud))
    assert r.exit_code == 0, r.stdout + r.stderr
    try:
        yield {"arn": arn, "port": port}
    finally:
        stop_server(proc)
        run("targets", "remove", "--certificate-arn", arn, "--id", "probe-1", *table_opts(cloud))


def _cert(out: dict, arn: str) -> dict:
    return next(c for c in out["certificates"] if c["certificateArn"] == arn)


def test_status_probe_reads_what_the_target_serves(cloud, served_target):
    arn = served_target["arn"]
    r = run("status", "--probe", "--json", *table_opts(cloud))
    cert = _cert(json.loads(r.stdout), arn)
    [row] = cert["targets"]
    # nothing recorded (bookkeeping drift), but the target serves ACM's current serial and passes the checks
    assert row["recordedDrift"] is True
    assert row["probe"]["servedSerial"] == cert["serial"] and row["probe"]["passed"] is True, row
    assert row["drift"] is False

    cloud.private_ca().renew(arn)  # ACM now holds a new serial; the target still serves the old one
    r = run("status", "--probe", "--json", *table_opts(cloud))
    assert r.exit_code == 1
    cert = _cert(json.loads(r.stdout), arn)
    [row] = cert["targets"]
    assert row["drift"] is True and row["probe"]["reason"] == "not-serving-new-serial", row
    assert row["probe"]["servedSerial"] != cert["serial"]

    r = run("status", "--probe", *table_opts(cloud))
    lines = r.stdout.splitlines()
    assert any(line.strip() == f"served   {row['probe']['servedSerial']}" for line in lines), r.stdout
    assert any("not-serving-new-serial" in line and cert["serial"] in line for line in lines), r.stdout
    for serial in (cert["serial"], row["probe"]["servedSerial"]):  # never broken over two lines
        assert not [line for line in lines if serial[:11] in line and serial not in line], r.stdout


def test_status_probe_names_an_unreachable_target(cloud, served_target, tmp_path):
    arn = served_target["arn"]
    run("targets", "remove", "--certificate-arn", arn, "--id", "probe-1", *table_opts(cloud))
    r = run("targets", "add", "--certificate-arn", arn, "--id", "probe-1", "--host", HOST, "--port", str(free_port()),
            "--sni", "probe.internal.example", "--server", "nginx", "--instance-id", "mi-0123456789abcdef0",
            "--file", "/etc/ssl/p.pem:fullchain", *table_opts(cloud))
    assert r.exit_code == 0, r.stdout + r.stderr
    out = json.loads(run("status", "--probe", "--timeout", "2", "--json", *table_opts(cloud)).stdout)
    [row] = _cert(out, arn)["targets"]
    assert row["drift"] is True and row["probe"]["reason"] == "unreachable" and row["probe"]["servedSerial"] is None
