"""Every IAM policy of template.yaml as SAM deploys it, for the parliament policy linter.

Two steps, run by scripts/security_lint.sh in two environments:

  extract (project .venv, which has samtranslator):
      .venv/bin/python scripts/iam_policies.py extract template.yaml OUT_DIR
    translates the SAM template offline (cert_rollout.localcloud.deploy.translate: the same
    translation the local cloud deploys, SAM policy templates such as DynamoDBReadPolicy
    expanded, an empty managed-policy map) and writes one JSON file per policy document:
    inline policies and trust policies of every AWS::IAM::Role (function roles, the state
    machine role, EventBridge rule roles), AWS::IAM::ManagedPolicy / AWS::IAM::Policy
    documents (TargetNodePolicy), KMS key policies and SQS queue policies. Ref, Fn::GetAtt,
    Fn::Sub, Fn::Join, Fn::If are resolved to placeholder values of the right resource type
    (a table ARN for a table, a state machine ARN for a state machine ...) so parliament can
    check each action against the resource types the service authorization reference lists.

  check (.venv-lint, which has parliament):
      .venv-lint/bin/python scripts/iam_policies.py check OUT_DIR scripts/parliament_allowlist.yaml
    runs parliament on every file, drops the findings an allowlist entry accepts (each entry
    must carry a reason, and each must still match a finding: a stale entry fails too), prints
    the rest, exits 1 when any is left.

Only the standard library and PyYAML are imported at module level; samtranslator and
parliament are imported by the step that needs them.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

REGION = "eu-west-1"
ACCOUNT_ID = "123456789012"
PARTITION = "aws"
STACK_NAME = "cert-rollout"
PSEUDO = {
    "AWS::Region": REGION,
    "AWS::AccountId": ACCOUNT_ID,
    "AWS::Partition": PARTITION,
    "AWS::StackName": STACK_NAME,
    "AWS::URLSuffix": "amazonaws.com",
}


class PolicyExtractionError(Exception):
    """The template holds something the extraction cannot resolve (names the resource/intrinsic)."""


class AllowlistError(Exception):
    """The parliament allowlist file is malformed (names the entry)."""


@dataclass(frozen=True)
class PolicyDocument:
    """One IAM policy document of the translated template.

    owner: logical id of the CloudFormation resource holding it (e.g. CommandCallbackFunctionRole).
    name: the policy's name within the owner (inline PolicyName, followed by ".<SAM policy
          template name>" when SAM expanded one; "PolicyDocument"; "KeyPolicy").
    kind: "identity" (attached to a role or managed policy) or "resource" (KMS key policy,
          SQS queue policy).
    document: the JSON document with every intrinsic resolved to a placeholder string.
    """

    owner: str
    name: str
    kind: str
    document: dict[str, Any]

    @property
    def file_name(self) -> str:
        """`<owner>.<name>.json`: the name `check` reports findings under."""
        return f"{self.owner}.{self.name}.json"


# ---------------------------------------------------------------------------------- placeholders
def _arn(service: str, resource: str, region: str = REGION, account: str = ACCOUNT_ID) -> str:
    return f"arn:{PARTITION}:{service}:{region}:{account}:{resource}"


def placeholder_ref(logical_id: str, resource_type: str) -> str:
    """What `Ref` returns for a resource of this type, as a plausible value named after it.

    Follows the "Return values" section of each resource type's CloudFormation reference
    (Ref of a table is its name, of a topic its ARN, of a key its key id ...).
    Raises PolicyExtractionError for a type not listed here (add it when the template does).
    """
    name = logical_id
    refs = {
        "AWS::DynamoDB::Table": name,
        "AWS::Lambda::Function": name,
        "AWS::Lambda::LayerVersion": _arn("lambda", f"layer:{name}:1"),
        "AWS::StepFunctions::StateMachine": _arn("states", f"stateMachine:{name}"),
        "AWS::SNS::Topic": _arn("sns", name),
        "AWS::SNS::Subscription": _arn("sns", f"{name}:00000000-0000-0000-0000-000000000000"),
        "AWS::SQS::Queue": f"https://sqs.{REGION}.amazonaws.com/{ACCOUNT_ID}/{name}",
        "AWS::KMS::Key": "11111111-2222-3333-4444-555555555555",
        "AWS::KMS::Alias": f"alias/{name}",
        "AWS::SSM::Document": name,
        "AWS::Logs::LogGroup": name,
        "AWS::IAM::Role": name,
        "AWS::IAM::ManagedPolicy": f"arn:{PARTITION}:iam::{ACCOUNT_ID}:policy/{name}",
        "AWS::Events::Rule": name,
        "AWS::CloudWatch::Alarm": name,
    }
    if resource_type not in refs:
        raise PolicyExtractionError(f"Ref {logical_id}: no placeholder for resource type {resource_type}")
    return refs[resource_type]


def placeholder_attribute(logical_id: str, resource_type: str, attribute: str) -> str:
    """What `Fn::GetAtt logical_id.attribute` returns, as a placeholder of the right type.

    Raises PolicyExtractionError for an attribute not listed here.
    """
    name = logical_id
    attributes: dict[str, dict[str, str]] = {
        "AWS::DynamoDB::Table": {"Arn": _arn("dynamodb", f"table/{name}"),
                                 "StreamArn": _arn("dynamodb", f"table/{name}/stream/2026-01-01T00:00:00.000")},
        "AWS::Lambda::Function": {"Arn": _arn("lambda", f"function:{name}")},
        "AWS::StepFunctions::StateMachine": {"Arn": _arn("states", f"stateMachine:{name}"), "Name": name},
        "AWS::SNS::Topic": {"TopicArn": _arn("sns", name), "TopicName": name},
        "AWS::SQS::Queue": {"Arn": _arn("sqs", name), "QueueName": name,
                            "QueueUrl": placeholder_ref(name, "AWS::SQS::Queue")},
        "AWS::KMS::Key": {"Arn": _arn("kms", "key/" + placeholder_ref(name, "AWS::KMS::Key")),
                          "KeyId": placeholder_ref(name, "AWS::KMS::Key")},
        "AWS::Logs::LogGroup": {"Arn": _arn("logs", f"log-group:{name}:*")},
        "AWS::IAM::Role": {"Arn": f"arn:{PARTITION}:iam::{ACCOUNT_ID}:role/{name}", "RoleId": "AROA" + "X" * 17},
        "AWS::IAM::ManagedPolicy": {"PolicyArn": placeholder_ref(name, "AWS::IAM::ManagedPolicy")},
        "AWS::Events::Rule": {"Arn": _arn("events", f"rule/{name}")},
        "AWS::CloudWatch::Alarm": {"Arn": _arn("cloudwatch", f"alarm:{name}")},
    }
    try:
        return attributes[resource_type][attribute]
    except KeyError:
        raise PolicyExtractionError(
            f"Fn::GetAtt {logical_id}.{attribute}: no placeholder for {resource_type}.{attribute}") from None


# ---------------------------------------------------------------------------------- intrinsics
class _Resolver:
    def __init__(self, cfn: dict[str, Any], parameters: dict[str, str]) -> None:
        self.resources: dict[str, Any] = cfn.get("Resources", {})
        self.parameters = parameters
        self.conditions: dict[str, bool] = {}
        for name, expr in cfn.get("Conditions", {}).items():
            self.conditions[name] = bool(self.resolve(expr))

    def _type(self, logical_id: str) -> str:
        try:
            return str(self.resources[logical_id]["Type"])
        except KeyError:
            raise PolicyExtractionError(f"reference to unknown resource {logical_id}") from None

    def ref(self, name: str) -> Any:
        if name == "AWS::NoValue":
            return _NO_VALUE
        if name in PSEUDO:
            return PSEUDO[name]
        if name in self.parameters:
            return self.parameters[name]
        return placeholder_ref(name, self._type(name))

    def sub_name(self, name: str) -> str:
        if "." in name and not name.startswith("AWS::"):
            logical_id, attribute = name.split(".", 1)
            return placeholder_attribute(logical_id, self._type(logical_id), attribute)
        return str(self.ref(name))

    def resolve(self, value: Any) -> Any:
        """``value`` with every intrinsic resolved to placeholder values; AWS::NoValue drops a
        list item or mapping key. Raises PolicyExtractionError for an intrinsic not handled here."""
        if isinstance(value, list):
            return [v for v in (self.resolve(v) for v in value) if v is not _NO_VALUE]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            (key, arg), = value.items()
            intrinsic = _INTRINSICS.get(key)
            if intrinsic is not None:
                return intrinsic(self, arg)
            if key.startswith("Fn::"):
                raise PolicyExtractionError(f"intrinsic {key} is not resolved by scripts/iam_policies.py")
        return {k: v for k, v in ((k, self.resolve(v)) for k, v in value.items()) if v is not _NO_VALUE}

    def get_att(self, arg: Any) -> str:
        """Fn::GetAtt ``[logical id, attribute]`` or ``"id.attribute"``: the attribute's placeholder."""
        logical_id, attribute = arg if isinstance(arg, list) else arg.split(".", 1)
        return placeholder_attribute(logical_id, self._type(logical_id), attribute)

    def sub(self, arg: Any) -> str:
        """Fn::Sub ``text`` or ``[text, variables]``: ``${!x}`` stays literal ``${x}``, a variable
        wins over a parameter, resource or attribute of that name."""
        text, variables = (arg, {}) if isinstance(arg, str) else (arg[0], arg[1])
        local = {k: self.resolve(v) for k, v in variables.items()}
        return re.sub(r"\$\{([^}]+)\}",
                      lambda m: ("${" + m.group(1)[1:] + "}" if m.group(1).startswith("!")
                                 else str(local[m.group(1)]) if m.group(1) in local
                                 else self.sub_name(m.group(1))), text)

    def join(self, arg: Any) -> Any:
        """Fn::Join ``[separator, parts]``."""
        separator, parts = arg
        return separator.join(str(p) for p in self.resolve(parts))

    def if_(self, arg: Any) -> Any:
        """Fn::If ``[condition, value if true, value if false]``."""
        condition, yes, no = arg
        return self.resolve(yes if self.conditions[condition] else no)

    def equals(self, arg: Any) -> bool:
        """Fn::Equals ``[a, b]``, compared as strings."""
        a, b = (self.resolve(x) for x in arg)
        return str(a) == str(b)


