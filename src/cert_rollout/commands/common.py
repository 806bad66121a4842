"""What the commands share: the option definitions, console output, errors, AWS clients.

Every operator command takes ``--json`` (machine-readable output on stdout) and the AWS ones take
``--region`` / ``--endpoint-url`` (boto3's usual credentials and region otherwise), and
``--stack-outputs FILE`` (JSON of the stack's outputs) or the explicit resource name. Each option
is defined once here as an ``Annotated`` alias; a command declares ``region: Region = None``.

Exit codes: 0 ok; 1 the thing checked is not as expected (function error, serial mismatch,
execution not SUCCEEDED, drift); 2 usage / validation / unreachable / AWS errors, or a local-cloud
command run without the ``[local]`` extra installed.

Nothing here imports the local cloud (cert_rollout.localcloud): the operator commands work with
the package's base dependencies only (pyproject.toml ``[project] dependencies``).
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Literal, NoReturn

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

# --------------------------------------------------------------------------- options

Region = Annotated[str | None, typer.Option("--region", help="AWS region (default: boto3's usual lookup).")]
EndpointUrl = Annotated[str | None, typer.Option("--endpoint-url", help="AWS endpoint (e.g. the local cloud's).")]
AsJson = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]
StackOutputs = Annotated[Path | None, typer.Option(
    "--stack-outputs", exists=True, dir_okay=False, envvar="CERT_ROLLOUT_STACK_OUTPUTS",
    help="JSON file of the stack outputs (sam list stack-outputs --output json; `local up` writes one).")]
InventoryTable = Annotated[str | None, typer.Option(
    "--inventory-table", envvar="CERT_ROLLOUT_INVENTORY_TABLE",
    help="Inventory DynamoDB table (or InventoryTableName from --stack-outputs).")]
StateMachineArn = Annotated[str | None, typer.Option(
    "--state-machine-arn", envvar="CERT_ROLLOUT_STATE_MACHINE_ARN",
    help="Rollout state machine (or RolloutStateMachineArn from --stack-outputs).")]
ReportPath = Annotated[Path | None, typer.Option("--report", help="Write the JSON report here.")]

# --------------------------------------------------------------------------- output


def out_console() -> Console:
    """Console on stdout: the terminal's width (or $COLUMNS), else 160 columns when not a
    terminal (stable for logs and tests)."""
    # emoji=False: serials and ids such as "a:b:c" must never render as ":b:" emoji.
    fixed = None if sys.stdout.isatty() or os.environ.get("COLUMNS", "").isdigit() else 160  # rich reads COLUMNS
    return Console(width=fixed, soft_wrap=False, emoji=False)


def err_console() -> Console:
    """Console on stderr, for progress and errors."""
    return Console(stderr=True, width=None if sys.stderr.isatty() else 160, emoji=False)


def emit_json(data: Any) -> None:
    """Print ``data`` as indented JSON on stdout (datetimes and other values as ``str``)."""
    typer.echo(json.dumps(data, indent=2, default=str))


def fail(message: str, code: int = 2, as_json: bool = False, **extra: Any) -> NoReturn:
    """End the command with exit ``code``: ``{"error": message, **extra}`` on stdout with
    ``--json``, else ``error: message`` on stderr. Raises typer.Exit."""
    if as_json:
        emit_json({"error": message, **extra})
    else:
        err_console().print(f"[red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)  # one line
    raise typer.Exit(code)


def progress_bar(console: Console) -> Progress:
    """A transient spinner + elapsed time on ``console`` (stderr), for bounded waits."""
    return Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(),
                    console=console, transient=True)


# --------------------------------------------------------------------------- AWS


def aws_client(service: Literal["acm", "stepfunctions"], region: str | None, endpoint_url: str | None) -> Any:
    """A boto3 client with standard retries (3 attempts)."""
    import boto3
    from botocore.config import Config

    return boto3.client(service, region_name=region, endpoint_url=endpoint_url,
                        config=Config(retries={"max_attempts": 3, "mode": "standard"}))


def read_stack_outputs(path: Path | None) -> dict[str, str]:
    """`sam list stack-outputs --output json`, `aws cloudformation describe-stacks` or a plain
    {key: value} object, as {OutputKey: OutputValue}. Raises OSError / ValueError / KeyError /
    IndexError on an unreadable or malformed file."""
    if path is None:
        return {}
    data = json.loads(path.read_text())
    if isinstance(data, dict) and "Stacks" in data:
        data = data["Stacks"][0].get("Outputs", [])
    if isinstance(data, list):
        return {o["OutputKey"]: o["OutputValue"] for o in data}
    return {str(k): str(v) for k, v in data.items()}


def resolve(value: str | None, outputs_file: Path | None, key: str, option: str, as_json: bool) -> str:
    """``value`` when given, else output ``key`` of the stack outputs file; fails (exit 2)
    naming ``option`` when neither holds it."""
    if value:
        return value
    try:
        found = read_stack_outputs(outputs_file).get(key)
    except (OSError, ValueError, KeyError, IndexError) as e:
        fail(f"cannot read stack outputs {outputs_file}: {e}", 2, as_json)
    if not found:
        fail(f"give {option} or --stack-outputs FILE holding {key}", 2, as_json)
    return found


# What to set when boto3 finds no region or no credentials (botocore.exceptions names them), by
# exception class name: boto3 looks up the region in AWS_DEFAULT_REGION / AWS_REGION and the
# profile's config, the credentials in AWS_ACCESS_KEY_ID + AWS_SECRET_ACCESS_KEY, AWS_PROFILE
# (~/.aws/credentials, ~/.aws/config), then the instance or container role (boto3 "Credentials").
AWS_SETUP_HINTS = {
    "NoRegionError": "no AWS region: give --region REGION or set AWS_DEFAULT_REGION (or a region in "
                     "the AWS_PROFILE's config)",
    "NoCredentialsError": "no AWS credentials: set AWS_PROFILE (a profile of ~/.aws/credentials or ~/.aws/config) "
                          "or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (the local cloud takes any values)",
    "PartialCredentialsError": "incomplete AWS credentials: set both AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, "
                               "or AWS_PROFILE",
    "ProfileNotFound": "AWS_PROFILE (or --profile) names no profile of ~/.aws/config or ~/.aws/credentials: "
                       "set it to an existing profile or unset it",
}


def aws_setup_problem(e: BaseException) -> str | None:
    """The one line saying what to set when ``e`` (or the error it was raised from) is boto3
    finding no region, no or partial credentials or an unknown profile (AWS_SETUP_HINTS), with
    botocore's own text; None for any other error."""
    seen: set[int] = set()
    current: BaseException | None = e
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        names = (type(current).__name__, str(getattr(current, "code", "")))  # code: the layer's AwsError
        hint = next((AWS_SETUP_HINTS[n] for n in names if n in AWS_SETUP_HINTS), None)
        if hint:
            return hint
        current = current.__cause__ or current.__context__
    return None


