"""Where a managed node gets the installer: the InstallerLayer version's zip (template.yaml).

The install document (documents/install-bundle.ssm.yaml) does not carry the installer; it
downloads installer/install_bundle.py from the URL InstallTarget passes and checks it
against the SHA-256 passed beside it. Both come from Lambda's GetLayerVersionByArn
(Lambda API reference, "GetLayerVersionByArn": ``Content.Location`` is a presigned S3 URL
valid for 10 minutes, ``Content.CodeSha256`` the base64 SHA-256 of the zip). IAM:
lambda:GetLayerVersion on the layer version ARN.

A URL is reused for at most REUSE_SECONDS within one warm Lambda environment, so a
rollout of many targets asks Lambda about once a minute, and a command still has at least
9 minutes to be delivered before its URL expires (then the node fails closed, exit 14
installer-unavailable).
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from rollout_core.adapters.aws import client
from rollout_core.adapters.errors import named_aws_error
from rollout_core.ports import InstallerPackage

#: Seconds a presigned URL from GetLayerVersionByArn is valid (Lambda API reference).
URL_VALID_SECONDS = 600
#: Seconds one URL is handed to further commands of the same warm environment.
REUSE_SECONDS = 60
#: The document's allowedPatterns for InstallerUrl and InstallerSha256 (install-bundle.ssm.yaml).
URL_PATTERN = r"^https?://[A-Za-z0-9._~:/?&=%+-]{1,4000}$"
SHA256_PATTERN = r"^[A-Za-z0-9+/]{43}=$"
LAYER_VERSION_ARN = re.compile(r"^arn:aws[a-z-]*:lambda:[a-z0-9-]+:[0-9]{12}:layer:[A-Za-z0-9_-]+:[0-9]+$")

#: The bootstrap's named failures (exit code -> reason), before the installer runs on the node.
BOOTSTRAP_FAILURES = {14: "installer-unavailable", 15: "installer-checksum-mismatch"}


class InstallerUnavailable(Exception):
    """GetLayerVersionByArn answered without a usable download URL or SHA-256 (names which)."""


_cache: dict[str, tuple[float, InstallerPackage]] = {}
_cache_lock = threading.Lock()


def installer_package(layer_version_arn: str, *, lambda_client: Any | None = None,
                      clock: Callable[[], float] = time.time) -> InstallerPackage:
    """The download URL and SHA-256 of the installer layer version ``layer_version_arn``.

    Reuses an answer younger than REUSE_SECONDS (per process). Raises ValueError for an ARN
    that is not a layer version ARN, InstallerUnavailable when Lambda's answer has no usable
    Content.Location / Content.CodeSha256, or a named AwsError (AwsThrottled, ...; the state
    machine retries the transient ones).
    """
    if not LAYER_VERSION_ARN.match(layer_version_arn):
        raise ValueError(f"not a Lambda layer version ARN: {layer_version_arn!r}")
    now = clock()
    with _cache_lock:
        cached = _cache.get(layer_version_arn)
        if cached and now - cached[0] < REUSE_SECONDS:
            return cached[1]
    lam = lambda_client or client("lambda")
    try:
        answer = lam.get_layer_version_by_arn(Arn=layer_version_arn)
    except (ClientError, BotoCoreError) as e:
        raise named_aws_error(e, "GetLayerVersionByArn") from None
    content = answer.get("Content") or {}
    url, sha256 = str(content.get("Location") or ""), str(content.get("CodeSha256") or "")
    if not re.match(URL_PATTERN, url):
        raise InstallerUnavailable(f"{layer_version_arn}: Content.Location is not an http(s) URL the "
                                   "document accepts")
    if not re.match(SHA256_PATTERN, sha256):
        raise InstallerUnavailable(f"{layer_version_arn}: Content.CodeSha256 is not a base64 SHA-256")
    package = InstallerPackage(layer_version_arn=layer_version_arn, url=url, sha256=sha256,
                               expires_at=now + URL_VALID_SECONDS)
    with _cache_lock:
        _cache[layer_version_arn] = (now, package)
    return package


def forget_cached() -> None:
    """Drop every reused answer (tests; a new layer version has a new ARN anyway)."""
    with _cache_lock:
        _cache.clear()


class LayerInstallerSource:
    """ports.InstallerSource on Lambda's GetLayerVersionByArn (one boto3 client, default the
    cached process-wide one; answers reused per installer_package)."""

    def __init__(self, lambda_client: Any | None = None) -> None:
        self._lambda = lambda_client

    def package(self, layer_version_arn: str) -> InstallerPackage:
        """installer_package() of ``layer_version_arn`` (see there for the errors)."""
        return installer_package(layer_version_arn, lambda_client=self._lambda)
