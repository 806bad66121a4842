"""The install document on the local cloud as deployed from template.yaml: InstallTarget (the
real handler, its template environment) sends it with the InstallerLayer's download URL and
SHA-256, a local managed node downloads the layer zip the local cloud published, checks it
and runs the installer, which sees the per-subprocess timeout derived from the stack's
CommandTimeoutSeconds. An expired URL fails closed before anything on the node changes."""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import boto3
import pytest
from cryptography import x509
from rollout_core.adapters.leases import DynamoLeases
from rollout_core.domain.staging import staged_secret_name
from rollout_core.logic.commands import installer_result
from rollout_core.probe import format_serial_hex

from cert_rollout.localcloud.cloud import LocalCloud
from cert_rollout.localcloud.targets import LocalTargets

pytestmark = pytest.mark.timeout(300)
SNI = "web.internal.example"
PRINT_TIMEOUTS = ("import os; print('command-timeout=' + os.environ['ROLLOUT_COMMAND_TIMEOUT'] + "
                  "' execution-timeout=' + os.environ['ROLLOUT_EXECUTION_TIMEOUT'])")


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Any:
    with LocalCloud(parameters={"CommandTimeoutSeconds": "50"}, lambda_workers=1) as cloud:
        arn = cloud.private_ca().request_certificate(SNI, [], "EC_prime256v1")
        targets = LocalTargets(cloud, tmp_path_factory.mktemp("targets"))
        try:
            target = targets.add_embedded("web-1", arn, SNI)
            target.inventory_item["testCommand"] = [sys.executable, "-c", PRINT_TIMEOUTS]
            targets.allow_on_node(target)  # the node owner allows this test command too
            targets.register(target)
            cert, chain, key = cloud.private_ca().current(arn)
            secret = cloud.client("secretsmanager").create_secret(
                # a rollout's staged bundle: the node role reads only <SecretPrefix>/staged/* (issue 11)
                Name=staged_secret_name("cert-rollout", arn, "r-1"), SecretString=json.dumps(
                    {"certificate": cert, "chain": chain, "privateKey": key.decode()}))
            serial = format_serial_hex(x509.load_pem_x509_certificate(cert.encode()).serial_number)
            # InstallTarget sends nothing unless rollout r-1 holds the certificate's lease (logic/lease.py)
            dynamodb = boto3.resource("dynamodb", region_name=cloud.region, endpoint_url=cloud.endpoint,
                                      aws_access_key_id="localcloud", aws_secret_access_key="localcloud")
            DynamoLeases(cloud.deployment.physical["RolloutTable"], dynamodb=dynamodb).acquire(
                arn, "r-1", "arn:aws:states:eu-west-1:123456789012:execution:sm:r-1", serial,
                now=int(time.time()), duration_seconds=3600)
            yield cloud, {"action": "install", "targetId": "web-1", "certificateArn": arn, "rolloutId": "r-1",
                          "expectedSerial": serial, "secretArn": secret["ARN"],
                          "secretVersionId": secret["VersionId"]}
        finally:
            targets.stop()


def install(cloud: LocalCloud, request: dict[str, Any]) -> dict[str, Any]:
    """InstallTarget's real handler, then the node's finished invocation."""
    before = len(cloud.ssm_commands())
    payload, error = cloud.runtime.invoke(cloud.function_name("InstallTargetFunction"), json.dumps(request).encode())
    assert error is None, payload
    deadline = time.time() + 120
    while time.time() < deadline:
        commands = cloud.ssm_commands()
        if len(commands) > before:
            invocation = commands[-1]["Invocations"][0]
            if invocation.get("Status") in ("Success", "Failed", "TimedOut", "Cancelled"):
                return {"command": commands[-1], **invocation}
        time.sleep(0.2)
    raise AssertionError("the install command did not finish on the local node")


def test_node_downloads_the_layer_and_the_installer_sees_the_stacks_timeouts(stack: Any) -> None:
    cloud, request = stack
    layer_arn = cloud.deployment.function_by_logical_id("InstallTargetFunction").environment["INSTALLER_LAYER_ARN"]
    layer = cloud.client("lambda").get_layer_version_by_arn(Arn=layer_arn)["Content"]
    downloads = cloud.layer_downloads.downloads
    done = install(cloud, request)
    assert done["Status"] == "Success", done.get("StandardOutputContent", "") + done.get("StandardErrorContent", "")
    parameters = done["command"]["Parameters"]
    assert parameters["ExecutionTimeout"] == ["50"] and parameters["CommandTimeout"] == ["10"]
    assert parameters["InstallerSha256"] == [layer["CodeSha256"]]
    assert parameters["InstallerUrl"][0].startswith("http://127.0.0.1:")
    assert cloud.layer_downloads.downloads == downloads + 1
    result = installer_result(done["StandardOutputContent"])
    assert result and result["status"] == "ok"
    assert "command-timeout=10 execution-timeout=50" in result["serverOutput"]


def test_a_command_delivered_after_its_url_expired_fails_closed(stack: Any) -> None:
    cloud, request = stack
    # every URL expires at once: the one InstallTarget may reuse and any it asks for now
    cloud.layer_downloads.expire()
    cloud.layer_downloads.valid_seconds = 0
    try:
        done = install(cloud, request)
    finally:
        cloud.layer_downloads.valid_seconds = 600
    assert done["Status"] == "Failed" and done["ResponseCode"] == 14
    result = installer_result(done["StandardOutputContent"])
    assert result and (result["stage"], result["reason"]) == ("installer", "installer-unavailable")
    assert "HTTP 403" in result["error"]
