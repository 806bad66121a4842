"""Secrets Manager: stage one exported bundle as a new version of the certificate's secret,
encrypted with the customer-managed KMS key."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from rollout_core.adapters.aws import client
from rollout_core.adapters.errors import named_aws_error


@dataclass(frozen=True)
class StagedSecret:
    arn: str
    version_id: str


def stage_bundle(name: str, secret_string: str, kms_key_id: str, description: str,
                 sm: Any | None = None) -> StagedSecret:
    """Create the secret ``name`` (KMS key ``kms_key_id``) or add a version to it.

    ``secret_string`` holds key material: it is sent to Secrets Manager and nowhere else.
    Returns the secret's ARN and the new version id (the only things that enter the state).
    Raises a named AwsError.
    """
    sm = sm or client("secretsmanager")
    try:
        try:
            answer = sm.create_secret(Name=name, KmsKeyId=kms_key_id, Description=description,
                                      SecretString=secret_string,
                                      Tags=[{"Key": "managed-by", "Value": "acm-cert-rollout"}])
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") != "ResourceExistsException":
                raise
            answer = sm.put_secret_value(SecretId=name, SecretString=secret_string)
    except (ClientError, BotoCoreError) as e:
        raise named_aws_error(e, "PutSecretValue") from None
    return StagedSecret(arn=answer["ARN"], version_id=answer["VersionId"])
