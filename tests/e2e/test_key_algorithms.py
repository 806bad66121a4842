"""K1-K5 end to end: every supported key algorithm (RSA 2048/3072/4096, EC P-256/P-384) is
exported with a fresh passphrase, decrypted, matched by public key, bundled leaf-first,
installed and verified over TLS."""

from __future__ import annotations

import pytest

from .conftest import explain, run_scenario

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

ALGORITHMS = {"rsa2048": "RSA_2048", "rsa3072": "RSA_3072", "rsa4096": "RSA_4096",
              "p256": "EC_prime256v1", "p384": "EC_secp384r1"}


def test_every_key_algorithm_rolls_out_and_is_served() -> None:
    certificates = {name: {"domain": f"{name}.internal.example", "key_algorithm": alg}
                    for name, alg in ALGORITHMS.items()}
    steps = [{"renew": name} for name in ALGORITHMS]
    # one Health event per certificate, all in flight together (awaited after the last step)
    steps += [{"event": "events/eventbridge/health-renewal-completed.json", "certificate": name, "wait": False}
              for name in ALGORITHMS]
    report, data = run_scenario({
        "name": "key-algorithms", "certificates": certificates,
        "targets": [{"id": f"{name}-1", "certificate": name} for name in ALGORITHMS],
        "steps": steps,
    })

    assert len(report["events"]) == len(ALGORITHMS)
    outcomes = {}
    for entry in report["events"]:
        name = entry["certificate"]
        outcomes[name] = entry["outcome"]
        serial = report["certificates"][name]["serial_final"]
        assert serial != report["certificates"][name]["serial_initial"]
        [target] = entry["targets"]
        assert (target["id"], target["outcome"], target["served_serial_after"]) == (f"{name}-1", "VERIFIED", serial), \
            (ALGORITHMS[name], explain(entry))
        assert data["targets"][f"{name}-1"]["served_serial_final"] == serial
        assert entry["status"] == "SUCCEEDED"
    assert outcomes == {name: "ROLLED_OUT" for name in ALGORITHMS}
