"""`cert-rollout nodes check`: the preflight of the managed nodes, before the first renewal.

It sends the install document (documents/install-bundle.ssm.yaml) with ``Action=check`` to each
node, once per inventory target on it (or once with no target, for a node that has none), with
the operator's own credentials (ssm:SendCommand, ssm:GetCommandInvocation,
ssm:DescribeInstanceInformation, lambda:GetLayerVersion on the InstallerLayer version,
sts:GetCallerIdentity; no function role is involved). The installer's check is read-only
(installer/install_bundle.py, section "check"): python, the node policy, the target's
directories, the state directory, openssl when a keystore needs it, the test command (present,
allowed and passing), the reload command (present), and the bundle fetch: a GetSecretValue of a
name under ``<SecretPrefix>/staged/`` that no rollout uses, whose ResourceNotFoundException
proves credentials, endpoint and the node role's policy; a rollout secret's own resource policy
and kms:Decrypt cannot be checked before a rollout exists.

Agent: DescribeInstanceInformation's PingStatus, and whether the node picked the command up within
``--timeout`` seconds (a command still Pending is cancelled and reported agent-offline).

Exit codes: 0 every node passed; 1 a node would fail (its row names the missing prerequisite);
2 usage or AWS errors.
"""

from __future__ import annotations

import base64
import json
import secrets
import time
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from cert_rollout.commands.common import (
    AsJson,
    EndpointUrl,
    InventoryTable,
    Region,
    StackOutputs,
    aws_error,
    emit_json,
    err_console,
    fail,
    out_console,
    progress_bar,
    resolve,
)
from cert_rollout.commands.targets import inventory, scan_inventory

nodes_app = typer.Typer(no_args_is_help=True, help="The targets' managed nodes: the preflight before a renewal.")

#: The document's SecretVersionId and ExpectedSerial must match their patterns; the check ignores both.
CHECK_VERSION_ID = "preflight"
CHECK_SERIAL = "00"
#: Where the probe secret's name lives: "<SecretPrefix>/staged/preflight/<32 hex>" (never staged).
PROBE_SEGMENT = "preflight"
TERMINAL = frozenset({"Success", "Failed", "TimedOut", "Cancelled", "Cancelling"})
#: The columns of the table: (header, the installer's checks shown in it).
COLUMNS = (("Python", ("python",)), ("Fetch", ("bundle-fetch",)),
           ("Files", ("node-policy", "files-writable", "state-dir", "openssl")),
           ("Test", ("test-command",)), ("Reload", ("reload-command",)))

DocumentName = Annotated[str | None, typer.Option(
    "--document", envvar="CERT_ROLLOUT_INSTALL_DOCUMENT",
    help="The install document (or InstallBundleDocumentName from --stack-outputs).")]
InstallerLayerArn = Annotated[str | None, typer.Option(
    "--installer-layer-arn", envvar="CERT_ROLLOUT_INSTALLER_LAYER_ARN",
    help="The InstallerLayer version ARN (or InstallerLayerArn from --stack-outputs).")]


def probe_secret_arn(partition: str, region: str, account: str, secret_prefix: str) -> str:
    """A secret ARN under ``<secret_prefix>/staged/`` that no rollout stages (a random 128-bit
    name below ``preflight/``): what the node's check asks GetSecretValue for. Raises
    rollout_core.domain.arns.InvalidArn for a bad partition, region or account."""
    from rollout_core.domain.arns import build_arn
    from rollout_core.domain.staging import STAGED_SEGMENT

    name = f"{secret_prefix.strip('/')}/{STAGED_SEGMENT}/{PROBE_SEGMENT}/{secrets.token_hex(16)}"
    return build_arn(partition, "secretsmanager", region, account, f"secret:{name}")


def check_parameters(secret_arn: str, target_config_b64: str, url: str, sha256: str,
                     command_timeout_seconds: int) -> dict[str, str]:
    """The install document's parameters for ``Action=check`` (name -> value; the shape of
    rollout_core.logic.commands.document_parameters, whose timeouts it follows)."""
    from rollout_core.domain.command_timeouts import subprocess_timeout_seconds

    return {"Action": "check", "SecretArn": secret_arn, "SecretVersionId": CHECK_VERSION_ID,
            "TargetConfig": target_config_b64, "ExpectedSerial": CHECK_SERIAL,
            "ExecutionTimeout": str(command_timeout_seconds),
            "CommandTimeout": str(subprocess_timeout_seconds(command_timeout_seconds)),
            "InstallerUrl": url, "InstallerSha256": sha256}


def _jobs(items: list[dict[str, Any]], instance_ids: list[str]) -> list[dict[str, Any]]:
    """One check per (node, target): each inventory item as the document's TargetConfig, and a
    target-less check for each of ``instance_ids`` that has no item."""
    from rollout_core.adapters.dynamo import plain
    from rollout_core.models import Target

    jobs: list[dict[str, Any]] = []
    for item in items:
        target = Target.model_validate(plain(item))
        jobs.append({"instanceId": target.instanceId, "targetId": target.targetId,
                     "certificateArn": target.certificateArn, "config": target.install_settings_b64()})
    covered = {j["instanceId"] for j in jobs}
    empty = base64.b64encode(json.dumps({"files": []}).encode()).decode()
    for iid in instance_ids:
        if iid not in covered:
            jobs.append({"instanceId": iid, "targetId": None, "certificateArn": None, "config": empty})
    return sorted(jobs, key=lambda j: (j["instanceId"], j["targetId"] or ""))


