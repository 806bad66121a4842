"""Operator commands (cert_rollout.commands) against the embedded local cloud and real TLS servers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import trustme
from cryptography import x509

from cert_rollout.localcloud.target_server import start_server, stop_server
from tests.integration.cli_local import aws, cloud, run, table_opts  # noqa: F401 (cloud: fixture)

ROOT = Path(__file__).resolve().parents[2]
HOST = "127.0.0.1"


# --------------------------------------------------------------------------- invoke


def test_invoke_validate_event_answers_named_error(cloud, tmp_path):
    sample = ROOT / "events" / "validate_event.json"
    if not sample.exists():
        sample = tmp_path / "validate_event.json"
        sample.write_text(json.dumps({"event": {"certificateArn": "arn:aws:acm:eu-west-1:123456789012:certificate/"
                                                "6f1e2d3c-4b5a-4987-8c6d-5e4f3a2b1c0d", "force": True},
                                      "executionArn": "arn:aws:states:eu-west-1:123456789012:execution:x:y"}))
    r = run("invoke", "ValidateEventFunction", "-e", str(sample), "--json")
    assert r.exit_code == 1, r.stdout + r.stderr
    out = json.loads(r.stdout)
    assert out["functionError"] == "Unhandled"
    assert out["payload"]["errorType"] == "CertificateNotFound"
    assert any(line.startswith("START RequestId") for line in out["logs"])
    assert any(line.startswith("REPORT RequestId") for line in out["logs"])


def test_invoke_unknown_function_is_refused(cloud, tmp_path):
    event = tmp_path / "e.json"
    event.write_text("{}")
    r = run("invoke", "NoSuchFunction", "-e", str(event))
    assert r.exit_code == 2
    assert "ValidateEventFunction" in r.stderr


# --------------------------------------------------------------------------- check


def _serial(leaf: trustme.LeafCert) -> int:
    return x509.load_pem_x509_certificate(leaf.cert_chain_pems[0].bytes()).serial_number


def _write(directory: Path, name: str, leaf: trustme.LeafCert) -> tuple[str, str]:
    cert, key = directory / f"{name}.pem", directory / f"{name}.key"
    cert.write_bytes(b"".join(p.bytes() for p in leaf.cert_chain_pems))
    key.write_bytes(leaf.private_key_pem.bytes())
    return str(cert), str(key)


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory):
    from cert_rollout.localcloud.cloud import free_port

    d = tmp_path_factory.mktemp("tls")
    ca = trustme.CA()
    a, b = ca.issue_cert("a.internal.example"), ca.issue_cert("b.internal.example", "b2.internal.example")
    ca.cert_pem.write_to_path(str(d / "ca.pem"))
    (ca_cert, ca_key), (b_cert, b_key) = _write(d, "a", a), _write(d, "b", b)
    port = free_port()
    config = d / "c.json"
    config.write_text(json.dumps({"listeners": [{"host": HOST, "port": port, "sites": [
        {"server_names": ["a.internal.example"], "cert": ca_cert, "key": ca_key},
        {"server_names": ["b.internal.example"], "cert": b_cert, "key": b_key}]}]}))
    proc = start_server(config, d / "t.pid", d / "t.log")
    try:
        yield {"port": port, "a": _serial(a), "b": _serial(b), "ca": str(d / "ca.pem")}
    finally:
        stop_server(proc)


def test_check_sni_selects_site_and_verifies(tls_server):
    r = run("check", f"{HOST}:{tls_server['port']}", "--sni", "b.internal.example", "--ca-bundle", tls_server["ca"],
            "--expect-serial", str(tls_server["b"]), "--json")
    assert r.exit_code == 0, r.stdout + r.stderr
    out = json.loads(r.stdout)
    from rollout_core.domain.serials import canonical_serial

    assert out["serial"] == canonical_serial(tls_server["b"])
    assert out["matches"] is True and out["verified"] is True
    assert "b2.internal.example" in out["sans"]
    r = run("check", f"{HOST}:{tls_server['port']}", "--sni", "a.internal.example")
    assert r.exit_code == 0, r.stdout + r.stderr
    assert canonical_serial(tls_server["a"]) in r.stdout


def test_check_wrong_expected_serial_exits_1(tls_server):
    from rollout_core.domain.serials import canonical_serial

    r = run("check", f"{HOST}:{tls_server['port']}", "--sni", "b.internal.example",
            "--expect-serial", canonical_serial(tls_server["a"]))
    assert r.exit_code == 1, r.stdout + r.stderr
    assert "MISMATCH" in r.stdout


def test_check_nothing_listening_exits_2():
    from cert_rollout.localcloud.cloud import free_port

    r = run("check", f"{HOST}:{free_port()}", "--sni", "a.internal.example", "--timeout", "2", "--json")
    assert r.exit_code == 2
    out = json.loads(r.stdout)
    assert out["errorType"] == "TargetUnreachable" and out["reason"] == "refused"


# --------------------------------------------------------------------------- targets

CERT = "arn:aws:acm:eu-west-1:123456789012:certificate/11111111-2222-3333-4444-555555555555"


def _add(cloud, *extra: str, target_id: str = "web-1", host: str = "web1.internal.example", port: str = "8443"):
    return run("targets", "add", "--certificate-arn", CERT, "--id", target_id, "--host", host, "--port", port,
               "--server", "nginx", "--instance-id", "mi-0123456789abcdef0",
               "--file", "/etc/ssl/web.pem:fullchain", "--file", "/etc/ssl/web.key:key:0600",
               "--test-command", "nginx -t", "--reload-command", "systemctl reload nginx",
               *extra, *table_opts(cloud))


def test_targets_add_list_remove(cloud):
    r = _add(cloud)
    assert r.exit_code == 0, r.stdout + r.stderr
    r = _add(cloud, "--sni", "web2.internal.example", target_id="web-2", host="10.0.0.7")
    assert r.exit_code == 0, r.stdout + r.stderr
    r = run("targets", "list", "--certificate-arn", CERT, "--json", *table_opts(cloud))
    rows = json.loads(r.stdout)
    assert [x["targetId"] for x in rows] == ["web-1", "web-2"]
    # CERT is no certificate of the local ACM: ValidateEvent would reject it (CertificateNotManaged).
    assert f"{CERT} is not managed by this deployment: ACM has no such certificate" in r.stderr
    assert rows[1]["endpoint"] == "10.0.0.7:8443" and rows[1]["sni"] == "web2.internal.example"
    assert rows[0]["sni"] == "web1.internal.example" and rows[0]["instanceId"] == "mi-0123456789abcdef0"
    r = run("targets", "list", *table_opts(cloud))
    assert r.exit_code == 0 and "web-2" in r.stdout
    r = run("targets", "remove", "--certificate-arn", CERT, "--id", "web-2", *table_opts(cloud))
    assert r.exit_code == 0, r.stdout + r.stderr
    r = run("targets", "remove", "--certificate-arn", CERT, "--id", "web-2", *table_opts(cloud))
    assert r.exit_code == 1
    rows = json.loads(run("targets", "list", "--certificate-arn", CERT, "--json", *table_opts(cloud)).stdout)
    assert [x["targetId"] for x in rows] == ["web-1"]
    run("targets", "remove", "--certificate-arn", CERT, "--id", "web-1", *table_opts(cloud))


def test_targets_add_refuses_bad_port_and_an_ip_as_sni(cloud):
    r = _add(cloud, target_id="bad-port", port="70000")
    assert r.exit_code == 2 and "port" in r.stderr
    # an IP host without --sni is valid (no SNI sent, checked against IP SANs); an IP as SNI is not
    r = _add(cloud, "--sni", "10.0.0.8", target_id="ip-as-sni", host="10.0.0.8")
    assert r.exit_code == 2 and "SNI" in r.stderr
    r = run("targets", "add", "--certificate-arn", CERT, "--id", "bad-kind", "--host", "x.example", "--server", "iis",
            "--instance-id", "mi-0123456789abcdef0", "--file", "/x.pem:fullchain", *table_opts(cloud))
    assert r.exit_code == 2 and "server" in r.stderr
    rows = json.loads(run("targets", "list", "--certificate-arn", CERT, "--json", *table_opts(cloud)).stdout)
    assert not {"bad-port", "ip-as-sni", "bad-kind"} & {x["targetId"] for x in rows}


def test_targets_add_ip_host_without_sni_sends_none(cloud):
    r = _add(cloud, target_id="ip-no-sni", host="10.0.0.8")
    assert r.exit_code == 0, r.stdout + r.stderr
    assert "SNI none" in r.stdout
    rows = json.loads(run("targets", "list", "--certificate-arn", CERT, "--json", *table_opts(cloud)).stdout)
    assert [x.get("sni") for x in rows if x["targetId"] == "ip-no-sni"] == [None]
    run("targets", "remove", "--certificate-arn", CERT, "--id", "ip-no-sni", *table_opts(cloud))


def test_targets_import_validates_all_before_writing(cloud, tmp_path):
    good = {"certificateArn": CERT, "targetId": "imp-1", "host": "imp1.internal.example", "port": 443,
            "server": "nginx", "instanceId": "mi-0123456789abcdef0",
            "files": [{"path": "/etc/ssl/imp.pem", "content": "fullchain"}]}
    bad = {**good, "targetId": "imp-2", "host": "10.1.1.1", "sni": "10.1.1.1"}  # RFC 6066: no IP in SNI
    f = tmp_path / "t.json"
    f.write_text(json.dumps([good, bad]))
    r = run("targets", "import", str(f), *table_opts(cloud))
    assert r.exit_code == 2 and "imp-2" in r.stderr
    rows = json.loads(run("targets", "list", "--certificate-arn", CERT, "--json", *table_opts(cloud)).stdout)
    assert "imp-1" not in {x["targetId"] for x in rows}
    y = tmp_path / "t.yaml"
    y.write_text(f"- certificateArn: {CERT}\n  targetId: imp-1\n  host: imp1.internal.example\n  port: 443\n"
                 "  server: nginx\n  instanceId: mi-0123456789abcdef0\n  files:\n"
                 "    - {path: /etc/ssl/imp.pem, content: fullchain}\n")
    r = run("targets", "import", str(y), *table_opts(cloud))
    assert r.exit_code == 0, r.stdout + r.stderr
    rows = json.loads(run("targets", "list", "--certificate-arn", CERT, "--json", *table_opts(cloud)).stdout)
    assert "imp-1" in {x["targetId"] for x in rows}
    run("targets", "remove", "--certificate-arn", CERT, "--id", "imp-1", *table_opts(cloud))


# --------------------------------------------------------------------------- history


def test_history_of_rejected_execution(cloud):
    arn = cloud.start_execution({"hello": 1})
    desc = cloud.wait_for_execution(arn, timeout=120)
    r = run("history", arn, "--json", *aws(cloud))
    out = json.loads(r.stdout)
    assert out["status"] == desc["status"]
    assert r.exit_code == (0 if desc["status"] == "SUCCEEDED" else 1)
    names = [s["state"] for s in out["states"]]
    assert names[0] == "ValidateEvent"
    assert all(s["durationMs"] is not None for s in out["states"] if s["state"] == "ValidateEvent")
    r = run("history", arn, "--history", "--events", *aws(cloud))
    assert "ValidateEvent" in r.stdout and "States" in r.stdout


# --------------------------------------------------------------------------- renew and status


def test_renew_changes_serial_and_follows_the_rollout(cloud):
    pca = cloud.private_ca()
    arn = pca.request_certificate("renew.internal.example", ["renew2.internal.example"])
    r = run("renew", arn, "--json", *aws(cloud))
    assert r.exit_code == 0, r.stdout + r.stderr
    out = json.loads(r.stdout)
    assert out["serialChanged"] is True and out["serial"] != out["serialBefore"]
    assert out["renewalSummary"]["RenewalStatus"] == "SUCCESS"

    # The renewal's own events (AWS Health, then ACM; localcloud/renewal_events.py) start the
    # execution through the template's rules: nothing is delivered by hand.
    r = run("renew", arn, "--follow", "--state-machine-arn", cloud.state_machine_arn, "--wait", "30",
            "--timeout", "180", "--json", *aws(cloud))
    out = json.loads(r.stdout)
    ex = out["execution"]
    assert ex and ex["executionArn"].startswith("arn:aws:states:"), out
    assert ex["status"] == "SUCCEEDED", out  # no targets: NO_TARGETS, notified
    assert r.exit_code == 0
    started = {json.loads(cloud.client("stepfunctions").describe_execution(executionArn=x["executionArn"])["input"])
               .get("source") for x in cloud.routed if x["executionArn"]}
    assert {"aws.health", "aws.acm"} <= started


def test_status_reports_drift(cloud):
    pca = cloud.private_ca()
    arn = pca.request_certificate("status.internal.example", [])
    r = run("targets", "add", "--certificate-arn", arn, "--id", "st-1", "--host", "status.internal.example",
            "--server", "nginx", "--instance-id", "mi-0123456789abcdef0", "--file", "/etc/ssl/s.pem:fullchain",
            *table_opts(cloud))
    assert r.exit_code == 0, r.stdout + r.stderr
    r = run("status", "--json", *table_opts(cloud))
    out = json.loads(r.stdout)
    cert = next(c for c in out["certificates"] if c["certificateArn"] == arn)
    assert cert["serial"] and ":" in cert["serial"] and cert["notAfter"]
    assert cert["targets"][0]["drift"] is True
    assert r.exit_code == 1
    r = run("status", *table_opts(cloud))
    assert "DRIFT" in r.stdout
    run("targets", "remove", "--certificate-arn", arn, "--id", "st-1", *table_opts(cloud))
