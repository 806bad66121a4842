"""Issue 12, Done when: VERIFIED means what a client with the private root checks: the chain to
the root, the host name (RFC 6125), every backend of a load-balanced port; an IP target probed
with its configured SNI name. Scenarios verify-checks.yaml and verify-wildcard.yaml."""

from __future__ import annotations

from typing import Any

import pytest
from cryptography import x509

from cert_rollout.localcloud.scenario import ScenarioRunner

from .conftest import explain, run_scenario, target_by_id

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]


def _backends(runner: ScenarioRunner, _report: dict[str, Any]) -> dict[str, Any]:
    """While the cloud runs: each target's backends (host:port) and its inventory item's."""
    assert runner.targets is not None
    return {tid: {"backends": list(t.backends), "inventory_backends": t.inventory_item.get("backends")}
            for tid, t in runner.targets.targets.items()}


@pytest.fixture(scope="module")
def checks() -> dict[str, Any]:
    report, data = run_scenario("verify-checks.yaml", while_running=_backends)
    [entry] = report["events"]
    return {"report": report, "data": data, "entry": entry, "targets": target_by_id(entry),
            "old": report["certificates"]["web"]["serial_initial"],
            "new": report["certificates"]["web"]["serial_final"]}


@pytest.fixture(scope="module")
def wildcard() -> dict[str, Any]:
    report, data = run_scenario("verify-wildcard.yaml")
    [entry] = report["events"]
    return {"report": report, "data": data, "entry": entry, "targets": target_by_id(entry)}


def test_leaf_without_its_intermediate_is_rolled_back_as_chain_invalid(checks: dict[str, Any]) -> None:
    assert checks["old"] != checks["new"]
    t = checks["targets"]["missing-intermediate-1"]
    assert (t["outcome"], t["reason"]) == ("ROLLED_BACK", "chain-invalid"), explain(checks["entry"])


def test_one_stale_backend_is_not_verified_and_named(checks: dict[str, Any]) -> None:
    backends = checks["data"]["while_running"]["stale-backend-1"]
    assert len(backends["backends"]) == 4 and backends["inventory_backends"] == backends["backends"]
    stale = backends["backends"][-1]  # targets.py: the server's last backend never reloads
    t = checks["targets"]["stale-backend-1"]
    assert t["outcome"] != "VERIFIED", explain(checks["entry"])
    assert stale in str(t["detail"]), t


def test_ip_target_probed_with_its_sni_is_verified(checks: dict[str, Any]) -> None:
    t = checks["targets"]["ip-sni-1"]
    assert t["endpoint"].startswith("127.0.0.1:")
    assert (t["outcome"], t["served_serial_after"]) == ("VERIFIED", checks["new"]), explain(checks["entry"])


def test_rollout_with_failed_checks_is_partial(checks: dict[str, Any], wildcard: dict[str, Any]) -> None:
    for run in (checks, wildcard):
        assert run["entry"]["outcome"] == "PARTIAL", explain(run["entry"])


def test_wildcard_certificate_is_issued_with_its_wildcard_dns_san(wildcard: dict[str, Any]) -> None:
    fullchain = wildcard["data"]["targets"]["one-label-deep"]["fullchain_initial"]
    leaf = x509.load_pem_x509_certificate(fullchain.encode())
    sans = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == ["*.svc.example.internal"]
    assert sans.get_values_for_type(x509.IPAddress) == []  # ACM certificates name DNS names only


def test_wildcard_two_labels_deep_is_a_hostname_mismatch(wildcard: dict[str, Any]) -> None:
    t = wildcard["targets"]["two-labels-deep"]
    assert t["outcome"] != "VERIFIED", explain(wildcard["entry"])
    assert t["reason"] == "hostname-mismatch", explain(wildcard["entry"])


def test_wildcard_one_label_deep_is_verified(wildcard: dict[str, Any]) -> None:
    t = wildcard["targets"]["one-label-deep"]
    assert t["outcome"] == "VERIFIED", explain(wildcard["entry"])
