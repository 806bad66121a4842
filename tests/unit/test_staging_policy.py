"""The staged secret's name and resource policy (rollout_core/domain/staging.py)."""

import pytest
from rollout_core.domain.staging import (
    EC2_SOURCE_KEY,
    SSM_SOURCE_KEY,
    InvalidStagingName,
    staged_secret_name,
    staged_secret_policy,
)

ARN = "arn:aws:acm:eu-west-1:123456789012:certificate/0b1c2d3e-aaaa-bbbb-cccc-123456789012"
WHERE = {"partition": "aws", "region": "eu-west-1", "account": "123456789012"}


def test_name_is_per_rollout_under_the_staged_prefix():
    assert staged_secret_name("acm-cert-rollout", ARN, "exec-1") == (
        "acm-cert-rollout/staged/0b1c2d3e-aaaa-bbbb-cccc-123456789012/exec-1")


@pytest.mark.parametrize("rollout_id", ["", "a/b", "semi;colon", "x" * 600])
def test_name_refuses_what_secrets_manager_refuses(rollout_id):
    with pytest.raises(InvalidStagingName):
        staged_secret_name("acm-cert-rollout", ARN, rollout_id)


def test_policy_names_each_node_under_its_own_key():
    policy = staged_secret_policy(["i-0123456789abcdef0", "mi-0123456789abcdef0", "i-0123456789abcdef0"], **WHERE)
    (statement,) = policy["Statement"]
    assert statement["Effect"] == "Deny" and statement["Action"] == "secretsmanager:GetSecretValue"
    assert statement["Condition"]["ArnNotEquals"] == {
        EC2_SOURCE_KEY: ["arn:aws:ec2:eu-west-1:123456789012:instance/i-0123456789abcdef0"],
        SSM_SOURCE_KEY: ["arn:aws:ssm:eu-west-1:123456789012:managed-instance/mi-0123456789abcdef0"],
    }


def test_policy_without_nodes_still_denies_everyone():
    condition = staged_secret_policy([], **WHERE)["Statement"][0]["Condition"]["ArnNotEquals"]
    assert list(condition) == [EC2_SOURCE_KEY] and len(condition[EC2_SOURCE_KEY]) == 1


def test_policy_uses_the_partition():
    policy = staged_secret_policy(["i-0123456789abcdef0"], partition="aws-cn", region="cn-north-1", account="1")
    assert policy["Statement"][0]["Condition"]["ArnNotEquals"][EC2_SOURCE_KEY][0].startswith("arn:aws-cn:ec2:")


def test_policy_refuses_an_id_that_is_not_a_node():
    with pytest.raises(ValueError):
        staged_secret_policy(["db-1"], **WHERE)