#: The intrinsics resolved by _Resolver.resolve: name -> (resolver, argument) -> value.
_INTRINSICS: dict[str, Callable[[_Resolver, Any], Any]] = {
    "Ref": _Resolver.ref,
    "Fn::GetAtt": _Resolver.get_att,
    "Fn::Sub": _Resolver.sub,
    "Fn::Join": _Resolver.join,
    "Fn::If": _Resolver.if_,
    "Fn::Equals": _Resolver.equals,
    "Fn::Not": lambda resolver, arg: not resolver.resolve(arg[0]),
    "Condition": lambda resolver, arg: resolver.conditions[arg],
}


class _NoValue:
    pass


_NO_VALUE = _NoValue()


# ---------------------------------------------------------------------------------- extract
def sam_policy_templates(sam: dict[str, Any]) -> dict[str, str]:
    """Inline policy names SAM gives to policy templates: {"<Id>RolePolicy<i>": "<TemplateName>"}.

    SAM turns entry i of a function's or state machine's Policies list into the inline policy
    "<logical id>RolePolicy<i>" of the role "<logical id>Role"; an entry that is a mapping with
    one key other than Version/Statement names a SAM policy template (DynamoDBReadPolicy ...).
    """
    names: dict[str, str] = {}
    for logical_id, resource in sam.get("Resources", {}).items():
        if resource.get("Type") not in ("AWS::Serverless::Function", "AWS::Serverless::StateMachine"):
            continue
        policies = resource.get("Properties", {}).get("Policies", [])
        for index, entry in enumerate(policies if isinstance(policies, list) else [policies]):
            if isinstance(entry, dict) and len(entry) == 1 and not {"Version", "Statement"} & set(entry):
                names[f"{logical_id}RolePolicy{index}"] = next(iter(entry))
    return names


