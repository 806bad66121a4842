"""Where a rollout stages its key material and who may read it (issue 11: per-target scope).

One secret per rollout (not one per certificate): ``<SecretPrefix>/staged/<certificate id>/<rollout id>``.
Its resource policy denies ``secretsmanager:GetSecretValue`` to every principal except requests
made from the managed nodes that host the certificate's targets, and the secret is deleted when
the rollout ends; so a node reads only the bundle of a certificate it serves, only while that
certificate's rollout runs.

Why a Deny in the resource policy: within one account an identity-policy Allow OR a
resource-policy Allow grants access, so narrowing a node role's ``${SecretPrefix}/staged/*``
Allow takes an explicit Deny on the resource (../shared/notes/aws-facts.md, "IAM").

Which condition key names the node (service authorization reference, as packaged in the
``parliament`` linter's iam_definition.json):

* ``ec2:SourceInstanceARN`` (type ARN): present in requests signed with an EC2 instance
  profile's credentials; ``arn:<partition>:ec2:<region>:<account>:instance/i-...``.
* ``ssm:SourceInstanceARN`` (type ARN): the Systems Manager managed node a request comes from,
  for hybrid-activated nodes (``mi-...``); absent for EC2 instance-profile credentials;
  ``arn:<partition>:ssm:<region>:<account>:managed-instance/mi-...``.

Negated condition operators match when the key is absent, so one statement
``ArnNotEquals {ec2 key: [EC2 nodes], ssm key: [hybrid nodes]}`` (keys ANDed) denies every
request that comes from none of the listed nodes, including requests with neither key.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from .errors import RolloutError

__all__ = [
    "EC2_SOURCE_KEY",
    "EXECUTION_TAG",
    "KEYSTORE_SEGMENT",
    "POLICY_MAX_CHARS",
    "SSM_SOURCE_KEY",
    "STAGED_SEGMENT",
    "InvalidStagingName",
    "PasswordSecretOutsidePrefix",
    "StagingPolicyTooLarge",
    "keystore_secret_name",
    "node_source_arn",
    "staged_secret_name",
    "staged_secret_policy",
    "staged_rollout_id",
    "staged_secret_prefix",
]

STAGED_SEGMENT = "staged"
# Keystore passwords (Target files' passwordSecret) live under <SecretPrefix>/keystores/: the export
# role reads only those; no node reads them (ExportCertificate puts them in the staged bundle).
KEYSTORE_SEGMENT = "keystores"
# The tag every staged secret carries: the ARN of the execution (rollout) that staged it. The sweep
# (logic/staging.py sweep_ended_rollouts) asks DescribeExecution about exactly that ARN.
EXECUTION_TAG = "cert-rollout:execution-arn"
# Secrets Manager quota: a resource-based policy is at most 20,480 characters (Secrets Manager
# User Guide, "Secrets Manager quotas", resource-based policy length; from memory, the stored
# excerpt of that page did not show the row); about 300 EC2 node ARNs fit in one.
POLICY_MAX_CHARS = 20480
EC2_SOURCE_KEY = "ec2:SourceInstanceARN"
SSM_SOURCE_KEY = "ssm:SourceInstanceARN"
# Secrets Manager secret names: 1-512 characters of letters, digits and /_+=.@-
_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789/_+=.@-")
# A policy that names no node must still deny everyone: no instance ever has this ARN (region
# "none", account 000000000000), built in the deployment's partition (domain/arns.py).
_NO_NODE_REGION, _NO_NODE_ACCOUNT, _NO_NODE_RESOURCE = "none", "000000000000", "instance/i-00000000"


class InvalidStagingName(RolloutError):
    """A staged secret name cannot be built from these parts (characters or length)."""


class StagingPolicyTooLarge(RolloutError):
    """The staged secret's resource policy would exceed Secrets Manager's 20,480 characters
    (too many distinct target nodes for one certificate)."""


class PasswordSecretOutsidePrefix(RolloutError):
    """A target's passwordSecret is not under ``<SecretPrefix>/keystores/``: ExportCertificate
    does not read it (its role may read nothing else)."""


def keystore_secret_name(secret_prefix: str, secret_id: str) -> str:
    """The secret name of a passwordSecret (a name, or an ARN whose name part is taken, without
    the ARN's 6-character suffix check), checked to be under ``<SecretPrefix>/keystores/``.

    Raises PasswordSecretOutsidePrefix otherwise (including names with ``..``)."""
    name = secret_id.split(":secret:", 1)[1] if secret_id.startswith("arn:") and ":secret:" in secret_id else secret_id
    prefix = f"{secret_prefix}/{KEYSTORE_SEGMENT}/"
    if not name.startswith(prefix) or len(name) == len(prefix) or ".." in name:
        raise PasswordSecretOutsidePrefix(
            f"passwordSecret {secret_id!r} is not under {prefix}: ExportCertificate reads keystore passwords "
            "only there")
    return secret_id


def staged_secret_prefix(secret_prefix: str) -> str:
    """``<SecretPrefix>/staged/``: every staged bundle's name starts with this (the node role's
    identity policy and the sweep use it)."""
    return f"{secret_prefix}/{STAGED_SEGMENT}/"


def staged_secret_name(secret_prefix: str, certificate_arn: str, rollout_id: str) -> str:
    """``<SecretPrefix>/staged/<certificate id>/<rollout id>`` for one rollout's bundle.

    ``certificate_arn``: ``arn:<partition>:acm:<region>:<account>:certificate/<id>``;
    ``rollout_id``: the execution name (1-80 characters of letters, digits, ``-`` and ``_``).
    Raises InvalidStagingName when a part is empty, has a character Secrets Manager refuses
    in a name, or the name exceeds 512 characters.
    """
    certificate_id = certificate_arn.rsplit("/", 1)[-1]
    for label, part in (("certificate id", certificate_id), ("rollout id", rollout_id)):
        if not part or "/" in part or not set(part) <= _NAME_CHARS:
            raise InvalidStagingName(f"{label} {part!r} cannot be part of a Secrets Manager secret name")
    name = f"{staged_secret_prefix(secret_prefix)}{certificate_id}/{rollout_id}"
    if len(name) > 512:
        raise InvalidStagingName(f"staged secret name is {len(name)} characters; Secrets Manager allows 512")
    return name


def node_source_arn(instance_id: str, *, partition: str, region: str, account: str) -> tuple[str, str]:
    """(condition key, ARN) that identifies requests from managed node ``instance_id``.

    ``i-...`` -> (``ec2:SourceInstanceARN``, the EC2 instance ARN);
    ``mi-...`` -> (``ssm:SourceInstanceARN``, the managed-instance ARN).
    Raises ValueError for any other id (the inventory model refuses those earlier).
    """
    if instance_id.startswith("i-"):
        return EC2_SOURCE_KEY, f"arn:{partition}:ec2:{region}:{account}:instance/{instance_id}"
    if instance_id.startswith("mi-"):
        return SSM_SOURCE_KEY, f"arn:{partition}:ssm:{region}:{account}:managed-instance/{instance_id}"
    raise ValueError(f"{instance_id!r} is not an SSM managed node id (i-... or mi-...)")


def staged_secret_policy(instance_ids: Iterable[str], *, partition: str, region: str,
                         account: str) -> dict[str, Any]:
    """The resource policy of one rollout's staged secret (a JSON-ready dict).

    One Deny statement: ``secretsmanager:GetSecretValue`` is denied to every principal unless
    the request comes from one of ``instance_ids`` (the managed nodes of the certificate's
    targets; duplicates ignored, order kept sorted so the policy is stable across retries).
    The node role's identity policy supplies the Allow. Raises ValueError for an id that is
    not ``i-``/``mi-``; StagingPolicyTooLarge when the policy exceeds POLICY_MAX_CHARS.
    """
    by_key: dict[str, set[str]] = {EC2_SOURCE_KEY: set(), SSM_SOURCE_KEY: set()}
    for instance_id in instance_ids:
        key, arn = node_source_arn(instance_id, partition=partition, region=region, account=account)
        by_key[key].add(arn)
    if not by_key[EC2_SOURCE_KEY] and not by_key[SSM_SOURCE_KEY]:
        by_key[EC2_SOURCE_KEY].add(f"arn:{partition}:ec2:{_NO_NODE_REGION}:{_NO_NODE_ACCOUNT}:{_NO_NODE_RESOURCE}")
    condition = {key: sorted(arns) for key, arns in by_key.items() if arns}
    policy = {
        "Version": "2012-10-17",
        "Statement": [{
            "Sid": "OnlyThisRolloutsTargetNodes",
            "Effect": "Deny",
            "Principal": "*",
            "Action": "secretsmanager:GetSecretValue",
            "Resource": "*",
            "Condition": {"ArnNotEquals": condition},
        }],
    }
    size = len(json.dumps(policy, separators=(",", ":")))
    if size > POLICY_MAX_CHARS:
        raise StagingPolicyTooLarge(
            f"the staged secret's resource policy names {sum(len(a) for a in condition.values())} nodes "
            f"({size} characters); Secrets Manager allows {POLICY_MAX_CHARS}: split the certificate's targets")
    return policy


def staged_rollout_id(secret_prefix: str, name: str) -> str | None:
    """The rollout id of a staged secret's name (``<SecretPrefix>/staged/<cert id>/<rollout id>``),
    or None when ``name`` is not such a name."""
    prefix = staged_secret_prefix(secret_prefix)
    if not name.startswith(prefix):
        return None
    parts = name[len(prefix):].split("/")
    return parts[1] if len(parts) == 2 and all(parts) else None
