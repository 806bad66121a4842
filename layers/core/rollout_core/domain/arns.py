"""ARNs in the deployment's partition (issue 11, item 7).

Every ARN the code builds goes through :func:`build_arn` with a partition taken from what the
code already has: the region it runs in (:func:`partition_for_region`) or an ARN it was given
(:func:`partition_of`). No ARN is written with a fixed ``aws`` partition: a deployment in
China (``aws-cn``) or GovCloud (``aws-us-gov``) names its resources ``arn:aws-cn:...`` /
``arn:aws-us-gov:...`` (tests/unit/test_partitions.py fails on a literal ``aws`` partition in
the template, the state machine or the code).

Which regions belong to which partition: botocore's ``data/endpoints.json``, each partition's
``regionRegex`` (``^cn\\-\\w+\\-\\d+$`` -> aws-cn, ``^us\\-gov\\-\\w+\\-\\d+$`` -> aws-us-gov,
``^us\\-iso\\-...`` -> aws-iso, ``^us\\-isob\\-...`` -> aws-iso-b, ``^eu\\-isoe\\-...`` ->
aws-iso-e, ``^us\\-isof\\-...`` -> aws-iso-f, ``^eusc\\-...`` -> aws-eusc); every other
region is in ``aws`` (botocore's default partition too).
"""

from __future__ import annotations

import re

from .errors import RolloutError

__all__ = ["InvalidArn", "build_arn", "partition_for_region", "partition_of"]

# (region name prefix, partition), from botocore data/endpoints.json regionRegex (module docstring).
_REGION_PREFIXES = (
    ("cn-", "aws-cn"),
    ("us-gov-", "aws-us-gov"),
    ("us-iso-", "aws-iso"),
    ("us-isob-", "aws-iso-b"),
    ("eu-isoe-", "aws-iso-e"),
    ("us-isof-", "aws-iso-f"),
    ("eusc-", "aws-eusc"),
)
DEFAULT_PARTITION = "aws"
_PARTITION = re.compile(r"\Aaws(-[a-z]+)*\Z")
_SERVICE = re.compile(r"\A[a-z0-9-]+\Z")
_REGION = re.compile(r"\A([a-z]{2,5}(-[a-z]+)+-[0-9]+)?\Z")
_ACCOUNT = re.compile(r"\A([0-9]{12}|aws)?\Z")


class InvalidArn(RolloutError):
    """An ARN cannot be built from these parts, or a string is not an ARN."""


def partition_for_region(region: str) -> str:
    """The partition of ``region`` (e.g. ``eu-west-1`` -> ``aws``, ``cn-north-1`` -> ``aws-cn``,
    ``us-gov-west-1`` -> ``aws-us-gov``); the table is botocore's (module docstring). Raises
    InvalidArn when ``region`` is not a region name."""
    if not region or not _REGION.match(region):
        raise InvalidArn(f"{region!r} is not an AWS region name")
    for prefix, partition in _REGION_PREFIXES:
        if region.startswith(prefix):
            return partition
    return DEFAULT_PARTITION


def partition_of(arn: str) -> str:
    """The partition field of ``arn`` (``arn:<partition>:...``). Raises InvalidArn when ``arn``
    does not start ``arn:aws...:``."""
    parts = arn.split(":", 2)
    if len(parts) < 3 or parts[0] != "arn" or not _PARTITION.match(parts[1]):
        raise InvalidArn(f"{arn!r} is not an ARN (arn:PARTITION:SERVICE:REGION:ACCOUNT:RESOURCE)")
    return parts[1]


def build_arn(partition: str, service: str, region: str, account: str, resource: str) -> str:
    """``arn:<partition>:<service>:<region>:<account>:<resource>``.

    ``region`` and ``account`` may be empty (global resources, e.g. ``arn:aws:states:::lambda:invoke``
    or an ACM PCA template ARN); ``account`` may also be ``aws`` (AWS-owned resources). Raises
    InvalidArn for a malformed partition, service, region or account, or an empty resource.
    """
    if not _PARTITION.match(partition):
        raise InvalidArn(f"{partition!r} is not an AWS partition (aws, aws-cn, aws-us-gov, ...)")
    if not _SERVICE.match(service):
        raise InvalidArn(f"{service!r} is not an AWS service prefix")
    if not _REGION.match(region):
        raise InvalidArn(f"{region!r} is not an AWS region name")
    if not _ACCOUNT.match(account):
        raise InvalidArn(f"{account!r} is not a 12-digit account id")
    if not resource:
        raise InvalidArn("an ARN needs a resource")
    return f"arn:{partition}:{service}:{region}:{account}:{resource}"
