"""VERIFIED means a client would accept it (issue 12), through the real state machine: the trust
anchor rides from ExportCertificate to every VerifyTarget in state, a healthy target is VERIFIED
after exactly its ``probes`` handshakes (read from moto's Private CA chain, to its root), and a
target whose SNI name the new certificate does not cover is rolled back at once with the reason
hostname-mismatch (waiting for reload cannot fix a wrong name: no WaitForReload)."""

from __future__ import annotations

import json

import pytest
from cryptography import x509

from .conftest import explain, run_scenario, state_entered, target_by_id

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]


def test_a_wrong_name_is_rolled_back_at_once_and_the_healthy_target_is_verified() -> None:
    report, data = run_scenario({
        "name": "verify-checks",
        "certificates": {"web": {"domain": "web.internal.example", "key_algorithm": "EC_prime256v1"}},
        "targets": [
            {"id": "healthy-1", "certificate": "web", "inventory_overrides": {"probes": 2}},
            # the server answers every SNI with its one site: the certificate, but not for this name
            {"id": "wrong-name-1", "certificate": "web", "inventory_overrides": {"sni": "other.internal.example"}},
        ],
        "steps": [{"renew": "web"},
                  {"event": "events/eventbridge/health-renewal-completed.json", "certificate": "web",
                   "expect": "PARTIAL"}],
    })
    [entry] = report["events"]
    targets = target_by_id(entry)
    assert entry["outcome"] == "PARTIAL", explain(entry)
    assert targets["healthy-1"]["outcome"] == "VERIFIED", explain(entry)
    wrong = targets["wrong-name-1"]
    assert (wrong["outcome"], wrong["reason"]) == ("ROLLED_BACK", "hostname-mismatch"), wrong
    assert "other.internal.example" in wrong["detail"] and "web.internal.example" in wrong["detail"], wrong
    assert data["targets"]["wrong-name-1"]["served_serial_final"] == report["certificates"]["web"]["serial_initial"]

    history = entry["history"]
    assert state_entered(history, "WaitForReload") == []  # both decided on the first VerifyTarget
    verify_inputs = [json.loads(e["stateEnteredEventDetails"]["input"]) for e in history
                     if e["type"] == "TaskStateEntered" and e["stateEnteredEventDetails"]["name"] == "VerifyTarget"]
    assert len(verify_inputs) == 2
    for item in verify_inputs:  # the issuing CA's root, public PEM, from the export's chain
        [anchor] = x509.load_pem_x509_certificates(item["trustAnchor"].encode())
        assert anchor.subject == anchor.issuer and "PRIVATE KEY" not in json.dumps(item)
    verified = [json.loads(e["stateExitedEventDetails"]["output"])["verify"] for e in history
                if e["type"] == "TaskStateExited" and e["stateExitedEventDetails"]["name"] == "VerifyTarget"]
    by_state = {v["state"]: v for v in verified}
    assert by_state["VERIFIED"]["chainLength"] >= 2 and by_state["VERIFIED"]["reason"] is None
    assert by_state["NOT_SERVING"]["reason"] == "hostname-mismatch"
