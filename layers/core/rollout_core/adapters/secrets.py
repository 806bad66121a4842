"""Secrets Manager adapter: stage one exported bundle as a new version of the certificate's
secret, encrypted with the customer-managed KMS key (port rollout_core/ports.py BundleStaging)."""

from __future__ import annotations

from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from rollout_core.adapters.aws import client as cached_client
from rollout_core.adapters.errors import named_aws_error
from rollout_core.ports import StagedSecret

__all__ = ["SecretsManagerStaging", "StagedSecret"]


class SecretsManagerStaging:
    """Secrets Manager through one boto3 client (default the cached process-wide one)."""

    def __init__(self, secretsmanager: Any | None = None) -> None:
        self._sm = secretsmanager if secretsmanager is not None else cached_client("secretsmanager")

    def stage(self, name: str, secret_string: str, *, kms_key_id: str, description: str) -> StagedSecret:
        """Create the secret ``name`` (KMS key ``kms_key_id``) or add a version to it.

        ``secret_string`` holds key material: it is sent to Secrets Manager and nowhere else
        (errors are not chained: botocore's would carry the request).
        Returns the secret's ARN and the new version id. Raises a named AwsError.
        """
        try:
            try:
                answer = self._sm.create_secret(Name=name, KmsKeyId=kms_key_id, Description=description,
                                                SecretString=secret_string,
                                                Tags=[{"Key": "managed-by", "Value": "acm-cert-rollout"}])
            except ClientError as e:
                if e.response.get("Error", {}).get("Code") != "ResourceExistsException":
                    raise
                answer = self._sm.put_secret_value(SecretId=name, SecretString=secret_string)
        except (ClientError, BotoCoreError) as e:
            raise named_aws_error(e, "PutSecretValue") from None
        return StagedSecret(arn=answer["ARN"], version_id=answer["VersionId"])
