"""template.yaml's optional VPC for the functions that probe targets (issue 12, item 3): with
ProbeSubnetIds and ProbeSecurityGroupIds set, exactly the functions whose code opens TLS
connections (SocketTlsProbe) carry VpcConfig with those ids and their roles the ENI actions
Lambda needs; with the defaults no function is in a VPC, no role has the VPC policy, and the
translated template is the one without VpcConfig; one of the two set without the other fails
the template's Rules assertion at deploy time. The probing functions have their own roles
(template.yaml "probing roles"): SAM would attach AWSLambdaVPCAccessExecutionRole to a
generated role for any VpcConfig, even under a false Fn::If (SAM issue #3502).

Conditions and Fn::If are evaluated here as CloudFormation does (a CommaDelimitedList's Ref is
a list, [""] for an empty default), not by the local cloud, which deploys the defaults only:
VpcConfig and ENIs are not emulated (README, local-cloud table)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from moto.iam.aws_managed_policies import aws_managed_policies_data
from samtranslator.yaml_helper import yaml_parse

from cert_rollout.localcloud.deploy import translate

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "template.yaml"
REGION = "eu-west-1"
SUBNETS = ["subnet-0a1b2c3d4e5f60718", "subnet-0f1e2d3c4b5a69788"]
GROUPS = ["sg-0123456789abcdef0"]
VPC = {"ProbeSubnetIds": ",".join(SUBNETS), "ProbeSecurityGroupIds": ",".join(GROUPS)}
# SAM adds it to a function's generated role whenever the function has VpcConfig, even one under a
# false Fn::If (samtranslator model/sam_resources.py _construct_role; SAM issue #3502); the
# probing roles attach it themselves, under ProbesInVpc.
VPC_ACCESS_POLICY = "arn:aws:iam::aws:policy/service-role/AWSLambdaVPCAccessExecutionRole"
# What Lambda needs on the execution role to create and remove a function's ENIs (Lambda developer
# guide, "Giving Lambda functions access to resources in an Amazon VPC"; AWSLambdaENIManagementAccess).
ENI_ACTIONS = {"ec2:CreateNetworkInterface", "ec2:DescribeNetworkInterfaces", "ec2:DeleteNetworkInterface",
               "ec2:AssignPrivateIpAddresses", "ec2:UnassignPrivateIpAddresses"}


def sam_template() -> dict[str, Any]:
    return yaml_parse(TEMPLATE.read_text())


def probing_functions() -> set[str]:
    """Logical ids of the functions whose handler module uses SocketTlsProbe."""
    out = set()
    for lid, resource in sam_template()["Resources"].items():
        if resource["Type"] == "AWS::Serverless::Function":
            app = ROOT / resource["Properties"]["CodeUri"] / "app.py"
            if "SocketTlsProbe" in app.read_text():
                out.add(lid)
    return out


def parameter_values(sam: dict[str, Any], given: dict[str, str]) -> dict[str, Any]:
    """Each parameter's value as Ref returns it: given or default; a CommaDelimitedList a list."""
    out: dict[str, Any] = {}
    for name, spec in sam["Parameters"].items():
        raw = given.get(name, str(spec.get("Default", "")))
        out[name] = raw.split(",") if spec["Type"] == "CommaDelimitedList" else raw
    return out


_NO_VALUE = object()


class Evaluator:
    """Ref (parameters), Fn::Join/Equals/Not/And/Or, Condition, Fn::If with AWS::NoValue, a Fn::Sub
    naming AWS::Partition alone (as "aws"), and the
    rule functions Fn::EachMemberEquals, as the CloudFormation intrinsic function reference and
    "Rules" reference define them. Anything else is left as it is."""

    def __init__(self, parameters: dict[str, Any], conditions: dict[str, Any]) -> None:
        self.parameters = parameters
        self.conditions: dict[str, bool] = {}
        for name, expr in conditions.items():
            self.conditions[name] = bool(self(expr))

    def __call__(self, value: Any) -> Any:
        if isinstance(value, list):
            return [v for v in (self(v) for v in value) if v is not _NO_VALUE]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            (key, arg), = value.items()
            if key == "Ref" and arg == "AWS::NoValue":
                return _NO_VALUE
            if key == "Ref" and arg in self.parameters:
                return self.parameters[arg]
            if key == "Condition":
                return self.conditions[arg]
            if key == "Fn::If":
                name, yes, no = arg
                return self(yes if self.conditions[name] else no)
            if key == "Fn::Join":
                return arg[0].join(self(arg[1]))
            if key == "Fn::Equals":
                return self(arg[0]) == self(arg[1])
            if key == "Fn::Not":
                return not self(arg[0])
            if key == "Fn::And":
                return all(self(a) for a in arg)
            if key == "Fn::Or":
                return any(self(a) for a in arg)
            if key == "Fn::Sub" and isinstance(arg, str) and "${" not in arg.replace("${AWS::Partition}", ""):
                return arg.replace("${AWS::Partition}", "aws")  # the managed policies' ARNs
            if key == "Fn::EachMemberEquals":
                return all(member == self(arg[1]) for member in self(arg[0]))
        return {k: v for k, v in ((k, self(v)) for k, v in value.items()) if v is not _NO_VALUE}


