"""The local cloud's IAM evaluator (src/cert_rollout/localcloud/policy.py): IAM's evaluation logic
for one account, the condition operators the template and domain/staging.py use, and the
staged-secret resource policy: a node reads a staged bundle only if the policy names it."""

from __future__ import annotations

import pytest
from rollout_core.domain.staging import node_source_arn, staged_secret_policy

from cert_rollout.localcloud.policy import UnsupportedPolicy, compile_policy, evaluate

REGION, ACCOUNT = "eu-west-1", "123456789012"
SECRET = f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:cert-rollout/staged/abc/run-1-AbCdEf"
NODE_ROLE = f"arn:aws:iam::{ACCOUNT}:role/node"
NODE_POLICY = compile_policy({"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Action": "secretsmanager:GetSecretValue",
     "Resource": f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:cert-rollout/*"}]}, "TargetNodePolicy")


def _node_context(instance_id: str) -> dict[str, tuple[str, ...]]:
    key, arn = node_source_arn(instance_id, partition="aws", region=REGION, account=ACCOUNT)
    return {key.lower(): (arn,)}


def _identity(statement: dict) -> list:
    return [compile_policy({"Version": "2012-10-17", "Statement": [statement]}, "p")]


@pytest.mark.parametrize("node_a, node_b", [("i-0aaaaaaaaaaaaaaaa", "i-0bbbbbbbbbbbbbbbb"),
                                            ("mi-0aaaaaaaaaaaaaaaa", "mi-0bbbbbbbbbbbbbbbb"),
                                            ("i-0aaaaaaaaaaaaaaaa", "mi-0bbbbbbbbbbbbbbbb")])
def test_staged_secret_is_readable_by_the_listed_node_only(node_a: str, node_b: str) -> None:
    policy = compile_policy(staged_secret_policy([node_b], partition="aws", region=REGION, account=ACCOUNT),
                            "resource policy", resource_policy=True)

    def read(node: str) -> str:
        return evaluate("secretsmanager:GetSecretValue", SECRET, identity=[NODE_POLICY], resource_policy=policy,
                        principal_arns=(NODE_ROLE,), context=_node_context(node)).decision

    assert read(node_a) == "EXPLICIT_DENY"
    assert read(node_b) == "ALLOW"


def test_staged_secret_denies_a_request_from_no_node_at_all() -> None:
    policy = compile_policy(staged_secret_policy(["i-0bbbbbbbbbbbbbbbb"], partition="aws", region=REGION,
                                                 account=ACCOUNT), "rp", resource_policy=True)
    result = evaluate("secretsmanager:GetSecretValue", SECRET, identity=[NODE_POLICY], resource_policy=policy,
                      principal_arns=(NODE_ROLE,), context={})
    assert result.decision == "EXPLICIT_DENY"
    # the Deny is about GetSecretValue only: DescribeSecret is left to the identity policy (none here)
    other = evaluate("secretsmanager:DescribeSecret", SECRET, identity=[NODE_POLICY], resource_policy=policy,
                     principal_arns=(NODE_ROLE,), context=_node_context("i-0bbbbbbbbbbbbbbbb"))
    assert other.decision == "IMPLICIT_DENY"


def test_identity_allow_or_resource_policy_allow_grants_within_the_account() -> None:
    resource_allow = compile_policy({"Statement": [{"Effect": "Allow", "Principal": {"AWS": NODE_ROLE},
                                                    "Action": "secretsmanager:GetSecretValue", "Resource": "*"}]},
                                    "rp", resource_policy=True)
    assert evaluate("secretsmanager:GetSecretValue", SECRET, identity=[], resource_policy=resource_allow,
                    principal_arns=(NODE_ROLE,)).allowed
    assert not evaluate("secretsmanager:GetSecretValue", SECRET, identity=[], resource_policy=resource_allow,
                        principal_arns=(f"arn:aws:iam::{ACCOUNT}:role/other",)).allowed
    # an account-root principal delegates to IAM: it grants nothing by itself
    root_allow = compile_policy({"Statement": [{"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"},
                                                "Action": "*", "Resource": "*"}]}, "rp", resource_policy=True)
    assert not evaluate("kms:Decrypt", "arn:aws:kms:x:y:key/1", identity=[], resource_policy=root_allow,
                        principal_arns=(NODE_ROLE,)).allowed


def test_explicit_deny_wins_over_any_allow() -> None:
    identity = [compile_policy({"Statement": [
        {"Effect": "Allow", "Action": "acm:*", "Resource": "*"},
        {"Effect": "Deny", "Action": "acm:ExportCertificate", "Resource": "arn:aws:acm:*:*:certificate/secret-*"}]}, "p")]
    assert evaluate("acm:ExportCertificate", "arn:aws:acm:eu-west-1:1:certificate/open-1", identity=identity).allowed
    denied = evaluate("acm:ExportCertificate", "arn:aws:acm:eu-west-1:1:certificate/secret-1", identity=identity)
    assert denied.decision == "EXPLICIT_DENY" and "statement 1" in denied.reason


def test_actions_match_case_insensitively_with_wildcards_and_not_action() -> None:
    assert evaluate("dynamodb:GetItem", "*", identity=_identity({"Effect": "Allow", "Action": "DynamoDB:Get*",
                                                                 "Resource": "*"})).allowed
    assert not evaluate("dynamodb:PutItem", "*", identity=_identity({"Effect": "Allow", "Action": "dynamodb:Get*",
                                                                     "Resource": "*"})).allowed
    assert evaluate("dynamodb:Query", "*", identity=_identity({"Effect": "Allow", "Action": "dynamodb:?uery",
                                                               "Resource": "*"})).allowed
    not_action = _identity({"Effect": "Allow", "NotAction": "iam:*", "Resource": "*"})
    assert evaluate("sns:Publish", "*", identity=not_action).allowed
    assert not evaluate("iam:CreateRole", "*", identity=not_action).allowed


def test_resources_match_case_sensitively_and_a_scoped_statement_does_not_match_star() -> None:
    identity = _identity({"Effect": "Allow", "Action": "dynamodb:GetItem",
                          "Resource": ["arn:aws:dynamodb:eu-west-1:1:table/Inventory",
                                       "arn:aws:dynamodb:eu-west-1:1:table/Inventory/index/*"]})
    assert evaluate("dynamodb:GetItem", "arn:aws:dynamodb:eu-west-1:1:table/Inventory", identity=identity).allowed
    assert evaluate("dynamodb:GetItem", "arn:aws:dynamodb:eu-west-1:1:table/Inventory/index/byNode",
                    identity=identity).allowed
    assert not evaluate("dynamodb:GetItem", "arn:aws:dynamodb:eu-west-1:1:table/inventory", identity=identity).allowed
    assert not evaluate("dynamodb:GetItem", "*", identity=identity).allowed
    not_resource = _identity({"Effect": "Allow", "Action": "s3:GetObject", "NotResource": "arn:aws:s3:::private/*"})
    assert evaluate("s3:GetObject", "arn:aws:s3:::public/a", identity=not_resource).allowed
    assert not evaluate("s3:GetObject", "arn:aws:s3:::private/a", identity=not_resource).allowed


@pytest.mark.parametrize("operator, expected, context, allowed", [
    ("StringEquals", "secretsmanager.eu-west-1.amazonaws.com", {"kms:viaservice": ("secretsmanager.eu-west-1.amazonaws.com",)}, True),
    ("StringEquals", "secretsmanager.eu-west-1.amazonaws.com", {"kms:viaservice": ("sqs.eu-west-1.amazonaws.com",)}, False),
    ("StringEquals", "secretsmanager.eu-west-1.amazonaws.com", {}, False),  # a missing key: positive operator false
    ("StringNotEquals", "a", {}, True),  # ... negated operator true
    ("StringNotEquals", "a", {"k:x": ("a",)}, False),
    ("StringEqualsIgnoreCase", "ABC", {"k:x": ("abc",)}, True),
    ("StringLike", "cert-rollout/*", {"k:x": ("cert-rollout/staged/1",)}, True),
    ("StringLike", "cert-rollout/*", {"k:x": ("other/1",)}, False),
    ("StringNotLike", "cert-rollout/*", {"k:x": ("other/1",)}, True),
    ("Bool", "true", {"k:x": ("True",)}, True),
    ("Bool", True, {"k:x": ("false",)}, False),
    ("StringEqualsIfExists", "a", {}, True),
    ("StringEqualsIfExists", "a", {"k:x": ("b",)}, False),
])
def test_string_and_bool_operators(operator: str, expected: object, context: dict, allowed: bool) -> None:
    key = "kms:ViaService" if "kms:viaservice" in context or expected == "secretsmanager.eu-west-1.amazonaws.com" else "k:x"
    identity = _identity({"Effect": "Allow", "Action": "*", "Resource": "*", "Condition": {operator: {key: expected}}})
    assert evaluate("kms:Decrypt", "*", identity=identity, context=context).allowed is allowed


@pytest.mark.parametrize("operator, pattern, value, allowed", [
    ("ArnEquals", "arn:aws:ec2:eu-west-1:1:instance/i-1", "arn:aws:ec2:eu-west-1:1:instance/i-1", True),
    ("ArnEquals", "arn:aws:ec2:eu-west-1:1:instance/i-1", "arn:aws:ec2:eu-west-1:1:instance/i-2", False),
    ("ArnLike", "arn:aws:ec2:*:1:instance/*", "arn:aws:ec2:eu-west-1:1:instance/i-2", True),
    ("ArnLike", "arn:aws:ec2:*:1:instance/*", "arn:aws:ssm:eu-west-1:1:managed-instance/mi-2", False),
    ("ArnLike", "arn:aws:ec2:*:1:instance/*", "not-an-arn", False),
    ("ArnNotEquals", "arn:aws:ec2:eu-west-1:1:instance/i-1", "arn:aws:ec2:eu-west-1:1:instance/i-2", True),
    ("ArnNotLike", "arn:aws:ec2:*:*:instance/i-1", "arn:aws:ec2:eu-west-1:1:instance/i-1", False),
])
def test_arn_operators(operator: str, pattern: str, value: str, allowed: bool) -> None:
    identity = _identity({"Effect": "Allow", "Action": "*", "Resource": "*",
                          "Condition": {operator: {"ec2:SourceInstanceARN": pattern}}})
    assert evaluate("x:Y", "*", identity=identity, context={"ec2:sourceinstancearn": (value,)}).allowed is allowed


def test_arn_not_equals_denies_when_the_key_is_absent_and_keys_are_anded() -> None:
    # staged_secret_policy's shape: ec2 and ssm keys in one ArnNotEquals (both must hold to deny)
    deny = {"Effect": "Deny", "Action": "*", "Resource": "*",
            "Condition": {"ArnNotEquals": {"ec2:SourceInstanceARN": "arn:aws:ec2:r:1:instance/i-1",
                                           "ssm:SourceInstanceARN": "arn:aws:ssm:r:1:managed-instance/mi-1"}}}
    identity = [compile_policy({"Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}, deny]}, "p")]
    assert not evaluate("x:Y", "*", identity=identity, context={}).allowed
    assert evaluate("x:Y", "*", identity=identity,
                    context={"ssm:sourceinstancearn": ("arn:aws:ssm:r:1:managed-instance/mi-1",)}).allowed
    assert evaluate("x:Y", "*", identity=identity,
                    context={"ec2:sourceinstancearn": ("arn:aws:ec2:r:1:instance/i-1",)}).allowed
    assert not evaluate("x:Y", "*", identity=identity,
                        context={"ec2:sourceinstancearn": ("arn:aws:ec2:r:1:instance/i-2",)}).allowed


def test_null_and_set_qualifiers() -> None:
    def allowed(condition: dict, context: dict) -> bool:
        return evaluate("x:Y", "*", identity=_identity({"Effect": "Allow", "Action": "*", "Resource": "*",
                                                        "Condition": condition}), context=context).allowed

    assert allowed({"Null": {"aws:ResourceTag/managed-by": "false"}}, {"aws:resourcetag/managed-by": ("cert-rollout",)})
    assert not allowed({"Null": {"aws:ResourceTag/managed-by": "false"}}, {})
    assert allowed({"Null": {"aws:ResourceTag/managed-by": "true"}}, {})
    tags = {"aws:tagkeys": ("rollout", "certificate")}
    assert allowed({"ForAllValues:StringEquals": {"aws:TagKeys": ["rollout", "certificate", "x"]}}, tags)
    assert not allowed({"ForAllValues:StringEquals": {"aws:TagKeys": ["rollout"]}}, tags)
    assert allowed({"ForAllValues:StringEquals": {"aws:TagKeys": ["rollout"]}}, {})  # no values: vacuously true
    assert allowed({"ForAnyValue:StringEquals": {"aws:TagKeys": ["rollout"]}}, tags)
    assert not allowed({"ForAnyValue:StringEquals": {"aws:TagKeys": ["other"]}}, tags)
    assert not allowed({"ForAnyValue:StringEquals": {"aws:TagKeys": ["rollout"]}}, {})


def test_condition_keys_compare_case_insensitively_and_all_blocks_must_hold() -> None:
    identity = _identity({"Effect": "Allow", "Action": "*", "Resource": "*", "Condition": {
        "StringEquals": {"AWS:ResourceTag/Managed-By": "cert-rollout"}, "Bool": {"aws:SecureTransport": "false"}}})
    context = {"aws:resourcetag/managed-by": ("cert-rollout",), "aws:securetransport": ("false",)}
    assert evaluate("x:Y", "*", identity=identity, context=context).allowed
    assert not evaluate("x:Y", "*", identity=identity, context={"aws:resourcetag/managed-by": ("cert-rollout",)}).allowed


@pytest.mark.parametrize("statement", [
    {"Effect": "Allow", "Action": "*", "Resource": "*", "Condition": {"NumericLessThan": {"a:b": "1"}}},
    {"Effect": "Allow", "Action": "*", "Resource": "arn:aws:s3:::${aws:username}/*"},
    {"Effect": "Permit", "Action": "*", "Resource": "*"},
])
def test_what_is_not_evaluated_is_refused_not_silently_allowed(statement: dict) -> None:
    with pytest.raises(UnsupportedPolicy):
        compile_policy({"Statement": [statement]}, "p")
    with pytest.raises(UnsupportedPolicy, match="NotPrincipal"):
        compile_policy({"Statement": [{"Effect": "Deny", "NotPrincipal": {"AWS": "x"}, "Action": "*",
                                       "Resource": "*"}]}, "rp", resource_policy=True)
