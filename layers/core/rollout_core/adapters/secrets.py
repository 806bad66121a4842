"""Secrets Manager adapters: one rollout's staged bundle (port rollout_core/ports.py
BundleStaging: CreateSecret without a value, PutResourcePolicy, PutSecretValue, DeleteSecret,
ListSecrets) and the operator's keystore password secrets (port KeystorePasswords).

Errors are not chained (``from None``): botocore's would carry the request, and a
PutSecretValue request carries key material.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from rollout_core.adapters.aws import client as cached_client
from rollout_core.adapters.errors import AwsPermanentError, error_code, named_aws_error
from rollout_core.domain.staging import EXECUTION_TAG
from rollout_core.ports import StagedEntry, StagedSecret

__all__ = ["SecretsManagerKeystorePasswords", "SecretsManagerStaging", "StagedSecret"]

_NOT_FOUND = "ResourceNotFoundException"


class SecretsManagerStaging:
    """Secrets Manager through one boto3 client (default the cached process-wide one)."""

    def __init__(self, secretsmanager: Any | None = None) -> None:
        self._sm = secretsmanager if secretsmanager is not None else cached_client("secretsmanager")

    def create_empty(self, name: str, *, kms_key_id: str, description: str, tags: Mapping[str, str]) -> bool:
        """CreateSecret ``name`` with neither SecretString nor SecretBinary (Secrets Manager API
        reference, CreateSecret: without a value no version exists, so nothing is readable
        before the policy is on). True when created; False on ResourceExistsException (a retried
        export; the secret is kept). Raises a named AwsError."""
        try:
            self._sm.create_secret(Name=name, KmsKeyId=kms_key_id, Description=description,
                                   Tags=[{"Key": k, "Value": v} for k, v in tags.items()])
        except ClientError as e:
            if error_code(e) == "ResourceExistsException":
                return False
            raise named_aws_error(e, "CreateSecret") from None
        except BotoCoreError as e:
            raise named_aws_error(e, "CreateSecret") from None
        return True

    def put_policy(self, name: str, policy: Mapping[str, Any]) -> None:
        """PutResourcePolicy ``policy`` on ``name`` with BlockPublicPolicy true (Secrets Manager
        refuses a policy that grants broad access; ours only denies). Raises a named AwsError."""
        try:
            self._sm.put_resource_policy(SecretId=name, ResourcePolicy=json.dumps(policy), BlockPublicPolicy=True)
        except (ClientError, BotoCoreError) as e:
            raise named_aws_error(e, "PutResourcePolicy") from None

    def put_value(self, name: str, secret_string: str) -> StagedSecret:
        """PutSecretValue: ``secret_string`` (key material) as a new version, AWSCURRENT.
        Returns the ARN and version id. Raises a named AwsError."""
        try:
            answer = self._sm.put_secret_value(SecretId=name, SecretString=secret_string)
        except (ClientError, BotoCoreError) as e:
            raise named_aws_error(e, "PutSecretValue") from None
        return StagedSecret(arn=str(answer["ARN"]), version_id=str(answer["VersionId"]))

    def delete(self, name: str) -> bool:
        """DeleteSecret with ForceDeleteWithoutRecovery (no recovery window: the key is gone).
        True when accepted (with ForceDeleteWithoutRecovery a name that does not exist is
        accepted too, as moto does), False on ResourceNotFoundException. Raises a named AwsError."""
        try:
            self._sm.delete_secret(SecretId=name, ForceDeleteWithoutRecovery=True)
        except ClientError as e:
            if error_code(e) == _NOT_FOUND:
                return False
            raise named_aws_error(e, "DeleteSecret") from None
        except BotoCoreError as e:
            raise named_aws_error(e, "DeleteSecret") from None
        return True

    def list_staged(self, name_prefix: str) -> list[StagedEntry]:
        """ListSecrets with the ``name`` filter (a prefix match), every page; each entry's
        EXECUTION_TAG tag as its execution ARN. Raises a named AwsError."""
        entries: list[StagedEntry] = []
        kwargs: dict[str, Any] = {"Filters": [{"Key": "name", "Values": [name_prefix]}], "MaxResults": 100}
        try:
            while True:
                page = self._sm.list_secrets(**kwargs)
                for s in page.get("SecretList", []):
                    name = str(s.get("Name", ""))
                    if not name.startswith(name_prefix):  # the filter matches prefixes of words too
                        continue
                    tags = {t.get("Key"): t.get("Value") for t in s.get("Tags") or []}
                    entries.append(StagedEntry(name=name, arn=str(s.get("ARN", "")),
                                               execution_arn=tags.get(EXECUTION_TAG)))
                token = page.get("NextToken")
                if not token:
                    return entries
                kwargs["NextToken"] = token
        except (ClientError, BotoCoreError) as e:
            raise named_aws_error(e, "ListSecrets") from None


class SecretsManagerKeystorePasswords:
    """GetSecretValue of a keystore password secret, with the export function's role."""

    def __init__(self, secretsmanager: Any | None = None) -> None:
        self._sm = secretsmanager if secretsmanager is not None else cached_client("secretsmanager")

    def read(self, secret_id: str) -> str:
        """The SecretString of ``secret_id`` (name or ARN): the password, one trailing newline
        dropped. Raises AwsPermanentError (code NoSecretString) for a binary secret, or a named
        AwsError."""
        try:
            answer = self._sm.get_secret_value(SecretId=secret_id)
        except (ClientError, BotoCoreError) as e:
            raise named_aws_error(e, "GetSecretValue") from None
        value = answer.get("SecretString")
        if not isinstance(value, str):
            raise AwsPermanentError("GetSecretValue", "NoSecretString", f"{secret_id} has no SecretString")
        return value[:-1] if value.endswith("\n") else value
