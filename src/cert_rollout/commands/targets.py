"""`cert-rollout targets add|list|remove|import`: the inventory (which targets serve which
certificate), read and written in its DynamoDB table.

Every target is validated as rollout_core.models.Target (completed with its server kind's
defaults, rollout_core.target_defaults) before anything is written; an invalid one is refused
with exit 2 naming the field.
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table
from rollout_core.domain.managed import DEFAULT_MANAGED_TAG

from cert_rollout.commands.common import (
    AsJson,
    EndpointUrl,
    InventoryTable,
    Region,
    StackOutputs,
    aws_error,
    canonical,
    emit_json,
    fail,
    name_source,
    out_console,
    resolve,
)

targets_app = typer.Typer(no_args_is_help=True, help="The inventory: which targets serve which certificate.")

ManagedTag = Annotated[str, typer.Option(
    "--managed-tag", envvar="CERT_ROLLOUT_MANAGED_TAG",
    help="The stack's ManagedCertificateTag: certificates must be tagged acm-cert-rollout=<this>.")]


def _validation_message(e: Any) -> str:
    parts = []
    for item in e.errors():
        loc = ".".join(str(x) for x in item.get("loc", ())) or "target"
        parts.append(f"{loc}: {item.get('msg')}")
    return "; ".join(parts)


def _parse_file_spec(spec: str) -> dict[str, str]:
    parts = spec.split(":")
    if len(parts) >= 3 and re.fullmatch(r"0?[0-7]{3}", parts[-1]):
        return {"path": ":".join(parts[:-2]), "content": parts[-2], "mode": parts[-1]}
    if len(parts) >= 2:
        return {"path": ":".join(parts[:-1]), "content": parts[-1]}
    raise ValueError(f"--file {spec!r} is not PATH:CONTENT[:MODE]")


def _validate_target(data: dict[str, Any], where: str = "") -> Any:
    """Complete a short entry with its server kind's defaults (files, test and reload
    commands; rollout_core.target_defaults), then validate it as a Target."""
    from pydantic import ValidationError
    from rollout_core.models import Target
    from rollout_core.target_defaults import TargetDefaultsError, complete_target

    from cert_rollout.validation import key_problem

    # Keys first: a typo ("targetid") is named as such, not as the defaults' complaint about
    # the value it left out.
    problem = key_problem(Target, data, required=("certificateArn", "targetId"))
    if problem:
        raise ValueError(f"{where}{problem}")
    try:
        return Target.model_validate(complete_target(data))
    except TargetDefaultsError as e:
        raise ValueError(f"{where}{e}") from None
    except ValidationError as e:
        raise ValueError(f"{where}{_validation_message(e)}") from None


def target_row(t: dict[str, Any]) -> dict[str, Any]:
    """One inventory item as the list / status views show it (endpoint as HOST:PORT, serial in
    colon hex)."""
    host = t.get("host", "")
    endpoint = f"[{host}]:{t.get('port')}" if ":" in str(host) else f"{host}:{t.get('port')}"
    return {"certificateArn": t.get("certificateArn"), "targetId": t.get("targetId"), "endpoint": endpoint,
            "sni": t.get("sni"), "server": t.get("server"), "instanceId": t.get("instanceId"),
            "lastDeployedSerial": canonical(t.get("lastDeployedSerial")), "lastDeployedAt": t.get("lastDeployedAt"),
            "lastOutcome": t.get("lastOutcome")}


# --------------------------------------------------------------------------- DynamoDB


def inventory_name(value: str | None, stack_outputs: Path | None, as_json: bool) -> tuple[str, str]:
    """(the inventory table's name, how a message names it: "inventory table 'x' (from
    --inventory-table)" or its environment variable or stack outputs file). Fails (exit 2) when
    neither --inventory-table nor --stack-outputs gives it."""
    name = resolve(value, stack_outputs, "InventoryTableName", "--inventory-table", as_json)
    return name, f"inventory table {name!r} ({name_source('--inventory-table', 'InventoryTableName', stack_outputs)})"

# The inventory port of the layer (rollout_core.adapters.dynamo.DynamoInventory): the same
# reads and writes the Lambdas use, so the CLI and the rollout agree on the item's shape.


def inventory(name: str, region: str | None, endpoint_url: str | None) -> Any:
    """The inventory table ``name`` as the layer's DynamoInventory (boto3 resource in ``region``,
    at ``endpoint_url`` when given, e.g. the local cloud)."""
    import boto3
    from rollout_core.adapters.dynamo import DynamoInventory

    return DynamoInventory(name, dynamodb=boto3.resource("dynamodb", region_name=region, endpoint_url=endpoint_url))


def scan_inventory(inv: Any, certificate_arn: str | None = None) -> list[dict[str, Any]]:
    """Every item (a paged Query on ``certificate_arn`` when given, else a paged Scan) as plain
    values, sorted by (certificate ARN, target id). Raises rollout_core.adapters.errors.AwsError."""
    if certificate_arn:
        items = list(inv.items_for(certificate_arn))
    else:
        items = [item for page in inv.scan_pages() for item in page]
    return sorted(items, key=lambda i: (i.get("certificateArn", ""), i.get("targetId", "")))


def unmanaged_certificates(certificate_arns: list[str], managed_tag: str, region: str | None,
                           endpoint_url: str | None) -> list[tuple[str, str]]:
    """(certificate ARN, why) for each of ``certificate_arns`` that the deployment whose
    ManagedCertificateTag is ``managed_tag`` does not manage (rollout_core.domain.managed:
    ValidateEvent rejects its rollouts with CertificateNotManaged, IAM denies its export). A
    certificate ACM does not have, or whose tags cannot be read, is listed with that reason."""
    import boto3
    from botocore.exceptions import BotoCoreError
    from rollout_core.adapters.acm import AcmCertificates, CertificateNotFound
    from rollout_core.adapters.errors import AwsError
    from rollout_core.domain.managed import unmanaged_reason

    acm = AcmCertificates(boto3.client("acm", region_name=region, endpoint_url=endpoint_url))
    found: list[tuple[str, str]] = []
    for arn in sorted(set(certificate_arns)):
        try:
            why = unmanaged_reason(acm.tags(arn), managed_tag)
        except CertificateNotFound:
            why = "ACM has no such certificate"
        except (AwsError, BotoCoreError) as e:
            why = f"its tags could not be read ({type(e).__name__}: {e})"
        if why is not None:
            found.append((arn, why))
    return found


def warn_unmanaged(certificate_arns: list[str], managed_tag: str, region: str | None,
                   endpoint_url: str | None) -> None:
    """One warning line on stderr per certificate of the inventory this deployment does not manage."""
    from rich.markup import escape
    from rollout_core.domain.managed import MANAGED_TAG_KEY

    from cert_rollout.commands.common import err_console

    for arn, why in unmanaged_certificates(certificate_arns, managed_tag, region, endpoint_url):
        err_console().print(f"[yellow]warning:[/] {escape(arn)} is not managed by this deployment: {escape(why)}; "
                            f"its rollouts are rejected (CertificateNotManaged) until it is tagged "
                            f"{MANAGED_TAG_KEY}={escape(managed_tag)}", highlight=False, soft_wrap=True)


# --------------------------------------------------------------------------- commands


@targets_app.command("add")
def targets_add(
    certificate_arn: str = typer.Option(..., "--certificate-arn", help="ACM certificate the target serves (its ARN)."),
    target_id: str = typer.Option(..., "--id", help="Target id (unique per certificate)."),
    host: str = typer.Option(..., "--host", help="DNS name or IP address to connect to."),
    port: int = typer.Option(443, "--port", help="TCP port the target serves TLS on, 1-65535."),
    sni: str | None = typer.Option(None, "--sni", help="SNI name (default: HOST; an IP --host without --sni sends none and must be an IP SAN)."),
    server: str = typer.Option("generic", "--server", help="Server kind: nginx, apache, haproxy, java or generic; embedded (the local cloud's own test server) on the local cloud only."),
    instance_id: str = typer.Option(..., "--instance-id", help="SSM managed node id (i-... or mi-...)."),
    files: list[str] | None = typer.Option(None, "--file", help="PATH:CONTENT[:MODE], CONTENT one of "
                                              "fullchain|leaf|chain|key|combined|pkcs12 (repeatable)."),
    test_command: str | None = typer.Option(None, "--test-command", help="Config test command (shell-split)."),
    reload_command: str | None = typer.Option(None, "--reload-command", help="Reload command (shell-split)."),
    inventory_table_name: InventoryTable = None,
    stack_outputs: StackOutputs = None,
    region: Region = None,
    endpoint_url: EndpointUrl = None,
    as_json: AsJson = False,
) -> None:
    """Add (or replace) a target of a certificate. Refused (exit 2, naming the field) when
    invalid: a bad port, an unknown server kind, an IP address as --sni, ..."""
    from botocore.exceptions import BotoCoreError
    from rollout_core.adapters.errors import AwsError

    try:
        data: dict[str, Any] = {
            "certificateArn": certificate_arn, "targetId": target_id, "host": host, "port": port, "sni": sni,
            "server": server, "instanceId": instance_id, "files": [_parse_file_spec(f) for f in files or []],
            "testCommand": shlex.split(test_command) if test_command is not None else None,
            "reloadCommand": shlex.split(reload_command) if reload_command is not None else None,
        }
        target = _validate_target(data)
    except ValueError as e:
        fail(f"invalid target: {e}", 2, as_json)
    name, table = inventory_name(inventory_table_name, stack_outputs, as_json)
    try:
        inventory(name, region, endpoint_url).put(target)
    except (AwsError, BotoCoreError) as e:
        fail(aws_error(e, table), 2, as_json)
    if as_json:
        emit_json({"added": target.model_dump(exclude_none=True)})
    else:
        out_console().print(f"Added target [bold]{target.targetId}[/] ({target.endpoint}, SNI {target.sni or 'none'}) "
                            f"of {certificate_arn}", highlight=False)


@targets_app.command("list")
def targets_list(
    certificate_arn: str | None = typer.Option(None, "--certificate-arn", help="Only this certificate's targets."),
    inventory_table_name: InventoryTable = None,
    stack_outputs: StackOutputs = None,
    region: Region = None,
    endpoint_url: EndpointUrl = None,
    managed_tag: ManagedTag = DEFAULT_MANAGED_TAG,
    as_json: AsJson = False,
) -> None:
    """The inventory as a table: target, endpoint, SNI, server, node, last deployed serial/at.
    Warns (stderr) about each certificate not tagged acm-cert-rollout=<--managed-tag>."""
    from botocore.exceptions import BotoCoreError
    from rollout_core.adapters.errors import AwsError

    name, table = inventory_name(inventory_table_name, stack_outputs, as_json)
    try:
        items = scan_inventory(inventory(name, region, endpoint_url), certificate_arn)
    except (AwsError, BotoCoreError) as e:
        fail(aws_error(e, table), 2, as_json)
    rows = [target_row(i) for i in items]
    warn_unmanaged([str(r["certificateArn"]) for r in rows], managed_tag, region, endpoint_url)
    if as_json:
        emit_json(rows)
        return
    t = Table(title=f"Inventory {name} ({len(rows)} targets)", title_justify="left")
    for col in ("Certificate", "Target", "Endpoint", "SNI", "Server", "Node", "Last deployed serial", "At", "Outcome"):
        t.add_column(col, overflow="fold")
    for r in rows:
        t.add_row(str(r["certificateArn"]).rsplit("/", 1)[-1], r["targetId"], r["endpoint"], r["sni"] or "",
                  r["server"] or "", r["instanceId"] or "", r["lastDeployedSerial"] or "-", r["lastDeployedAt"] or "-",
                  r["lastOutcome"] or "-")
    out_console().print(t)


@targets_app.command("remove")
def targets_remove(
    certificate_arn: str = typer.Option(..., "--certificate-arn", help="ACM certificate the target serves (its ARN)."),
    target_id: str = typer.Option(..., "--id", help="Id of the target to remove."),
    inventory_table_name: InventoryTable = None,
    stack_outputs: StackOutputs = None,
    region: Region = None,
    endpoint_url: EndpointUrl = None,
    as_json: AsJson = False,
) -> None:
    """Remove a target from the inventory. Exit 1 if it was not there."""
    from botocore.exceptions import BotoCoreError
    from rollout_core.adapters.errors import AwsError

    name, table = inventory_name(inventory_table_name, stack_outputs, as_json)
    try:
        existed = inventory(name, region, endpoint_url).delete(certificate_arn, target_id)
    except (AwsError, BotoCoreError) as e:
        fail(aws_error(e, table), 2, as_json)
    if as_json:
        emit_json({"removed": existed, "certificateArn": certificate_arn, "targetId": target_id})
    else:
        out_console().print(f"Removed target {target_id}" if existed
                            else f"[yellow]No target {target_id} of that certificate[/]", highlight=False)
    raise typer.Exit(0 if existed else 1)


@targets_app.command("import")
def targets_import(
    file: Path = typer.Argument(..., exists=True, dir_okay=False, help="YAML or JSON list of targets."),
    inventory_table_name: InventoryTable = None,
    stack_outputs: StackOutputs = None,
    region: Region = None,
    endpoint_url: EndpointUrl = None,
    as_json: AsJson = False,
) -> None:
    """Import targets (the Target shape: certificateArn, targetId, host, port, sni, server,
    instanceId, files, testCommand, reloadCommand). Every one is validated before any is
    written: one invalid target refuses the whole file (exit 2)."""
    import yaml
    from botocore.exceptions import BotoCoreError
    from rollout_core.adapters.errors import AwsError

    try:
        text = file.read_text()
        data = json.loads(text) if file.suffix.lower() == ".json" else yaml.safe_load(text)
    except (OSError, ValueError, yaml.YAMLError) as e:
        fail(f"{file}: cannot parse: {e}", 2, as_json)
    if isinstance(data, dict) and isinstance(data.get("targets"), list):
        data = data["targets"]
    if not isinstance(data, list):
        fail(f"{file}: expected a list of targets", 2, as_json)
    targets, problems = [], []
    for i, item in enumerate(data):
        if not isinstance(item, dict):
            problems.append(f"item {i}: not a mapping")
            continue
        try:
            targets.append(_validate_target(item, f"item {i} ({item.get('targetId', '?')}): "))
        except ValueError as e:
            problems.append(str(e))
    keys = [(t.certificateArn, t.targetId) for t in targets]
    dupes = sorted({k[1] for k in keys if keys.count(k) > 1})
    if dupes:
        problems.append(f"duplicate target ids for one certificate: {', '.join(dupes)}")
    if problems:
        fail("nothing imported: " + " | ".join(problems), 2, as_json, problems=problems)
    name, table = inventory_name(inventory_table_name, stack_outputs, as_json)
    try:
        inventory(name, region, endpoint_url).put_many(targets)
    except (AwsError, BotoCoreError) as e:
        fail(aws_error(e, table), 2, as_json)
    if as_json:
        emit_json({"imported": [t.targetId for t in targets]})
    else:
        out_console().print(f"Imported {len(targets)} target(s) into {name}", highlight=False)


def register(app: typer.Typer) -> None:
    """Add the ``targets`` group to the cert-rollout app."""
    app.add_typer(targets_app, name="targets")