def agent_status(ssm: Any, instance_ids: list[str]) -> dict[str, dict[str, Any]]:
    """DescribeInstanceInformation of ``instance_ids`` (a filter holds at most 100 values: SSM API
    reference, InstanceInformationStringFilter; paged) -> {id: {ping, platform, agentVersion}};
    a node SSM does not know is absent. Raises botocore's ClientError / BotoCoreError."""
    found: dict[str, dict[str, Any]] = {}
    for start in range(0, len(instance_ids), 100):
        kwargs: dict[str, Any] = {"Filters": [{"Key": "InstanceIds", "Values": instance_ids[start:start + 100]}]}
        while True:
            page = ssm.describe_instance_information(**kwargs)
            for info in page.get("InstanceInformationList", []):
                found[str(info.get("InstanceId"))] = {
                    "ping": info.get("PingStatus"), "agentVersion": info.get("AgentVersion"),
                    "platform": " ".join(str(info.get(k)) for k in ("PlatformName", "PlatformVersion") if info.get(k))}
            if not page.get("NextToken"):
                break
            kwargs["NextToken"] = page["NextToken"]
    return found


def evaluate(job: dict[str, Any], agent: dict[str, Any] | None, invocation: dict[str, Any] | None) -> dict[str, Any]:
    """One row of the report: the job, the agent, the command's status and the installer's checks
    (its ROLLOUT_RESULT), ``ok`` and the named ``reasons`` the node would fail with."""
    from rollout_core.logic.commands import installer_result

    row: dict[str, Any] = {"instanceId": job["instanceId"], "targetId": job["targetId"],
                           "certificateArn": job["certificateArn"], "agent": agent, "commandId": job.get("commandId"),
                           "status": None, "checks": [], "python": None, "reasons": []}
    reasons: list[str] = row["reasons"]
    if agent is None:
        reasons.append("agent-not-registered")
    elif agent.get("ping") != "Online":
        reasons.append("agent-offline")
    if job.get("error"):
        reasons.append(job["error"])
    if invocation is not None:
        row["status"] = invocation.get("Status")
        result = installer_result(str(invocation.get("StandardOutputContent") or ""))
        if row["status"] in (None, "Pending", "Delayed", "Cancelled", "Cancelling") and result is None:
            if "agent-offline" not in reasons:
                reasons.append("agent-offline")
        elif result is None:
            reasons.append(f"no-result ({row['status']})")
        else:
            row["checks"] = result.get("checks") or []
            row["python"] = result.get("python")
            if not row["checks"]:  # the bootstrap's own failure (python-missing, installer-unavailable, ...)
                reason = str(result.get("reason") or "check-failed")
                row["checks"] = [{"check": "python" if reason.startswith("python-") else "installer", "ok": False,
                                  "reason": reason, "detail": result.get("error")}]
            reasons.extend(str(c.get("reason")) for c in row["checks"] if not c.get("ok"))
    row["ok"] = not reasons
    return row


def _wait(ssm: Any, jobs: list[dict[str, Any]], deadline: float) -> dict[int, dict[str, Any]]:
    """GetCommandInvocation of every sent job until each is terminal or ``deadline`` (monotonic)
    passes; a command not picked up by then is cancelled. -> {job index: last invocation}."""
    from botocore.exceptions import ClientError

    last: dict[int, dict[str, Any]] = {}
    pending = {i for i, j in enumerate(jobs) if j.get("commandId")}
    while pending and time.monotonic() < deadline:
        for i in sorted(pending):
            try:
                inv = ssm.get_command_invocation(CommandId=jobs[i]["commandId"], InstanceId=jobs[i]["instanceId"])
            except ClientError as e:
                if e.response.get("Error", {}).get("Code") == "InvocationDoesNotExist":
                    continue  # not registered yet (eventual consistency)
                raise
            last[i] = inv
            if inv.get("Status") in TERMINAL:
                pending.discard(i)
        if pending:
            time.sleep(0.5)
    for i in pending:  # never picked up, or still running: cancelled, and reported as it was
        try:
            ssm.cancel_command(CommandId=jobs[i]["commandId"], InstanceIds=[jobs[i]["instanceId"]])
        except ClientError:
            pass
    return last


def _cell(row: dict[str, Any], names: tuple[str, ...]) -> str:
    checks = [c for c in row["checks"] if c.get("check") in names]
    if not checks:
        return "-"
    failed = [str(c.get("reason")) for c in checks if not c.get("ok")]
    if failed:
        return "[red]" + escape(", ".join(failed)) + "[/]"
    if names == ("python",):
        return escape(str(row.get("python") or "ok"))
    return "[green]ok[/]"


