"""scripts/iam_policies.py: every IAM policy of the template as SAM translates it, resolved to
placeholder ARNs of the right resource type, and the parliament allowlist (reasons required,
stale entries reported). Also: no checkov skip (template.yaml or .checkov.yaml) without its
reason, and a README row for each."""

import importlib.util
import json
import re
import sys
from pathlib import Path

import pytest
import yaml
from samtranslator.yaml_helper import yaml_parse

ROOT = Path(__file__).resolve().parents[2]


def _load():
    spec = importlib.util.spec_from_file_location("_script_iam_policies", ROOT / "scripts" / "iam_policies.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


iam = _load()


@pytest.fixture(scope="module")
def extracted(tmp_path_factory):
    out = tmp_path_factory.mktemp("policies")
    documents = iam.extract(ROOT / "template.yaml", out)
    return {d.file_name: d for d in documents}, out


@pytest.fixture(scope="module")
def cfn():
    from cert_rollout.localcloud.deploy import translate

    template, _, _ = translate(ROOT / "template.yaml", {}, iam.REGION)
    return template


def _statements(doc):
    statements = doc.document["Statement"]
    return statements if isinstance(statements, list) else [statements]


def test_every_inline_and_managed_policy_of_the_translated_template_is_extracted(extracted, cfn):
    by_file, out = extracted
    expected = set()
    for logical_id, resource in cfn["Resources"].items():
        if resource["Type"] == "AWS::IAM::Role":
            names = [p["PolicyName"] for p in resource["Properties"].get("Policies", [])]
            expected |= {(logical_id, n) for n in names}
        elif resource["Type"] in ("AWS::IAM::ManagedPolicy", "AWS::KMS::Key", "AWS::SQS::QueuePolicy"):
            expected.add((logical_id, None))
    got = {(d.owner, d.name.split(".")[0]) for d in by_file.values() if d.kind == "identity" and d.owner.endswith("Role")}
    assert got == {e for e in expected if e[1] is not None}
    owners = {d.owner for d in by_file.values()}
    assert {e[0] for e in expected if e[1] is None} <= owners
    assert {"TargetNodePolicy", "RolloutStateMachineRole", "CommandCallbackFunctionRole"} <= owners
    assert any(o.startswith("RolloutStateMachine") and o.endswith("Role") and o != "RolloutStateMachineRole"
               for o in owners), "the EventBridge rule roles of the state machine"
    assert sorted(p.name for p in out.glob("*.json")) == sorted(by_file)


def test_no_intrinsic_is_left_and_arns_have_the_right_resource_type(extracted):
    by_file, _ = extracted
    for name, doc in by_file.items():
        text = json.dumps(doc.document)
        assert "Fn::" not in text and '"Ref"' not in text, name
    read_inventory = by_file["ValidateEventFunctionRole.ValidateEventFunctionRolePolicy1.DynamoDBReadPolicy.json"]
    resources = _statements(read_inventory)[0]["Resource"]
    assert f"arn:aws:dynamodb:{iam.REGION}:{iam.ACCOUNT_ID}:table/InventoryTable" in resources
    start = next(d for n, d in by_file.items() if n.endswith("AcmRenewalCompletedRoleStartExecutionPolicy.json"))
    assert _statements(start)[0]["Resource"] == f"arn:aws:states:{iam.REGION}:{iam.ACCOUNT_ID}:stateMachine:RolloutStateMachine"
    node = by_file["TargetNodePolicy.PolicyDocument.json"]
    assert _statements(node)[1]["Resource"].startswith(f"arn:aws:kms:{iam.REGION}:{iam.ACCOUNT_ID}:key/")


def test_send_task_success_and_failure_are_granted_on_star(extracted):
    """The service authorization reference lists no resource type for these actions."""
    by_file, _ = extracted
    grants = [s for d in by_file.values() if d.owner == "CommandCallbackFunctionRole" for s in _statements(d)
              if "states:SendTaskSuccess" in s.get("Action", [])]
    assert grants and all(s["Resource"] == "*" for s in grants)
    assert set(grants[0]["Action"]) == {"states:SendTaskSuccess", "states:SendTaskFailure"}


def test_policy_template_names_match_the_policies_sam_writes(cfn):
    names = iam.sam_policy_templates(yaml_parse((ROOT / "template.yaml").read_text()))
    assert names["ValidateEventFunctionRolePolicy1"] == "DynamoDBReadPolicy"
    assert "ValidateEventFunctionRolePolicy0" not in names  # a statement document, not a template
    written = {p["PolicyName"] for r in cfn["Resources"].values() if r["Type"] == "AWS::IAM::Role"
               for p in r["Properties"].get("Policies", [])}
    assert set(names) <= written


def test_unknown_resource_type_and_unknown_intrinsic_are_named():
    cfn = {"Resources": {
        "Thing": {"Type": "AWS::Foo::Bar"},
        "Role": {"Type": "AWS::IAM::Role", "Properties": {"AssumeRolePolicyDocument": {}, "Policies": [
            {"PolicyName": "P", "PolicyDocument": {"Statement": [{"Effect": "Allow", "Action": "s3:GetObject",
                                                                   "Resource": {"Fn::GetAtt": ["Thing", "Arn"]}}]}}]}}}}
    with pytest.raises(iam.PolicyExtractionError, match="Thing.Arn"):
        iam.policies_of(cfn, {})
    cfn["Resources"]["Role"]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"][0]["Resource"] = {
        "Fn::FindInMap": ["M", "a", "b"]}
    with pytest.raises(iam.PolicyExtractionError, match="Fn::FindInMap"):
        iam.policies_of(cfn, {})