def policies_of(cfn: dict[str, Any], parameters: dict[str, str],
                policy_templates: dict[str, str] | None = None) -> list[PolicyDocument]:
    """Every IAM policy document of a CloudFormation template (already SAM-translated).

    Identity policies (role inline policies, AWS::IAM::ManagedPolicy, AWS::IAM::Policy) and
    resource policies (KMS key policies, SQS queue policies). Role trust policies are left
    out: SAM writes them (one service principal each) and parliament, an identity-policy
    linter, reports every statement without Resource as MALFORMED. An inline policy named in
    policy_templates (see sam_policy_templates) gets the template name in its file name.
    Resources whose Condition is false are skipped. Managed policy ARNs attached to roles
    (AWS-managed, e.g. AWSLambdaBasicExecutionRole) are not documents of this template and
    are not returned. Raises PolicyExtractionError on an unresolvable reference.
    """
    resolver = _Resolver(cfn, parameters)
    found: list[PolicyDocument] = []
    for logical_id, resource in sorted(cfn.get("Resources", {}).items()):
        if "Condition" in resource and not resolver.conditions[resource["Condition"]]:
            continue
        kind = resource.get("Type")
        props = resource.get("Properties", {})
        if kind == "AWS::IAM::Role":
            for policy in props.get("Policies", []):
                name = policy["PolicyName"]
                template = (policy_templates or {}).get(name)
                found.append(PolicyDocument(logical_id, f"{name}.{template}" if template else name, "identity",
                                            resolver.resolve(policy["PolicyDocument"])))
        elif kind in ("AWS::IAM::ManagedPolicy", "AWS::IAM::Policy"):
            found.append(PolicyDocument(logical_id, "PolicyDocument", "identity",
                                        resolver.resolve(props["PolicyDocument"])))
        elif kind == "AWS::KMS::Key" and "KeyPolicy" in props:
            found.append(PolicyDocument(logical_id, "KeyPolicy", "resource", resolver.resolve(props["KeyPolicy"])))
        elif kind == "AWS::SQS::QueuePolicy":
            found.append(PolicyDocument(logical_id, "PolicyDocument", "resource",
                                        resolver.resolve(props["PolicyDocument"])))
    return found


