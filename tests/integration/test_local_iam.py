"""IAM enforced on the local cloud (iam.py): the template's roles exist with their policies, every
function, the state machine and every node signs with its own role's session, and a request the
role's policies (or the target's resource policy) do not allow answers AccessDenied."""

import json

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from rollout_core.domain.staging import staged_secret_policy

from cert_rollout.localcloud.cloud import LocalCloud
from cert_rollout.localcloud.iam import STATES_INTERPRETER_KEY

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def cloud():
    with LocalCloud() as c:
        yield c


def _client(cloud, service, credentials):
    return boto3.client(service, region_name=cloud.region, endpoint_url=cloud.endpoint,
                        aws_access_key_id=credentials["AWS_ACCESS_KEY_ID"],
                        aws_secret_access_key=credentials["AWS_SECRET_ACCESS_KEY"],
                        aws_session_token=credentials["AWS_SESSION_TOKEN"],
                        config=Config(retries={"max_attempts": 1}))


def _function_credentials(cloud, logical_id):
    return cloud.deployment.function_by_logical_id(logical_id).credentials


def _code(call):
    with pytest.raises(ClientError) as e:
        call()
    return e.value.response["Error"]["Code"]


def test_every_role_of_the_translated_template_exists_with_its_inline_policies(cloud):
    iam = cloud.client("iam")
    cfn = cloud.deployment.cfn_template["Resources"]
    roles = {lid: r for lid, r in cfn.items() if r["Type"] == "AWS::IAM::Role"}
    assert "ExportCertificateFunctionRole" in roles and "RolloutStateMachineRole" in roles
    for lid, resource in roles.items():
        name = cloud.deployment.physical[lid]
        inline = set(iam.list_role_policies(RoleName=name)["PolicyNames"])
        expected = {p["PolicyName"] for p in resource["Properties"].get("Policies", [])}
        assert expected <= inline, lid
    for resource in cfn.values():  # stand-alone AWS::IAM::Policy resources land on their roles
        if resource["Type"] == "AWS::IAM::Policy":
            for role in resource["Properties"]["Roles"]:
                name = cloud.deployment.physical[role["Ref"]]
                assert resource["Properties"]["PolicyName"] in iam.list_role_policies(RoleName=name)["PolicyNames"]
    node_role = cloud.node_role_arn.rsplit("/", 1)[-1]
    attached = [p["PolicyArn"] for p in iam.list_attached_role_policies(RoleName=node_role)["AttachedPolicies"]]
    assert attached == [cloud.outputs["TargetNodePolicyArn"]]


def test_each_function_the_state_machine_and_each_node_sign_as_their_own_role(cloud):
    specs = list(cloud.deployment.functions.values())
    keys = [s.credentials["AWS_ACCESS_KEY_ID"] for s in specs]
    assert len(set(keys)) == len(specs)
    for spec in specs:
        identity = _client(cloud, "sts", spec.credentials).get_caller_identity()
        assert identity["Arn"].split("/")[1] == spec.role_arn.rsplit("/", 1)[-1], spec.logical_id
        assert cloud.iam.principals[spec.credentials["AWS_ACCESS_KEY_ID"]].label == f"function {spec.logical_id}"
    [state_machine_role] = cloud.deployment.state_machine_roles.values()
    assert cloud.iam.principals[STATES_INTERPRETER_KEY].role_arn == state_machine_role
    a, b = cloud.add_node("i-0aaaaaaaaaaaaaaaa"), cloud.add_node("mi-0bbbbbbbbbbbbbbbb")
    assert a.env["AWS_ACCESS_KEY_ID"] != b.env["AWS_ACCESS_KEY_ID"]
    assert a.env["AWS_ACCESS_KEY_ID"] not in keys
    principal_a = cloud.iam.principals[a.env["AWS_ACCESS_KEY_ID"]]
    principal_b = cloud.iam.principals[b.env["AWS_ACCESS_KEY_ID"]]
    assert principal_a.role_arn == principal_b.role_arn == cloud.node_role_arn
    assert principal_a.context["ec2:sourceinstancearn"] == (
        f"arn:aws:ec2:{cloud.region}:{cloud.account_id}:instance/i-0aaaaaaaaaaaaaaaa",)
    assert principal_b.context["ssm:sourceinstancearn"] == (
        f"arn:aws:ssm:{cloud.region}:{cloud.account_id}:managed-instance/mi-0bbbbbbbbbbbbbbbb",)
    assert "ec2:sourceinstancearn" not in principal_b.context