def aws_error(e: Exception, resource: str | None = None) -> str:
    """``Code: Message`` of a ClientError, ``Operation: Code: Message`` of the layer's named
    AwsError (rollout_core.adapters.errors), else ``ExceptionType: text``; a missing region or
    credentials as what to set (aws_setup_problem). ``resource`` names what was asked for and
    where its name came from (e.g. "inventory table 'x' (from --inventory-table)"): a
    not-found error then says that name first."""
    from botocore.exceptions import ClientError
    from rollout_core.adapters.errors import AwsError, error_code

    setup = aws_setup_problem(e)
    if setup:
        return setup
    if isinstance(e, AwsError):
        text = str(e)
    elif isinstance(e, ClientError):
        err = e.response.get("Error", {})
        text = f"{err.get('Code')}: {err.get('Message')}"
    else:
        text = f"{type(e).__name__}: {e}"
    code = error_code(e) or ""
    if resource and (code.startswith("ResourceNotFound") or code.endswith(("DoesNotExist", "NotFoundException"))):
        return f"{resource} not found in this region and account ({text})"
    return text


def name_source(option: str, key: str, outputs_file: Path | None) -> str:
    """Where the value of ``option`` came from, for a message: the option itself, its
    environment variable, or output ``key`` of the stack outputs file ``outputs_file``."""
    # the click typer runs on (vendored in typer 0.29), whose context holds the command's
    from typer._click.core import ParameterSource
    from typer._click.globals import get_current_context

    ctx = get_current_context(silent=True)
    param = next((p for p in ctx.command.params if option in getattr(p, "opts", ())), None) if ctx else None
    if ctx is not None and param is not None and param.name:
        if ctx.get_parameter_source(param.name) == ParameterSource.ENVIRONMENT:
            return f"from ${param.envvar}" if isinstance(param.envvar, str) else "from the environment"
        if ctx.params.get(param.name):
            return f"from {option}"
    return f"{key} of {outputs_file}" if outputs_file else f"from {option}"


def canonical(serial: Any) -> str | None:
    """A serial in ACM's colon hex (rollout_core.domain.serials.canonical_serial); None when
    empty; the value as text when it does not parse (a status view shows what was there)."""
    from rollout_core.domain.serials import canonical_serial

    if serial in (None, ""):
        return None
    try:
        return canonical_serial(serial)
    except Exception:  # noqa: BLE001 - show what was there rather than fail a status view
        return str(serial)


def iso(value: Any) -> str | None:
    """ISO 8601 text of a datetime, ``str`` of anything else, None for None."""
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


def describe_certificate(acm: Any, arn: str) -> dict[str, Any]:
    """DescribeCertificate reduced to serial (colon hex), notAfter (ISO), status and the
    RenewalSummary (datetimes as ISO). Raises botocore's ClientError / BotoCoreError."""
    c = acm.describe_certificate(CertificateArn=arn)["Certificate"]
    return {"serial": canonical(c.get("Serial")), "notAfter": iso(c.get("NotAfter")), "status": c.get("Status"),
            "renewalSummary": {k: iso(v) if isinstance(v, datetime) else v
                               for k, v in (c.get("RenewalSummary") or {}).items()}}


# --------------------------------------------------------------------------- the [local] extra

LOCAL_EXTRA = "acm-cert-rollout[local]"
# Modules the local cloud cannot run without, each brought by the [local] extra (pyproject.toml):
# moto (the AWS services), samtranslator (deploys template.yaml), aws_lambda_powertools (the real
# handlers run in local Lambda workers), awscli (the installer's `aws` calls on the local node).
LOCAL_MODULES = ("moto", "samtranslator", "aws_lambda_powertools", "awscli")


def require_local(command: str) -> None:
    """Exit 2 with one line naming what to install when the ``[local]`` extra is missing.

    Called first by every local-cloud command (demo, local run, invoke, bench), before any
    import of cert_rollout.localcloud."""
    missing = [m for m in LOCAL_MODULES if importlib.util.find_spec(m) is None]
    if missing:
        typer.echo(f"cert-rollout {command} runs the embedded local cloud, which needs {', '.join(missing)}: "
                   f"pip install '{LOCAL_EXTRA}'", err=True)
        raise typer.Exit(2)