def extract(template: Path, out_dir: Path) -> list[PolicyDocument]:
    """Translate `template` (SAM) offline and write each policy to out_dir/<owner>.<name>.json.

    Files already in out_dir with a .json suffix are removed first. Returns the documents.
    """
    from samtranslator.yaml_helper import yaml_parse

    from cert_rollout.localcloud.deploy import translate

    cfn, _code_dirs, values = translate(template, {}, REGION)
    documents = policies_of(cfn, values, sam_policy_templates(yaml_parse(template.read_text())))
    out_dir.mkdir(parents=True, exist_ok=True)
    for stale in out_dir.glob("*.json"):
        stale.unlink()
    for doc in documents:
        (out_dir / doc.file_name).write_text(json.dumps(doc.document, indent=2) + "\n")
    return documents


# ---------------------------------------------------------------------------------- allowlist
@dataclass
class AllowlistEntry:
    """One accepted parliament finding: which policy file, which issue, optionally which detail.

    policy and issue are regular expressions matched in full (case-insensitive) against the
    policy file name and the issue; detail, when given, is searched for in the finding's
    detail text (e.g. the actions named). reason: why a reviewer accepts it; required.
    """

    policy: str
    issue: str
    reason: str
    detail: str | None = None
    used: int = field(default=0, compare=False)

    def accepts(self, finding: Finding) -> bool:
        """True when this entry matches the finding (policy file, issue and detail)."""
        return (re.fullmatch(self.policy, finding.policy, re.IGNORECASE) is not None
                and re.fullmatch(self.issue, finding.issue, re.IGNORECASE) is not None
                and (self.detail is None or re.search(self.detail, finding.detail, re.IGNORECASE) is not None))


@dataclass(frozen=True)
class Finding:
    """A parliament finding on one policy file: file name, issue, severity, detail text."""

    policy: str
    issue: str
    severity: str
    detail: str

    def __str__(self) -> str:
        return f"{self.policy}: {self.severity} {self.issue}: {self.detail}"