def deployed(given: dict[str, str], sam_path: Path = TEMPLATE) -> dict[str, Any]:
    """The translated template's resources as CloudFormation would create them with `given`
    parameters (conditions applied, branches chosen; resources and attributes left as refs)."""
    cfn, _, _ = translate(sam_path, given, REGION)
    evaluate = Evaluator(parameter_values(sam_template(), given), cfn.get("Conditions", {}))
    return {lid: evaluate(r) for lid, r in cfn["Resources"].items()
            if "Condition" not in r or evaluate.conditions[r["Condition"]]}


def functions(resources: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {lid: r["Properties"] for lid, r in resources.items() if r["Type"] == "AWS::Lambda::Function"}


def test_the_probing_functions_are_the_three_that_open_tls_connections_and_they_alone_carry_vpcconfig():
    probing = probing_functions()
    assert probing == {"InstallTargetFunction", "VerifyTargetFunction", "RecordOutcomeFunction"}
    with_vpc = {lid for lid, r in sam_template()["Resources"].items() if "VpcConfig" in r.get("Properties", {})}
    assert with_vpc == probing
    assert "VpcConfig" not in sam_template()["Globals"]["Function"]


def test_with_both_parameters_the_probing_functions_run_in_those_subnets_with_eni_permissions():
    resources = deployed(VPC)
    probing = probing_functions()
    for lid, props in functions(resources).items():
        role = resources[props["Role"]["Fn::GetAtt"][0]]["Properties"]
        if lid in probing:
            assert props["VpcConfig"] == {"SubnetIds": SUBNETS, "SecurityGroupIds": GROUPS}, lid
            assert VPC_ACCESS_POLICY in role["ManagedPolicyArns"], lid
        else:
            assert "VpcConfig" not in props, lid
            assert VPC_ACCESS_POLICY not in role["ManagedPolicyArns"], lid


def test_the_managed_policy_sam_attaches_grants_the_eni_actions_lambda_needs():
    # moto ships the AWS managed policies' documents (AWSLambdaVPCAccessExecutionRole v3)
    document = json.loads(aws_managed_policies_data)[VPC_ACCESS_POLICY.rsplit("/", 1)[-1]]["Document"]
    granted = {a for s in document["Statement"] if s["Effect"] == "Allow" and s["Resource"] == "*"
               for a in s["Action"]}
    assert granted >= ENI_ACTIONS


def _template_without_vpcconfig(tmp_path: Path) -> Path:
    """A copy of template.yaml (in tmp_path, beside links to the folders it names) whose
    functions carry no VpcConfig: the template as before issue 12's VPC settings."""
    sam = sam_template()
    for resource in sam["Resources"].values():
        resource.get("Properties", {}).pop("VpcConfig", None)
    for folder in ("functions", "layers", "installer", "documents", "statemachine"):
        (tmp_path / folder).symlink_to(ROOT / folder, target_is_directory=True)
    path = tmp_path / "template.yaml"
    path.write_text(json.dumps(sam))  # JSON is YAML
    return path


def _policy_arns(resources: dict[str, Any]) -> dict[str, list[str]]:
    """Each (evaluated) role's managed policy ARNs."""
    return {lid: r["Properties"].get("ManagedPolicyArns", []) for lid, r in resources.items()
            if r["Type"] == "AWS::IAM::Role"}


def test_with_the_defaults_no_function_is_in_a_vpc_and_no_role_has_the_vpc_policy(tmp_path):
    today = deployed({}, _template_without_vpcconfig(tmp_path))
    now = deployed({})
    assert set(now) == set(today)
    for lid, props in functions(now).items():
        assert "VpcConfig" not in props, lid
    for lid, arns in _policy_arns(now).items():
        assert VPC_ACCESS_POLICY not in arns, lid
    for lid, resource in now.items():
        assert resource == today[lid], lid


def test_the_translated_template_has_the_vpc_policy_exactly_on_the_probing_roles_with_the_parameters():
    # translated only (SAM's output, before CloudFormation evaluates Fn::If): with the defaults
    # no role names the policy outside a Fn::If on ProbesInVpc
    cfn, _, _ = translate(TEMPLATE, {}, REGION)
    probing_roles = {f + "Role" for f in probing_functions()}
    for lid, resource in cfn["Resources"].items():
        if resource["Type"] != "AWS::IAM::Role":
            continue
        text = json.dumps(resource)
        if lid in probing_roles:
            conditional = [a for a in resource["Properties"]["ManagedPolicyArns"] if "Fn::If" in a]
            assert len(conditional) == 1 and conditional[0]["Fn::If"][0] == "ProbesInVpc", lid
            assert text.count("AWSLambdaVPCAccessExecutionRole") == 1, lid
        else:
            assert "AWSLambdaVPCAccessExecutionRole" not in text, lid
    with_vpc = _policy_arns(deployed(VPC))
    assert {lid for lid, arns in with_vpc.items() if VPC_ACCESS_POLICY in arns} == probing_roles


def test_each_probing_role_is_its_functions_alone_and_has_the_basic_and_xray_policies_sam_would_add():
    resources = deployed({})
    sam = sam_template()
    for lid in probing_functions():
        assert sam["Resources"][lid]["Properties"]["Role"] == {"Fn::GetAtt": [lid + "Role", "Arn"]}
        assert "Policies" not in sam["Resources"][lid]["Properties"], lid  # the statements live in the role
        others = [f for f, p in functions(resources).items() if f != lid and p["Role"] == {"Fn::GetAtt": [lid + "Role", "Arn"]}]
        assert others == [], lid
        arns = _policy_arns(resources)[lid + "Role"]
        assert arns == ["arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole",
                        "arn:aws:iam::aws:policy/AWSXrayWriteOnlyAccess"], lid
    assert sam["Globals"]["Function"]["Tracing"] == "Active"  # why the X-Ray policy is there


@pytest.mark.parametrize(("given", "valid", "in_vpc"), [
    ({}, True, False),
    (VPC, True, True),
    # refused before any resource is created: the condition's value does not matter
    ({"ProbeSubnetIds": VPC["ProbeSubnetIds"]}, False, True),
    ({"ProbeSecurityGroupIds": VPC["ProbeSecurityGroupIds"]}, False, False),
])
def test_the_rule_refuses_one_without_the_other_and_the_condition_follows_the_subnets(given, valid, in_vpc):
    sam = sam_template()
    evaluate = Evaluator(parameter_values(sam, given), sam["Conditions"])
    rule = sam["Rules"]["ProbeSubnetsAndSecurityGroupsTogether"]
    assert "RuleCondition" not in rule
    assert all(evaluate(a["Assert"]) for a in rule["Assertions"]) is valid
    assert evaluate.conditions["ProbesInVpc"] is in_vpc


def _readme_endpoint_services() -> set[str]:
    """The services of README's "Private targets" endpoint table (com.amazonaws.<region>.<service>)."""
    text = (ROOT / "README.md").read_text()
    section = text.split("### Private targets", 1)[1].split("\n### ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| ") and "com.amazonaws." in line]
    return {re.search(r"com\.amazonaws\.<region>\.([a-z0-9-]+)", row).group(1) for row in rows}


def test_the_readme_names_an_endpoint_for_each_service_the_probing_roles_call():
    resources = deployed(VPC)
    roles = {f + "Role" for f in probing_functions()}
    documents = [p["PolicyDocument"] for lid in roles for p in resources[lid]["Properties"].get("Policies", [])]
    documents += [r["Properties"]["PolicyDocument"] for r in resources.values() if r["Type"] == "AWS::IAM::Policy"
                  and roles & {ref.get("Ref") for ref in r["Properties"]["Roles"] if isinstance(ref, dict)}]
    services = set()
    for document in documents:
        statements = document["Statement"] if isinstance(document["Statement"], list) else [document["Statement"]]
        for statement in statements:
            actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
            services |= {a.split(":", 1)[0] for a in actions}
    sam = sam_template()
    if sam["Globals"]["Function"].get("Tracing") == "Active":
        services.add("xray")
    # the IAM service prefix of each is its endpoint's service name (dynamodb, ssm, lambda, xray ...)
    assert services == _readme_endpoint_services()
