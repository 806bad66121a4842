"""Export only the certificates this deployment manages (issue 11, item 2).

Tied together here: the README's IAM statement (section "Which certificates this deployment
exports") and template.yaml's ExportManagedCertificatesOnly; the tag key of that condition and
rollout_core.domain.managed.MANAGED_TAG_KEY; the ManagedCertificateTag parameter and
ValidateSettings; ValidateEvent's own check (CertificateNotManaged before anything is claimed
or exported); the local PKI's tagging and the CLI's warning."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws
from rollout_core.domain.managed import (
    DEFAULT_MANAGED_TAG,
    MANAGED_TAG_KEY,
    CertificateNotManaged,
    unmanaged_reason,
)
from rollout_core.logic.validate import validate_event
from rollout_core.models import Decision
from rollout_core.settings import ValidateSettings
from samtranslator.yaml_helper import yaml_parse

from tests.fakes.world import ARN, EXECUTION_ARN, World, target, world
from tests.unit.pki_fixtures import pki

ROOT = Path(__file__).resolve().parents[2]
README_SECTION = "### Which certificates this deployment exports"
SETTINGS = ValidateSettings(inventory_table="inventory", rollout_table="rollouts", idempotency_table="idempotency")
EVENT = json.loads((ROOT / "events" / "statemachine" / "acm-certificate-available-renewal.json").read_text())


def template() -> dict[str, Any]:
    return yaml_parse((ROOT / "template.yaml").read_text())  # type: ignore[no-any-return]


def statements(resource: dict[str, Any]) -> list[dict[str, Any]]:
    return [s for p in resource["Properties"].get("Policies", []) if isinstance(p, dict) and "Statement" in p
            for s in p["Statement"]]


def actions(statement: dict[str, Any]) -> list[str]:
    return [statement["Action"]] if isinstance(statement["Action"], str) else list(statement["Action"])


def readme_statement() -> list[Any]:
    text = (ROOT / "README.md").read_text()
    section = text.split(README_SECTION, 1)[1].split("\n#", 1)[0]
    blocks = re.findall(r"```yaml\n(.*?)```", section, re.S)
    assert len(blocks) == 1, f"README {README_SECTION}: expected one yaml block, found {len(blocks)}"
    return yaml_parse(blocks[0])  # type: ignore[no-any-return]


# --------------------------------------------------------------------------- template and README


def test_the_readme_statement_is_the_templates() -> None:
    export_fn = template()["Resources"]["ExportCertificateFunction"]
    [in_template] = [s for s in statements(export_fn) if s.get("Sid") == "ExportManagedCertificatesOnly"]
    assert readme_statement() == [in_template]


def test_the_only_export_grant_in_the_template_is_the_tag_scoped_one() -> None:
    grants = [(lid, s) for lid, r in template()["Resources"].items() for s in statements(r)
              if any(a.lower() in ("acm:exportcertificate", "acm:*", "*") or a.lower().startswith("acm:export")
                     for a in actions(s))]
    assert [(lid, s.get("Sid")) for lid, s in grants] == [("ExportCertificateFunction", "ExportManagedCertificatesOnly")]
    [(_, grant)] = grants
    assert grant["Effect"] == "Allow"
    assert grant["Condition"] == {"StringEquals": {f"aws:ResourceTag/{MANAGED_TAG_KEY}": {"Ref": "ManagedCertificateTag"}}}


def test_the_parameter_and_validate_event_agree() -> None:
    t = template()
    spec = t["Parameters"]["ManagedCertificateTag"]
    assert spec["Default"] == DEFAULT_MANAGED_TAG == ValidateSettings.model_fields["managed_certificate_tag"].default
    pattern = next(m.pattern for m in ValidateSettings.model_fields["managed_certificate_tag"].metadata
                   if hasattr(m, "pattern"))
    assert spec["AllowedPattern"] == pattern
    validate_fn = t["Resources"]["ValidateEventFunction"]
    env = validate_fn["Properties"]["Environment"]["Variables"]
    assert env["MANAGED_CERTIFICATE_TAG"] == {"Ref": "ManagedCertificateTag"}
    assert any("acm:ListTagsForCertificate" in actions(s) for s in statements(validate_fn))


# --------------------------------------------------------------------------- the rule


@pytest.mark.parametrize(("tags", "managed"), [
    ({MANAGED_TAG_KEY: "team-a"}, True),
    ({MANAGED_TAG_KEY: "team-a", "Owner": "pki"}, True),
    ({}, False),
    ({"Owner": "pki"}, False),
    ({MANAGED_TAG_KEY: "team-b"}, False),
    ({MANAGED_TAG_KEY: "Team-A"}, False),  # StringEquals is case-sensitive
    ({MANAGED_TAG_KEY: ""}, False),
    ({MANAGED_TAG_KEY.upper(): "team-a"}, False),
])
def test_unmanaged_reason(tags: dict[str, str], managed: bool) -> None:
    assert (unmanaged_reason(tags, "team-a") is None) is managed


def run(w: World, settings: ValidateSettings = SETTINGS) -> Any:
    return validate_event(EVENT, EXECUTION_ARN, region="eu-west-1", account_id="123456789012", settings=settings,
                          certificates=w.certificates, inventory=w.inventory, claims=w.claims,
                          executions=w.executions, records=w.records)


@pytest.mark.parametrize("tags", [{}, {MANAGED_TAG_KEY: "another-deployment"}])
def test_an_unmanaged_certificate_is_rejected_before_anything_is_claimed(tags: dict[str, str]) -> None:
    w = world()
    w.certificates.add(ARN, pki(), tags=tags)
    w.inventory.add(target("web-1"))
    with pytest.raises(CertificateNotManaged, match=f"tag it {MANAGED_TAG_KEY}={DEFAULT_MANAGED_TAG}"):
        run(w)
    assert w.claims.calls == [] and w.inventory.calls == []
    assert [op for op, _ in w.certificates.calls] == ["describe", "tags"]


def test_a_certificate_tagged_with_the_deployments_value_rolls_out() -> None:
    w = world()
    w.certificates.add(ARN, pki(), tags={MANAGED_TAG_KEY: "team-a"})
    w.inventory.add(target("web-1"))
    with pytest.raises(CertificateNotManaged):
        run(w)  # the default value is not team-a
    settings = SETTINGS.model_copy(update={"managed_certificate_tag": "team-a"})
    assert run(w, settings).decision == Decision.ROLLOUT


# --------------------------------------------------------------------------- local PKI and CLI


@pytest.fixture
def acm_region(monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with mock_aws():
        yield "eu-west-1"


def test_the_local_pki_tags_its_certificates_and_the_cli_warns_about_untagged_ones(acm_region: str) -> None:
    from cert_rollout.commands.targets import unmanaged_certificates
    from cert_rollout.localcloud.pki import LocalPrivateCA

    pca = LocalPrivateCA(lambda s: boto3.client(s, region_name=acm_region), acm_region, "123456789012",
                         managed_tag="team-a")
    tagged = pca.request_certificate("web.internal.example", [], "EC_prime256v1")
    untagged = pca.request_certificate("api.internal.example", [], "EC_prime256v1", managed=False)
    acm = boto3.client("acm", region_name=acm_region)
    assert acm.list_tags_for_certificate(CertificateArn=tagged)["Tags"] == [{"Key": MANAGED_TAG_KEY, "Value": "team-a"}]
    assert acm.list_tags_for_certificate(CertificateArn=untagged).get("Tags", []) == []
    missing = tagged.rsplit("/", 1)[0] + "/00000000-0000-0000-0000-000000000000"
    found = dict(unmanaged_certificates([tagged, untagged, missing, untagged], "team-a", acm_region, None))
    assert set(found) == {untagged, missing}
    assert found[untagged] == f"it has no tag {MANAGED_TAG_KEY}"
    assert found[missing] == "ACM has no such certificate"
    assert set(dict(unmanaged_certificates([tagged], "team-b", acm_region, None))) == {tagged}