def test_a_call_no_statement_allows_is_access_denied_and_an_allowed_one_reaches_the_service(cloud):
    missing = f"arn:aws:acm:{cloud.region}:{cloud.account_id}:certificate/00000000-0000-0000-0000-000000000000"
    validate = _client(cloud, "acm", _function_credentials(cloud, "ValidateEventFunction"))
    # allowed (acm:DescribeCertificate on certificate/*): ACM itself answers "not found"
    assert _code(lambda: validate.describe_certificate(CertificateArn=missing)) == "ResourceNotFoundException"
    # not in ValidateEvent's role: refused before ACM looks
    before = len(cloud.iam.denials)
    assert _code(lambda: validate.export_certificate(CertificateArn=missing, Passphrase=b"abcd1234")) == \
        "AccessDeniedException"
    denial = cloud.iam.denials[before]
    assert (denial.principal, denial.action, denial.resource) == \
        ("function ValidateEventFunction", "acm:ExportCertificate", missing)
    export_ddb = _client(cloud, "dynamodb", _function_credentials(cloud, "ExportCertificateFunction"))
    assert _code(lambda: export_ddb.scan(TableName=cloud.outputs["InventoryTableName"])) == "AccessDeniedException"
    notify_sns = _client(cloud, "sns", _function_credentials(cloud, "NotifyFunction"))
    notify_sns.publish(TopicArn=cloud.outputs["RolloutTopicArn"], Message="allowed")
    validate_sns = _client(cloud, "sns", _function_credentials(cloud, "ValidateEventFunction"))
    assert _code(lambda: validate_sns.publish(TopicArn=cloud.outputs["RolloutTopicArn"], Message="x")) == \
        "AuthorizationError"
    # the operator is not evaluated
    cloud.client("dynamodb").scan(TableName=cloud.outputs["InventoryTableName"])


def test_a_staged_secret_is_read_by_the_node_its_policy_names_and_no_other(cloud):
    prefix = cloud.deployment.parameters["SecretPrefix"]
    node_a, node_b = cloud.add_node("i-0cccccccccccccccc"), cloud.add_node("i-0dddddddddddddddd")
    operator = cloud.client("secretsmanager")
    name = f"{prefix}/staged/cert-b/run-1"
    operator.create_secret(Name=name, SecretString=json.dumps({"bundle": "not key material"}))
    operator.put_resource_policy(SecretId=name, ResourcePolicy=json.dumps(staged_secret_policy(
        [node_b.instance_id], partition="aws", region=cloud.region, account=cloud.account_id)))
    read_a = _client(cloud, "secretsmanager", node_a.env)
    read_b = _client(cloud, "secretsmanager", node_b.env)
    assert _code(lambda: read_a.get_secret_value(SecretId=name)) == "AccessDeniedException"
    assert cloud.iam.denials[-1].reason == "resource policy statement OnlyThisRolloutsTargetNodes"
    assert json.loads(read_b.get_secret_value(SecretId=name)["SecretString"]) == {"bundle": "not key material"}
    # the node role reads nothing outside the prefix, and writes nothing
    operator.create_secret(Name="elsewhere/secret", SecretString="x")
    assert _code(lambda: read_b.get_secret_value(SecretId="elsewhere/secret")) == "AccessDeniedException"
    assert _code(lambda: read_b.put_secret_value(SecretId=name, SecretString="y")) == "AccessDeniedException"


def test_a_rule_whose_role_may_not_start_the_state_machine_starts_nothing(cloud):
    iam = cloud.client("iam")
    trust = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"Service": "events.amazonaws.com"},
                                                     "Action": "sts:AssumeRole"}]}
    role = iam.create_role(RoleName="rule-without-permission", AssumeRolePolicyDocument=json.dumps(trust))["Role"]
    assert cloud.start_execution_from_rule("r", cloud.state_machine_arn, {"source": "x"}, role["Arn"]) is None
    assert cloud.iam.denials[-1].action == "states:StartExecution"
