"""Scenario vocabulary of issue 12: wildcard certificates (a target of one names its sni),
certificate names refused in words (field and rule), the missing-intermediate and
one-stale-backend faults; the fault lists of scenario.py, targets.py and target_server.py agree."""

from __future__ import annotations

from typing import Any, get_args

import pytest
from pydantic import ValidationError

from cert_rollout.localcloud import target_server, targets
from cert_rollout.localcloud.scenario import Scenario, TargetSpec, certificate_name_problem


def scenario(domain: str, target: dict[str, Any], sans: list[str] | None = None) -> Scenario:
    return Scenario.model_validate({"certificates": {"web": {"domain": domain, "sans": sans or []}},
                                    "targets": [{"id": "t-1", "certificate": "web", **target}],
                                    "steps": [{"renew": "web"}]})


def test_wildcard_certificate_with_a_target_sni_is_accepted() -> None:
    s = scenario("*.svc.example.internal", {"sni": "a.svc.example.internal"}, sans=["*.other.example.internal"])
    assert s.certificates["web"].is_wildcard and s.targets[0].sni == "a.svc.example.internal"


def test_wildcard_target_without_sni_is_refused_in_words() -> None:
    with pytest.raises(ValidationError, match=r"target t-1: certificate web is the wildcard \*\.svc\.example\.internal, "
                                              r"which is no host name to send as SNI: give the target an sni"):
        scenario("*.svc.example.internal", {})


@pytest.mark.parametrize(("domain", "rule"), [
    ("web..example", "has the label '': a label is 1-63 letters, digits or hyphens"),
    ("-web.example", "has the label '-web'"),
    ("web_1.example", "has the label 'web_1'"),
    ("a.*.example", "has a '*' that is not the whole leftmost label"),
    ("*web.example", "has a '*' that is not the whole leftmost label"),
    ("*.example", "has fewer than two labels"),
    ("web", "has fewer than two labels"),
    ("10.0.0.1", "ends with an all-numeric label: ACM certificates name DNS names only"),
    ("", "is empty"),
    ("a" * 60 + ".example", "is longer than 64 characters"),
])
def test_bad_domain_is_refused_naming_the_field_and_the_rule(domain: str, rule: str) -> None:
    with pytest.raises(ValidationError) as info:
        scenario(domain, {"sni": "a.example.internal"})
    [error] = info.value.errors(include_url=False)
    assert error["loc"] == ("certificates", "web", "domain")
    assert f"domain {domain!r} is not a certificate name: it {rule}" in error["msg"]


def test_bad_san_is_refused_naming_its_index() -> None:
    with pytest.raises(ValidationError, match=r"sans\[1\] 'api\.\.example' is not a certificate name"):
        scenario("web.example.internal", {}, sans=["api.example.internal", "api..example"])
    assert certificate_name_problem("a" * 63 + "." + "b" * 63 + "." + "c" * 63 + "." + "d" * 61) is None  # 253


@pytest.mark.parametrize(("sni", "rule"), [("*.svc.example.internal", "is a wildcard"),
                                           ("127.0.0.1", "forbids IP addresses in SNI")])
def test_target_sni_is_a_literal_host_name(sni: str, rule: str) -> None:
    with pytest.raises(ValidationError, match=rule):
        TargetSpec.model_validate({"id": "t-1", "certificate": "web", "sni": sni})


def test_issue_12_faults_are_scenario_faults_of_the_server() -> None:
    for fault in ("missing-intermediate", "one-stale-backend"):
        assert TargetSpec.model_validate({"id": "t-1", "certificate": "web", "fault": fault}).fault == fault
    with pytest.raises(ValidationError, match="fault"):
        TargetSpec.model_validate({"id": "t-1", "certificate": "web", "fault": "no-such-fault"})


def test_fault_lists_agree() -> None:
    """scenario.py takes targets.Fault; every server fault targets.py hands to the server is one
    target_server.py knows; every scenario fault is named in targets.py's docstring and the README."""
    from pathlib import Path

    faults = set(get_args(targets.Fault))
    assert targets.SERVER_FAULTS.issubset(faults & set(target_server.FAULTS))
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    for fault in faults:
        assert f"  {fault}" in (targets.__doc__ or ""), fault
        assert f"`{fault}`" in readme, fault
