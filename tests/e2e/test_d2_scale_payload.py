"""D2: 100 targets with an RSA-4096 certificate: no state payload anywhere near Step Functions'
256 KiB limit, every target verified, and no key material in the state (references only)."""

import pytest

from cert_rollout.localcloud import bench

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]


def test_hundred_targets_rsa4096_keep_state_small_and_key_free() -> None:
    result = bench.run_size(100, key_algorithm="RSA_4096", leak_check=True,
                            parameters={"MaxConcurrency": "25"}, log=lambda _m: None)
    assert result["status"] == "SUCCEEDED" and result["all_verified"], result.get("not_verified_sample")
    assert result["largest_payload_bytes"] < 64 * 1024  # far from the 256 KiB limit
    # 6 per target (statemachine/rollout.asl.json's Map iteration on the happy path) + 10 around the
    # Map (ValidateEvent, Route, ExportCertificate, AcquireLease and its Choice, InstallTargets,
    # ReleaseLease, Notify, Succeeded?, RolloutComplete)
    assert result["transitions"] == 6 * 100 + 10
    assert result["leak_findings"] == []
