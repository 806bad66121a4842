"""adapters/secrets.py against moto's Secrets Manager: the staged secret has no value until
PutSecretValue, carries its resource policy and execution tag, and is gone after delete."""

from __future__ import annotations

import json

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws
from rollout_core.adapters.errors import AwsPermanentError
from rollout_core.adapters.secrets import SecretsManagerKeystorePasswords, SecretsManagerStaging
from rollout_core.domain.staging import EXECUTION_TAG, staged_secret_policy

NAME = "cert-rollout/staged/6f1e2d3c/rollout-1"
EXECUTION = "arn:aws:states:eu-west-1:123456789012:execution:CertRollout:rollout-1"


@pytest.fixture
def sm():
    with mock_aws():
        yield boto3.client("secretsmanager", region_name="eu-west-1")


def test_staged_secret_lifetime(sm) -> None:
    staging = SecretsManagerStaging(sm)
    assert staging.create_empty(NAME, kms_key_id="alias/aws/secretsmanager", description="d",
                                tags={EXECUTION_TAG: EXECUTION}) is True
    with pytest.raises(ClientError):  # no value yet: nothing to read
        sm.get_secret_value(SecretId=NAME)
    policy = staged_secret_policy(["i-0123456789abcdef0"], partition="aws", region="eu-west-1",
                                  account="123456789012")
    staging.put_policy(NAME, policy)
    assert json.loads(sm.get_resource_policy(SecretId=NAME)["ResourcePolicy"]) == policy
    staged = staging.put_value(NAME, '{"privateKey": "x"}')
    assert sm.get_secret_value(SecretId=NAME, VersionId=staged.version_id)["SecretString"] == '{"privateKey": "x"}'
    assert staging.create_empty(NAME, kms_key_id="k", description="d", tags={}) is False  # a retry keeps it
    sm.create_secret(Name="cert-rollout/stagedX", SecretString="not ours")
    [entry] = staging.list_staged("cert-rollout/staged/")
    assert (entry.name, entry.execution_arn) == (NAME, EXECUTION)
    assert staging.delete(NAME) is True
    assert staging.list_staged("cert-rollout/staged/") == []
    staging.delete(NAME)  # again (a retried Notify): no error (moto, like Secrets Manager, accepts it)


def test_keystore_password_read(sm) -> None:
    sm.create_secret(Name="cert-rollout/keystores/web", SecretString="pw-1\n")
    sm.create_secret(Name="cert-rollout/keystores/bin", SecretBinary=b"\x00")
    passwords = SecretsManagerKeystorePasswords(sm)
    assert passwords.read("cert-rollout/keystores/web") == "pw-1"
    with pytest.raises(AwsPermanentError) as raised:
        passwords.read("cert-rollout/keystores/bin")
    assert raised.value.code == "NoSecretString"
    with pytest.raises(AwsPermanentError):
        passwords.read("cert-rollout/keystores/none")