def load_allowlist(path: Path) -> list[AllowlistEntry]:
    """Read the allowlist YAML: a list of mappings with policy, issue, reason (and detail).

    Raises AllowlistError naming the entry when a field is missing, empty or unknown, or a
    pattern is not a valid regular expression.
    """
    data = yaml.safe_load(path.read_text()) or []
    if not isinstance(data, list):
        raise AllowlistError(f"{path}: expected a list of entries")
    entries = []
    for index, raw in enumerate(data, 1):
        if not isinstance(raw, dict):
            raise AllowlistError(f"{path} entry {index}: expected a mapping")
        unknown = set(raw) - {"policy", "issue", "reason", "detail"}
        if unknown:
            raise AllowlistError(f"{path} entry {index}: unknown fields {sorted(unknown)}")
        for required in ("policy", "issue", "reason"):
            if not str(raw.get(required) or "").strip():
                raise AllowlistError(f"{path} entry {index}: {required} is required")
        for key in ("policy", "issue", "detail"):
            if raw.get(key) is not None:
                try:
                    re.compile(str(raw[key]))
                except re.error as e:
                    raise AllowlistError(f"{path} entry {index}: {key} is not a regular expression: {e}") from None
        entries.append(AllowlistEntry(policy=str(raw["policy"]), issue=str(raw["issue"]), reason=str(raw["reason"]),
                                      detail=None if raw.get("detail") is None else str(raw["detail"])))
    return entries


def triage(findings: list[Finding], allowlist: list[AllowlistEntry]) -> tuple[list[Finding], list[AllowlistEntry]]:
    """Split findings by the allowlist: (findings no entry accepts, entries that accepted none)."""
    rejected = []
    for finding in findings:
        entry = next((e for e in allowlist if e.accepts(finding)), None)
        if entry is None:
            rejected.append(finding)
        else:
            entry.used += 1
    return rejected, [e for e in allowlist if e.used == 0]


# ---------------------------------------------------------------------------------- check
def parliament_findings(policy_dir: Path) -> list[Finding]:
    """Run parliament (its default auditors, every severity) on each *.json file of policy_dir."""
    from parliament import analyze_policy_string, enhance_finding

    files = sorted(policy_dir.glob("*.json"))
    if not files:
        raise PolicyExtractionError(f"{policy_dir}: no policy files (run the extract step first)")
    found = []
    for path in files:
        policy = analyze_policy_string(path.read_text(), filepath=path.name)
        for raw in policy.findings:
            f = enhance_finding(raw)
            found.append(Finding(policy=path.name, issue=f.issue, severity=f.severity, detail=str(f.detail)))
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    steps = parser.add_subparsers(dest="step", required=True)
    p_extract = steps.add_parser("extract", help="translate the template, write one JSON file per policy")
    p_extract.add_argument("template", type=Path)
    p_extract.add_argument("out_dir", type=Path)
    p_check = steps.add_parser("check", help="parliament on every policy file; allowlisted findings pass")
    p_check.add_argument("policy_dir", type=Path)
    p_check.add_argument("allowlist", type=Path)
    args = parser.parse_args(argv)

    if args.step == "extract":
        documents = extract(args.template, args.out_dir)
        print(f"iam_policies: {len(documents)} policy documents of {args.template} written to {args.out_dir}")
        return 0
    findings = parliament_findings(args.policy_dir)
    allowlist = load_allowlist(args.allowlist)
    rejected, unused = triage(findings, allowlist)
    files = len(list(args.policy_dir.glob("*.json")))
    for finding in rejected:
        print(f"parliament: {finding}")
    for entry in unused:
        print(f"parliament: allowlist entry matches no finding (remove it): {entry.policy} {entry.issue}")
    print(f"parliament: {files} policies, {len(findings)} findings, {len(findings) - len(rejected)} allowlisted, "
          f"{len(rejected)} not allowlisted, {len(unused)} stale allowlist entries")
    return 1 if rejected or unused else 0


if __name__ == "__main__":
    sys.exit(main())