def _print(rows: list[dict[str, Any]]) -> None:
    table = Table(title=f"Node preflight ({len(rows)} node/target checks)", title_justify="left")
    for col in ("Node", "Target", "Agent", *(c for c, _ in COLUMNS), "Result"):
        table.add_column(col, overflow="fold")
    for r in rows:
        agent = r["agent"] or {}
        ping = agent.get("ping") or "not registered"
        table.add_row(r["instanceId"], r["targetId"] or "(no target)",
                      ("[green]" if ping == "Online" else "[red]") + escape(ping) + "[/]",
                      *(_cell(r, names) for _, names in COLUMNS),
                      "[green]pass[/]" if r["ok"] else "[red]FAIL[/] " + escape(", ".join(r["reasons"])))
    out_console().print(table)


@nodes_app.command("check")
def nodes_check(
    certificate: str | None = typer.Option(None, "--certificate", help="Check the nodes of this certificate's targets."),
    instance_ids: list[str] | None = typer.Option(None, "--instance-id", help="Check this node (repeatable); "
                                                  "each of its inventory targets, or the node alone."),
    inventory_table_name: InventoryTable = None,
    document: DocumentName = None,
    installer_layer_arn: InstallerLayerArn = None,
    secret_prefix: str = typer.Option("cert-rollout", "--secret-prefix", envvar="CERT_ROLLOUT_SECRET_PREFIX",
                                      help="The stack's SecretPrefix parameter."),
    command_timeout: int = typer.Option(120, "--command-timeout", min=5, max=3600,
                                        help="The check's ExecutionTimeout on the node, seconds."),
    timeout: float = typer.Option(180.0, "--timeout", min=1, help="Seconds to wait for every node's answer."),
    stack_outputs: StackOutputs = None,
    region: Region = None,
    endpoint_url: EndpointUrl = None,
    as_json: AsJson = False,
) -> None:
    """Preflight every node of a certificate's targets (or the nodes given): agent online, python,
    bundle fetch possible, the target's files writable under the node policy, its test command
    present and passing, its reload command present. Read-only on the nodes. Exit 1 when a node
    would fail, naming the missing prerequisite."""
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError
    from rollout_core.adapters.errors import AwsError
    from rollout_core.adapters.installer_source import InstallerUnavailable, installer_package
    from rollout_core.domain.arns import partition_for_region

    if bool(certificate) == bool(instance_ids):
        fail("give --certificate ARN or --instance-id ID (repeatable), not both", 2, as_json)
    ids = sorted(set(instance_ids or []))
    table = resolve(inventory_table_name, stack_outputs, "InventoryTableName", "--inventory-table", as_json)
    doc = resolve(document, stack_outputs, "InstallBundleDocumentName", "--document", as_json)
    layer = resolve(installer_layer_arn, stack_outputs, "InstallerLayerArn", "--installer-layer-arn", as_json)
    session = boto3.session.Session(region_name=region)
    ssm = session.client("ssm", endpoint_url=endpoint_url)
    try:
        items = scan_inventory(inventory(table, session.region_name, endpoint_url), certificate)
        if ids:
            items = [i for i in items if i.get("instanceId") in ids]
        jobs = _jobs(items, ids)
        if not jobs:
            fail(f"the inventory has no target of {certificate}", 2, as_json)
        nodes = sorted({j["instanceId"] for j in jobs})
        agents = agent_status(ssm, nodes)
        package = installer_package(layer, lambda_client=session.client("lambda", endpoint_url=endpoint_url))
        account = session.client("sts", endpoint_url=endpoint_url).get_caller_identity()["Account"]
        region_name = str(ssm.meta.region_name)
        for job in jobs:
            probe = probe_secret_arn(partition_for_region(region_name), region_name, account, secret_prefix)
            params = check_parameters(probe, job["config"], package.url, package.sha256, command_timeout)
            try:
                sent = ssm.send_command(DocumentName=doc, InstanceIds=[job["instanceId"]],
                                        Parameters={k: [v] for k, v in params.items()},
                                        TimeoutSeconds=max(30, int(timeout)),
                                        Comment=f"cert-rollout nodes check {job['targetId'] or ''}"[:100])
                job["commandId"] = sent["Command"]["CommandId"]
            except ClientError as e:
                if e.response.get("Error", {}).get("Code") not in ("InvalidInstanceId", "UnsupportedPlatformType"):
                    raise
                job["error"] = "agent-not-registered"
        with progress_bar(err_console()) as progress:
            progress.add_task(f"checking {len(nodes)} node(s)", total=None)
            invocations = _wait(ssm, jobs, time.monotonic() + timeout)
    except (AwsError, ClientError, BotoCoreError, InstallerUnavailable, ValueError) as e:
        fail(aws_error(e), 2, as_json)
    rows = [evaluate(job, agents.get(job["instanceId"]), invocations.get(i)) for i, job in enumerate(jobs)]
    ok = all(r["ok"] for r in rows)
    if as_json:
        emit_json({"ok": ok, "nodes": rows})
    else:
        _print(rows)
    raise typer.Exit(0 if ok else 1)


def register(app: typer.Typer) -> None:
    """Add the ``nodes`` group to the cert-rollout app."""
    app.add_typer(nodes_app, name="nodes")