def test_sub_resolves_parameters_pseudo_parameters_and_attributes():
    cfn = {"Resources": {"Q": {"Type": "AWS::SQS::Queue"}, "P": {"Type": "AWS::IAM::ManagedPolicy", "Properties": {
        "PolicyDocument": {"Statement": [{"Effect": "Allow", "Action": "sqs:SendMessage",
                                          "Resource": {"Fn::Sub": "${Q.Arn}-${Prefix}-${AWS::Region}-${!Literal}"}}]}}}}}
    doc, = iam.policies_of(cfn, {"Prefix": "x"})
    assert doc.document["Statement"][0]["Resource"] == f"arn:aws:sqs:{iam.REGION}:{iam.ACCOUNT_ID}:Q-x-{iam.REGION}-${{Literal}}"


# ------------------------------------------------------------------------------------ allowlist
def test_allowlist_entry_without_reason_is_refused(tmp_path):
    path = tmp_path / "allow.yaml"
    path.write_text("- {policy: '.*', issue: NO_VERSION}\n")
    with pytest.raises(iam.AllowlistError, match="entry 1: reason is required"):
        iam.load_allowlist(path)
    path.write_text("- {policy: '(', issue: NO_VERSION, reason: r}\n")
    with pytest.raises(iam.AllowlistError, match="policy is not a regular expression"):
        iam.load_allowlist(path)
    path.write_text("- {policy: a, issue: B, reason: r, resource: x}\n")
    with pytest.raises(iam.AllowlistError, match="unknown fields"):
        iam.load_allowlist(path)


def test_triage_keeps_unaccepted_findings_and_reports_stale_entries():
    findings = [iam.Finding("A.Policy0.DynamoDBReadPolicy.json", "NO_VERSION", "LOW", ""),
                iam.Finding("B.Policy1.json", "RESOURCE_MISMATCH", "MEDIUM", "states:SendTaskSuccess")]
    allowlist = [iam.AllowlistEntry(policy=r".*\.DynamoDBReadPolicy\.json", issue="NO_VERSION", reason="r"),
                 iam.AllowlistEntry(policy=r"B\..*", issue="RESOURCE_MISMATCH", reason="r", detail="GetItem"),
                 iam.AllowlistEntry(policy="C.json", issue="NO_VERSION", reason="r")]
    rejected, stale = iam.triage(findings, allowlist)
    assert rejected == [findings[1]]  # the detail does not match
    assert [e.policy for e in stale] == [r"B\..*", "C.json"]


def test_the_projects_allowlist_loads_and_every_entry_has_a_reason():
    entries = iam.load_allowlist(ROOT / "scripts" / "parliament_allowlist.yaml")
    assert entries and all(len(e.reason.split()) >= 8 for e in entries)


def _template_skips() -> list[tuple[str, dict]]:
    template = yaml_parse((ROOT / "template.yaml").read_text())
    return [(lid, s) for lid, r in template["Resources"].items()
            for s in (r.get("Metadata", {}).get("checkov", {}).get("skip", []))]


def _global_skips() -> dict[str, str]:
    """.checkov.yaml skip-check ids -> the reason in the comment on the id's line."""
    text = (ROOT / ".checkov.yaml").read_text()
    ids = yaml.safe_load(text)["skip-check"]
    reasons = dict(re.findall(r"^\s*- (CKV_\w+)\s*#\s*(.*)$", text, flags=re.MULTILINE))
    assert sorted(reasons) == sorted(ids), "every skip-check id on its own line with a # reason"
    return reasons


def test_every_checkov_skip_in_the_template_has_a_reason():
    skips = _template_skips()
    assert skips
    for lid, skip in skips:
        assert skip["id"].startswith("CKV_"), lid
        assert len(str(skip.get("comment", "")).split()) >= 8, f"{lid} {skip['id']}: no reason"


def test_every_global_checkov_skip_has_a_reason_and_is_not_also_in_the_template():
    reasons = _global_skips()
    assert reasons
    for check_id, reason in reasons.items():
        assert len(reason.split()) >= 8, f".checkov.yaml {check_id}: no reason"
    assert not {skip["id"] for _, skip in _template_skips()} & set(reasons), "skipped in both places"


def test_the_readme_security_review_lists_every_suppression():
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Security review"):]
    section = section[:section.index("\n## ", 1)]
    rows = [line for line in section.splitlines() if line.startswith("| CKV_")]
    for check_id in {skip["id"] for _, skip in _template_skips()} | set(_global_skips()):
        assert any(row.startswith(f"| {check_id} ") for row in rows), f"README Security review: no row for {check_id}"
