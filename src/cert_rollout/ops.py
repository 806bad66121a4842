"""Operator commands: invoke, check, history, renew, targets, status.

Every command takes ``--json`` (machine-readable output on stdout) and the AWS ones take
``--region`` / ``--endpoint-url`` (boto3's usual credentials and region otherwise), and
``--stack-outputs FILE`` (JSON of the stack's outputs) or the explicit resource name.

Exit codes: 0 ok; 1 the thing checked is not as expected (function error, serial mismatch,
execution not SUCCEEDED, drift); 2 usage / validation / unreachable / AWS errors.
"""

from __future__ import annotations

import json
import re
import shlex
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

TERMINAL = ("SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED")

targets_app = typer.Typer(no_args_is_help=True, help="The inventory: which targets serve which certificate.")


# --------------------------------------------------------------------------- helpers


def _out() -> Console:
    # emoji=False: serials and ids such as "a:b:c" must never render as ":b:" emoji.
    return Console(width=None if sys.stdout.isatty() else 160, soft_wrap=False, emoji=False)


def _err() -> Console:
    return Console(stderr=True, width=None if sys.stderr.isatty() else 160, emoji=False)


def _emit_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, default=str))


def _fail(message: str, code: int = 2, as_json: bool = False, **extra: Any) -> None:
    if as_json:
        _emit_json({"error": message, **extra})
    else:
        _err().print(f"[red]error:[/] {escape(message)}", highlight=False)
    raise typer.Exit(code)


def _client(service: str, region: str | None, endpoint_url: str | None) -> Any:
    import boto3
    from botocore.config import Config

    return boto3.client(service, region_name=region, endpoint_url=endpoint_url,
                        config=Config(retries={"max_attempts": 3, "mode": "standard"}))


def _table(name: str, region: str | None, endpoint_url: str | None) -> Any:
    import boto3

    return boto3.resource("dynamodb", region_name=region, endpoint_url=endpoint_url).Table(name)


def _stack_outputs(path: Path | None) -> dict[str, str]:
    """`sam list stack-outputs --output json`, `aws cloudformation describe-stacks` or a plain
    {key: value} object."""
    if path is None:
        return {}
    data = json.loads(path.read_text())
    if isinstance(data, dict) and "Stacks" in data:
        data = data["Stacks"][0].get("Outputs", [])
    if isinstance(data, list):
        return {o["OutputKey"]: o["OutputValue"] for o in data}
    return {str(k): str(v) for k, v in data.items()}


def _resolve(value: str | None, outputs_file: Path | None, key: str, option: str, as_json: bool) -> str:
    if value:
        return value
    try:
        found = _stack_outputs(outputs_file).get(key)
    except (OSError, ValueError, KeyError, IndexError) as e:
        _fail(f"cannot read stack outputs {outputs_file}: {e}", 2, as_json)
    if not found:
        _fail(f"give {option} or --stack-outputs FILE holding {key}", 2, as_json)
    return found  # type: ignore[return-value]


def _aws_error(e: Exception) -> str:
    from botocore.exceptions import ClientError

    if isinstance(e, ClientError):
        err = e.response.get("Error", {})
        return f"{err.get('Code')}: {err.get('Message')}"
    return f"{type(e).__name__}: {e}"


def _canonical(serial: Any) -> str | None:
    from rollout_core.domain.serials import canonical_serial

    if serial in (None, ""):
        return None
    try:
        return canonical_serial(serial)
    except Exception:  # noqa: BLE001 - show what was there rather than fail a status view
        return str(serial)


def _iso(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


RegionOpt = typer.Option(None, "--region", help="AWS region (default: boto3's usual lookup).")
EndpointOpt = typer.Option(None, "--endpoint-url", help="AWS endpoint (e.g. the local cloud's).")
JsonOpt = typer.Option(False, "--json", help="Print machine-readable JSON.")
OutputsOpt = typer.Option(None, "--stack-outputs", exists=True, dir_okay=False,
                          help="JSON file of the stack outputs (sam list stack-outputs --output json).")
TableOpt = typer.Option(None, "--inventory-table", envvar="CERT_ROLLOUT_INVENTORY_TABLE",
                        help="Inventory DynamoDB table (or InventoryTableName from --stack-outputs).")
SfnOpt = typer.Option(None, "--state-machine-arn", envvar="CERT_ROLLOUT_STATE_MACHINE_ARN",
                      help="Rollout state machine (or RolloutStateMachineArn from --stack-outputs).")


# --------------------------------------------------------------------------- invoke


def invoke(
    function: str = typer.Argument(..., help="Logical id in template.yaml, e.g. ValidateEventFunction."),
    event: Path = typer.Option(..., "-e", "--event", exists=True, dir_okay=False, help="Event JSON file (events/*.json)."),
    parameter_overrides: list[str] | None = typer.Option(
        None, "--parameter-overrides", help="Template parameter K=V (repeatable, or 'A=1 B=2')."),
    region: str | None = typer.Option(None, "--region", help="Region of the local cloud (default eu-west-1)."),
    as_json: bool = JsonOpt,
) -> None:
    """Run one function of template.yaml on a sample event, like `sam local invoke`, without Docker.

    The real handler runs with the function's own template environment against an embedded
    local cloud (moto) with template.yaml deployed in it. Its resources are EMPTY unless the
    event refers to ones the local cloud created: e.g. ValidateEventFunction on
    events/validate_event.json answers CertificateNotFound, which is expected. Prints the
    response payload and the function's log lines; exit 1 on a function error.
    """
    from cert_rollout.invoke import InvokeError, invoke_function, parse_overrides

    try:
        payload = event.read_bytes()
        json.loads(payload or b"{}")
    except (OSError, ValueError) as e:
        _fail(f"event {event}: not JSON: {e}", 2, as_json)
    try:
        overrides = parse_overrides(parameter_overrides)
        err = _err()
        if as_json:
            result = invoke_function(function, payload, overrides, region)
        else:
            with err.status(f"Starting the local cloud and invoking {function}..."):
                result = invoke_function(function, payload, overrides, region)
    except InvokeError as e:
        _fail(str(e), 2, as_json)
    if as_json:
        _emit_json(result.to_dict())
    else:
        out = _out()
        out.rule(f"{function} ({result.function_name}) logs")
        for line in result.logs:
            out.print(line, markup=False, highlight=False)
        out.rule("response")
        if isinstance(result.payload, (dict, list)):
            out.print_json(json.dumps(result.payload, default=str))
        else:
            out.print(result.raw_payload, markup=False)
        if result.function_error:
            etype = result.payload.get("errorType") if isinstance(result.payload, dict) else None
            out.print(f"[red]Function error ({result.function_error})[/]: {etype or ''}")
    raise typer.Exit(1 if result.function_error else 0)


# --------------------------------------------------------------------------- check


def _split_endpoint(value: str) -> tuple[str, int]:
    m = re.fullmatch(r"\[([^\]]+)\]:(\d+)", value) or re.fullmatch(r"([^:\[\]]+):(\d+)", value)
    if not m:
        raise ValueError(f"{value!r} is not HOST:PORT (use [v6addr]:PORT for IPv6)")
    port = int(m.group(2))
    if not 0 < port < 65536:
        raise ValueError(f"port {port} is not in 1..65535")
    return m.group(1), port


def check(
    endpoint: str = typer.Argument(..., metavar="HOST:PORT", help="The target to probe."),
    sni: str | None = typer.Option(None, "--sni", help="SNI name to send (default: none when HOST is an IP, else HOST)."),
    ca_bundle: Path | None = typer.Option(None, "--ca-bundle", exists=True, dir_okay=False,
                                             help="PEM of trusted CAs: also verify chain and hostname."),
    expect_serial: str | None = typer.Option(None, "--expect-serial", help="Serial the target must serve (colon hex or decimal)."),
    timeout: float = typer.Option(5.0, "--timeout", min=0.1, help="Seconds for connect + handshake."),
    as_json: bool = JsonOpt,
) -> None:
    """TLS-handshake HOST:PORT (with SNI) and show the served leaf certificate.

    Exit 1 when --expect-serial differs from the served serial (compared as integers),
    2 when unreachable or the handshake fails (the error is named)."""
    from rollout_core.domain.serials import parse_serial
    from rollout_core.probe import ProbeError, probe_served_certificate

    try:
        host, port = _split_endpoint(endpoint)
    except ValueError as e:
        _fail(str(e), 2, as_json)
    if sni is None:
        import ipaddress

        try:
            ipaddress.ip_address(host)
        except ValueError:
            sni = host
    expected: int | None = None
    if expect_serial is not None:
        try:
            expected = parse_serial(expect_serial)
        except Exception as e:  # noqa: BLE001 - InvalidSerial, shown as usage error
            _fail(f"--expect-serial: {e}", 2, as_json)
    try:
        ca_pem = ca_bundle.read_text() if ca_bundle else None
    except (OSError, UnicodeDecodeError) as e:
        _fail(f"--ca-bundle {ca_bundle}: not a readable PEM file ({type(e).__name__})", 2, as_json)
    try:
        served = probe_served_certificate(host, port, sni, timeout=timeout, ca_bundle_pem=ca_pem)
    except ProbeError as e:
        _fail(f"{type(e).__name__}: {e}", 2, as_json, errorType=type(e).__name__, reason=e.reason,
              host=host, port=port, sni=sni)
    except ValueError as e:
        _fail(str(e), 2, as_json)
    info = {
        "endpoint": endpoint, "sni": sni, "subject": served.subject, "sans": served.sans,
        "serial": _canonical(served.serial), "serialDecimal": str(served.serial), "issuer": served.issuer,
        "notBefore": served.not_before.isoformat(), "notAfter": served.not_after.isoformat(),
        "chainLength": served.chain_length, "verified": served.verified, "verifyError": served.verify_error,
        "tlsVersion": served.tls_version, "fingerprintSha256": served.fingerprint_sha256,
    }
    matches = None
    if expected is not None:
        matches = served.serial == expected
        info["expectedSerial"] = _canonical(expected)
        info["matches"] = matches
    if as_json:
        _emit_json(info)
    else:
        out = _out()
        t = Table(title=escape(f"{endpoint} (SNI {sni or '-'})"), show_header=False, title_justify="left")
        t.add_column("field", style="bold")
        t.add_column("value")
        # Certificate text is the server's, not ours: shown literally, never as markup.
        rows = [("Subject", escape(served.subject)), ("SANs", escape(", ".join(served.sans)) or "-"),
                ("Serial", info["serial"]), ("Issuer", escape(served.issuer)), ("Not after", info["notAfter"]),
                ("Chain length", str(served.chain_length) if served.chain_length is not None else "unknown"),
                ("TLS", served.tls_version or "-")]
        if ca_bundle:
            rows.append(("Verified", "[green]yes[/]" if served.verified else f"[red]no[/] {escape(served.verify_error or '')}"))
        if expected is not None:
            rows.append(("Expected serial", f"{info['expectedSerial']} "
                         + ("[green]matches[/]" if matches else "[red]MISMATCH[/]")))
        for k, v in rows:
            t.add_row(k, v)
        out.print(t)
    raise typer.Exit(1 if matches is False else 0)


# --------------------------------------------------------------------------- history


from cert_rollout.sfn import fetch_history  # noqa: E402  (re-exported for the commands below)


def _json_or_none(text: Any) -> Any:
    try:
        return json.loads(text) if text else None
    except (TypeError, ValueError):
        return None


def _target_of(data: Any) -> str | None:
    return data.get("targetId") if isinstance(data, dict) and isinstance(data.get("targetId"), str) else None


def summarize_history(events: list[dict[str, Any]]) -> dict[str, Any]:
    """States (entered/exited, start, duration, target), target outcomes, failures."""
    states: list[dict[str, Any]] = []
    open_: dict[tuple[str, str | None], list[dict[str, Any]]] = {}
    outcomes: list[dict[str, Any]] = []
    failures: list[dict[str, Any]] = []
    for e in events:
        ts = e.get("timestamp")
        entered = e.get("stateEnteredEventDetails")
        exited = e.get("stateExitedEventDetails")
        if entered:
            row = {"state": entered.get("name"), "type": e["type"].replace("StateEntered", ""),
                   "target": _target_of(_json_or_none(entered.get("input"))), "entered": ts, "exited": None,
                   "durationMs": None, "enteredEventId": e["id"]}
            states.append(row)
            open_.setdefault((row["state"], row["target"]), []).append(row)
        elif exited:
            name = exited.get("name")
            out = _json_or_none(exited.get("output"))
            target = _target_of(out)
            queue = open_.get((name, target)) or next(
                (q for (n, _), q in open_.items() if n == name and q), None)
            if queue:
                row = queue.pop(0)
                row["exited"] = ts
                if isinstance(ts, datetime) and isinstance(row["entered"], datetime):
                    row["durationMs"] = int((ts - row["entered"]).total_seconds() * 1000)
            if name == "RecordTargetOutcome" and isinstance(out, dict):
                outcomes.append({"targetId": out.get("targetId"), "outcome": out.get("outcome"),
                                 "reason": out.get("reason")})
        for key, details in e.items():
            if key.endswith("FailedEventDetails") and isinstance(details, dict):
                failures.append({"id": e["id"], "type": e["type"], "error": details.get("error"),
                                 "cause": (details.get("cause") or "")[:500]})
    return {"states": states, "targets": outcomes, "failures": failures}


def history(
    execution_arn: str = typer.Argument(..., help="The rollout execution's ARN."),
    events_table: bool = typer.Option(False, "--events", help="Also list every history event as the console does."),
    region: str | None = RegionOpt,
    endpoint_url: str | None = EndpointOpt,
    as_json: bool = JsonOpt,
) -> None:
    """The execution's history as an auditor reads it: each state entered/exited with start and
    duration, each target's outcome, the execution's status and error. Exit 1 unless SUCCEEDED."""
    from botocore.exceptions import BotoCoreError, ClientError

    sfn = _client("stepfunctions", region, endpoint_url)
    try:
        desc = sfn.describe_execution(executionArn=execution_arn)
        events = fetch_history(sfn, execution_arn)
    except (ClientError, BotoCoreError) as e:
        _fail(_aws_error(e), 2, as_json)
    summary = summarize_history(events)
    result = {"executionArn": execution_arn, "status": desc["status"], "startDate": _iso(desc.get("startDate")),
              "stopDate": _iso(desc.get("stopDate")), "error": desc.get("error"), "cause": desc.get("cause"),
              "states": [{k: _iso(v) if k in ("entered", "exited") else v for k, v in s.items()}
                         for s in summary["states"]],
              "targets": summary["targets"], "failures": summary["failures"], "eventCount": len(events)}
    if as_json:
        _emit_json(result)
    else:
        _render_history(_out(), result, events if events_table else None)
    raise typer.Exit(0 if desc["status"] == "SUCCEEDED" else 1)


def _render_history(out: Console, result: dict[str, Any], events: list[dict[str, Any]] | None) -> None:
    color = {"SUCCEEDED": "green", "RUNNING": "cyan"}.get(result["status"], "red")
    out.print(f"Execution [bold]{result['executionArn']}[/]")
    out.print(f"Status [bold {color}]{result['status']}[/]  started {result['startDate']}  "
              f"stopped {result['stopDate'] or '-'}  ({result['eventCount']} events)")
    if result.get("error"):
        out.print(f"Error [red]{result['error']}[/]: {(result.get('cause') or '')[:400]}", highlight=False)
    t = Table(title="States", title_justify="left")
    for col in ("State", "Type", "Target", "Entered", "Duration (ms)"):
        t.add_column(col, no_wrap=True)
    for s in result["states"]:
        entered = (s["entered"] or "")[11:23]
        t.add_row(s["state"] or "", s["type"], s["target"] or "", entered,
                  "-" if s["durationMs"] is None else str(s["durationMs"]))
    out.print(t)
    if result["targets"]:
        tt = Table(title="Targets", title_justify="left")
        for col in ("Target", "Outcome", "Reason"):
            tt.add_column(col)
        colors = {"VERIFIED": "green", "ROLLED_BACK": "yellow", "FAILED": "red"}
        for o in result["targets"]:
            tt.add_row(o["targetId"] or "", f"[{colors.get(o['outcome'], 'white')}]{o['outcome']}[/]", o["reason"] or "")
        out.print(tt)
    for f in result["failures"]:
        out.print(f"[red]{f['type']}[/] (event {f['id']}): {f['error']}: {f['cause'][:300]}", highlight=False)
    if events is not None:
        from cert_rollout.report import history_table

        out.print(history_table(events, "Execution history"))


# --------------------------------------------------------------------------- renew


def _describe_cert(acm: Any, arn: str) -> dict[str, Any]:
    c = acm.describe_certificate(CertificateArn=arn)["Certificate"]
    return {"serial": _canonical(c.get("Serial")), "notAfter": _iso(c.get("NotAfter")), "status": c.get("Status"),
            "renewalSummary": {k: _iso(v) if isinstance(v, datetime) else v
                               for k, v in (c.get("RenewalSummary") or {}).items()}}


def _find_execution(sfn: Any, sm_arn: str, after: datetime, wait: float, progress: Progress | None) -> str | None:
    deadline = time.monotonic() + wait
    task = progress.add_task("waiting for the rollout execution", total=None) if progress else None
    try:
        while True:
            found: list[dict[str, Any]] = []
            kwargs: dict[str, Any] = {"stateMachineArn": sm_arn, "maxResults": 100}
            while True:
                page = sfn.list_executions(**kwargs)
                found += [x for x in page["executions"] if x["startDate"] >= after]
                if not page.get("nextToken") or found:
                    break
                kwargs["nextToken"] = page["nextToken"]
            if found:
                return max(found, key=lambda x: x["startDate"])["executionArn"]
            if time.monotonic() > deadline:
                return None
            time.sleep(0.5)
    finally:
        if progress is not None and task is not None:
            progress.remove_task(task)


def follow_execution(sfn: Any, arn: str, timeout: float, progress: Progress | None,
                     on_line: Any = None) -> dict[str, Any]:
    """Poll (bounded) until the execution ends; show each state entered and target outcome."""
    deadline = time.monotonic() + timeout
    seen = 0
    task = progress.add_task("rollout RUNNING", total=None) if progress else None
    try:
        while True:
            desc = sfn.describe_execution(executionArn=arn)
            events = fetch_history(sfn, arn)
            for e in events[seen:]:
                entered = e.get("stateEnteredEventDetails")
                exited = e.get("stateExitedEventDetails")
                line = None
                if entered:
                    target = _target_of(_json_or_none(entered.get("input")))
                    line = f"{e['timestamp']:%H:%M:%S} {target or 'execution':<14} {entered.get('name')}"
                elif exited and exited.get("name") == "RecordTargetOutcome":
                    out = _json_or_none(exited.get("output")) or {}
                    line = (f"{e['timestamp']:%H:%M:%S} {out.get('targetId', ''):<14} "
                            f"{out.get('outcome')} {out.get('reason') or ''}")
                if line and on_line:
                    on_line(line)
            seen = len(events)
            if progress is not None and task is not None:
                progress.update(task, description=f"rollout {desc['status']} ({seen} events)")
            if desc["status"] in TERMINAL:
                return desc
            if time.monotonic() > deadline:
                raise TimeoutError(f"execution {arn} still {desc['status']} after {timeout:.0f} s")
            time.sleep(0.5)
    finally:
        if progress is not None and task is not None:
            progress.remove_task(task)


def _progress(console: Console) -> Progress:
    return Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(),
                    console=console, transient=True)


def renew(
    certificate_arn: str = typer.Argument(..., help="ACM private certificate to renew."),
    follow: bool = typer.Option(False, "--follow", help="Find the rollout the renewal triggers and follow it."),
    state_machine_arn: str | None = SfnOpt,
    stack_outputs: Path | None = OutputsOpt,
    wait: float = typer.Option(300.0, "--wait", min=1, help="Seconds to wait for the rollout execution to start."),
    timeout: float = typer.Option(1800.0, "--timeout", min=1, help="Seconds to follow the execution."),
    region: str | None = RegionOpt,
    endpoint_url: str | None = EndpointOpt,
    as_json: bool = JsonOpt,
) -> None:
    """acm:RenewCertificate, then DescribeCertificate's RenewalSummary and Serial. With --follow,
    find the execution the renewal's event starts (newest started after the call; bounded wait)
    and follow it until it ends: exit 1 unless it SUCCEEDED (or none started within --wait)."""
    from botocore.exceptions import BotoCoreError, ClientError

    sm_arn = _resolve(state_machine_arn, stack_outputs, "RolloutStateMachineArn", "--state-machine-arn",
                      as_json) if follow else None
    acm = _client("acm", region, endpoint_url)
    out, err = _out(), _err()
    result: dict[str, Any] = {"certificateArn": certificate_arn}
    try:
        before = _describe_cert(acm, certificate_arn)
        started = datetime.now(UTC).replace(microsecond=0)
        acm.renew_certificate(CertificateArn=certificate_arn)
        after = _describe_cert(acm, certificate_arn)
    except (ClientError, BotoCoreError) as e:
        _fail(_aws_error(e), 2, as_json)
    result.update({"serialBefore": before["serial"], "serial": after["serial"], "notAfter": after["notAfter"],
                   "renewalSummary": after["renewalSummary"], "serialChanged": before["serial"] != after["serial"]})
    if not as_json:
        out.print(f"RenewCertificate requested for {certificate_arn}", highlight=False)
        rs = after["renewalSummary"]
        out.print(f"Renewal status [bold]{rs.get('RenewalStatus', 'not reported yet')}[/]"
                  + (f" ({rs['RenewalStatusReason']})" if rs.get("RenewalStatusReason") else ""))
        out.print(f"Serial {before['serial']} -> [bold]{after['serial']}[/]  (not after {after['notAfter']})")
    code = 0
    if follow:
        sfn = _client("stepfunctions", region, endpoint_url)
        lines: list[str] = []
        with _progress(err) as progress:
            def show(line: str) -> None:
                lines.append(line)
                if not as_json:
                    progress.console.print(line, highlight=False, markup=False)
            try:
                arn = _find_execution(sfn, sm_arn, started, wait, progress)  # type: ignore[arg-type]
                if arn is None:
                    result["execution"] = None
                    code = 1
                    if not as_json:
                        err.print(f"[red]no rollout execution started within {wait:.0f} s[/]")
                else:
                    if not as_json:
                        progress.console.print(f"Following {arn}", highlight=False)
                    desc = follow_execution(sfn, arn, timeout, progress, show)
                    summary = summarize_history(fetch_history(sfn, arn))
                    result["execution"] = {"executionArn": arn, "status": desc["status"], "error": desc.get("error"),
                                           "cause": desc.get("cause"), "targets": summary["targets"]}
                    code = 0 if desc["status"] == "SUCCEEDED" else 1
            except TimeoutError as e:
                result["execution"] = {"error": "TimedOut", "cause": str(e)}
                code = 1
                if not as_json:
                    err.print(f"[red]{e}[/]")
            except (ClientError, BotoCoreError) as e:
                _fail(_aws_error(e), 2, as_json)
        if not as_json and result.get("execution") and result["execution"].get("status"):
            ex = result["execution"]
            out.print(f"Execution [bold]{ex['status']}[/]" + (f": {ex['error']}" if ex.get("error") else ""))
            for t in ex["targets"]:
                out.print(f"  {t['targetId']}: {t['outcome']} {t.get('reason') or ''}", highlight=False)
    if as_json:
        _emit_json(result)
    raise typer.Exit(code)


# --------------------------------------------------------------------------- targets


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

    try:
        return Target.model_validate(complete_target(data))
    except TargetDefaultsError as e:
        raise ValueError(f"{where}{e}") from None
    except ValidationError as e:
        raise ValueError(f"{where}{_validation_message(e)}") from None


def _target_row(t: dict[str, Any]) -> dict[str, Any]:
    host = t.get("host", "")
    endpoint = f"[{host}]:{t.get('port')}" if ":" in str(host) else f"{host}:{t.get('port')}"
    return {"certificateArn": t.get("certificateArn"), "targetId": t.get("targetId"), "endpoint": endpoint,
            "sni": t.get("sni"), "server": t.get("server"), "instanceId": t.get("instanceId"),
            "lastDeployedSerial": _canonical(t.get("lastDeployedSerial")), "lastDeployedAt": t.get("lastDeployedAt"),
            "lastOutcome": t.get("lastOutcome")}


from rollout_core.adapters.dynamo import plain as _plain  # noqa: E402


def _scan(tbl: Any, certificate_arn: str | None = None) -> list[dict[str, Any]]:
    from boto3.dynamodb.conditions import Key

    items: list[dict[str, Any]] = []
    kwargs: dict[str, Any] = {}
    if certificate_arn:
        kwargs["KeyConditionExpression"] = Key("certificateArn").eq(certificate_arn)
    while True:
        page = tbl.query(**kwargs) if certificate_arn else tbl.scan(**kwargs)
        items += [_plain(i) for i in page.get("Items", [])]
        if "LastEvaluatedKey" not in page:
            return sorted(items, key=lambda i: (i.get("certificateArn", ""), i.get("targetId", "")))
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


@targets_app.command("add")
def targets_add(
    certificate_arn: str = typer.Option(..., "--certificate-arn"),
    target_id: str = typer.Option(..., "--id", help="Target id (unique per certificate)."),
    host: str = typer.Option(..., "--host", help="DNS name or IP address to connect to."),
    port: int = typer.Option(443, "--port"),
    sni: str | None = typer.Option(None, "--sni", help="SNI name (required when --host is an IP)."),
    server: str = typer.Option("generic", "--server", help="embedded|nginx|apache|haproxy|java|generic"),
    instance_id: str = typer.Option(..., "--instance-id", help="SSM managed node id (i-... or mi-...)."),
    files: list[str] | None = typer.Option(None, "--file", help="PATH:CONTENT[:MODE], CONTENT one of "
                                              "fullchain|leaf|chain|key|combined|pkcs12 (repeatable)."),
    test_command: str | None = typer.Option(None, "--test-command", help="Config test command (shell-split)."),
    reload_command: str | None = typer.Option(None, "--reload-command", help="Reload command (shell-split)."),
    inventory_table: str | None = TableOpt,
    stack_outputs: Path | None = OutputsOpt,
    region: str | None = RegionOpt,
    endpoint_url: str | None = EndpointOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Add (or replace) a target of a certificate. Refused (exit 2, naming the field) when
    invalid: a bad port, an unknown server kind, an IP host without --sni, ..."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        data: dict[str, Any] = {
            "certificateArn": certificate_arn, "targetId": target_id, "host": host, "port": port, "sni": sni,
            "server": server, "instanceId": instance_id, "files": [_parse_file_spec(f) for f in files or []],
            "testCommand": shlex.split(test_command) if test_command is not None else None,
            "reloadCommand": shlex.split(reload_command) if reload_command is not None else None,
        }
        target = _validate_target(data)
    except ValueError as e:
        _fail(f"invalid target: {e}", 2, as_json)
    name = _resolve(inventory_table, stack_outputs, "InventoryTableName", "--inventory-table", as_json)
    try:
        _table(name, region, endpoint_url).put_item(Item=target.model_dump(exclude_none=True))
    except (ClientError, BotoCoreError) as e:
        _fail(_aws_error(e), 2, as_json)
    if as_json:
        _emit_json({"added": target.model_dump(exclude_none=True)})
    else:
        _out().print(f"Added target [bold]{target.targetId}[/] ({target.endpoint}, SNI {target.sni}) "
                     f"of {certificate_arn}", highlight=False)


@targets_app.command("list")
def targets_list(
    certificate_arn: str | None = typer.Option(None, "--certificate-arn", help="Only this certificate's targets."),
    inventory_table: str | None = TableOpt,
    stack_outputs: Path | None = OutputsOpt,
    region: str | None = RegionOpt,
    endpoint_url: str | None = EndpointOpt,
    as_json: bool = JsonOpt,
) -> None:
    """The inventory as a table: target, endpoint, SNI, server, node, last deployed serial/at."""
    from botocore.exceptions import BotoCoreError, ClientError

    name = _resolve(inventory_table, stack_outputs, "InventoryTableName", "--inventory-table", as_json)
    try:
        items = _scan(_table(name, region, endpoint_url), certificate_arn)
    except (ClientError, BotoCoreError) as e:
        _fail(_aws_error(e), 2, as_json)
    rows = [_target_row(i) for i in items]
    if as_json:
        _emit_json(rows)
        return
    t = Table(title=f"Inventory {name} ({len(rows)} targets)", title_justify="left")
    for col in ("Certificate", "Target", "Endpoint", "SNI", "Server", "Node", "Last deployed serial", "At", "Outcome"):
        t.add_column(col, overflow="fold")
    for r in rows:
        t.add_row(str(r["certificateArn"]).rsplit("/", 1)[-1], r["targetId"], r["endpoint"], r["sni"] or "",
                  r["server"] or "", r["instanceId"] or "", r["lastDeployedSerial"] or "-", r["lastDeployedAt"] or "-",
                  r["lastOutcome"] or "-")
    _out().print(t)


@targets_app.command("remove")
def targets_remove(
    certificate_arn: str = typer.Option(..., "--certificate-arn"),
    target_id: str = typer.Option(..., "--id"),
    inventory_table: str | None = TableOpt,
    stack_outputs: Path | None = OutputsOpt,
    region: str | None = RegionOpt,
    endpoint_url: str | None = EndpointOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Remove a target from the inventory. Exit 1 if it was not there."""
    from botocore.exceptions import BotoCoreError, ClientError

    name = _resolve(inventory_table, stack_outputs, "InventoryTableName", "--inventory-table", as_json)
    try:
        answer = _table(name, region, endpoint_url).delete_item(
            Key={"certificateArn": certificate_arn, "targetId": target_id}, ReturnValues="ALL_OLD")
    except (ClientError, BotoCoreError) as e:
        _fail(_aws_error(e), 2, as_json)
    existed = bool(answer.get("Attributes"))
    if as_json:
        _emit_json({"removed": existed, "certificateArn": certificate_arn, "targetId": target_id})
    else:
        _out().print(f"Removed target {target_id}" if existed else f"[yellow]No target {target_id} of that certificate[/]",
                     highlight=False)
    raise typer.Exit(0 if existed else 1)


@targets_app.command("import")
def targets_import(
    file: Path = typer.Argument(..., exists=True, dir_okay=False, help="YAML or JSON list of targets."),
    inventory_table: str | None = TableOpt,
    stack_outputs: Path | None = OutputsOpt,
    region: str | None = RegionOpt,
    endpoint_url: str | None = EndpointOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Import targets (the Target shape: certificateArn, targetId, host, port, sni, server,
    instanceId, files, testCommand, reloadCommand). Every one is validated before any is
    written: one invalid target refuses the whole file (exit 2)."""
    import yaml
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        text = file.read_text()
        data = json.loads(text) if file.suffix.lower() == ".json" else yaml.safe_load(text)
    except (OSError, ValueError, yaml.YAMLError) as e:
        _fail(f"{file}: cannot parse: {e}", 2, as_json)
    if isinstance(data, dict) and isinstance(data.get("targets"), list):
        data = data["targets"]
    if not isinstance(data, list):
        _fail(f"{file}: expected a list of targets", 2, as_json)
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
        _fail("nothing imported: " + " | ".join(problems), 2, as_json, problems=problems)
    name = _resolve(inventory_table, stack_outputs, "InventoryTableName", "--inventory-table", as_json)
    try:
        with _table(name, region, endpoint_url).batch_writer() as batch:
            for t in targets:
                batch.put_item(Item=t.model_dump(exclude_none=True))
    except (ClientError, BotoCoreError) as e:
        _fail(_aws_error(e), 2, as_json)
    if as_json:
        _emit_json({"imported": [t.targetId for t in targets]})
    else:
        _out().print(f"Imported {len(targets)} target(s) into {name}", highlight=False)


# --------------------------------------------------------------------------- status


def status(
    inventory_table: str | None = TableOpt,
    stack_outputs: Path | None = OutputsOpt,
    region: str | None = RegionOpt,
    endpoint_url: str | None = EndpointOpt,
    as_json: bool = JsonOpt,
) -> None:
    """For every certificate in the inventory: ACM's current serial and NotAfter, and per target
    what was last deployed, when, with which outcome, and whether it is drift (last deployed
    serial != current serial). Exit 1 when any target drifts."""
    from botocore.exceptions import BotoCoreError, ClientError
    from rollout_core.domain.serials import parse_serial

    name = _resolve(inventory_table, stack_outputs, "InventoryTableName", "--inventory-table", as_json)
    acm = _client("acm", region, endpoint_url)
    try:
        items = _scan(_table(name, region, endpoint_url))
    except (ClientError, BotoCoreError) as e:
        _fail(_aws_error(e), 2, as_json)
    by_cert: dict[str, list[dict[str, Any]]] = {}
    for i in items:
        by_cert.setdefault(i["certificateArn"], []).append(i)
    certs: list[dict[str, Any]] = []
    with _progress(_err()) as progress:
        task = progress.add_task("DescribeCertificate", total=len(by_cert))
        for arn, targets in by_cert.items():
            entry: dict[str, Any] = {"certificateArn": arn, "serial": None, "notAfter": None, "error": None}
            current: int | None = None
            try:
                d = _describe_cert(acm, arn)
                entry.update(serial=d["serial"], notAfter=d["notAfter"])
                current = parse_serial(d["serial"]) if d["serial"] else None
            except (ClientError, BotoCoreError) as e:
                entry["error"] = _aws_error(e)
            rows = []
            for t in targets:
                row = _target_row(t)
                last = t.get("lastDeployedSerial")
                try:
                    deployed = parse_serial(last) if last else None
                except Exception:  # noqa: BLE001
                    deployed = None
                row["drift"] = None if current is None else deployed != current
                rows.append(row)
            entry["targets"] = rows
            certs.append(entry)
            progress.advance(task)
    drift = any(r["drift"] for c in certs for r in c["targets"])
    if as_json:
        _emit_json({"certificates": certs, "drift": drift})
    else:
        out = _out()
        if not certs:
            out.print(f"The inventory {name} is empty.")
        for c in certs:
            out.rule(c["certificateArn"])
            if c["error"]:
                out.print(f"[red]{c['error']}[/]", highlight=False)
            else:
                out.print(f"Current serial [bold]{c['serial']}[/], not after {c['notAfter']}")
            t = Table(title_justify="left")
            for col in ("Target", "Endpoint", "Last deployed serial", "At", "Outcome", "Drift"):
                t.add_column(col, overflow="fold")
            for r in c["targets"]:
                d = "?" if r["drift"] is None else ("[red]DRIFT[/]" if r["drift"] else "[green]no[/]")
                t.add_row(r["targetId"], r["endpoint"], r["lastDeployedSerial"] or "-", r["lastDeployedAt"] or "-",
                          r["lastOutcome"] or "-", d)
            out.print(t)
    raise typer.Exit(1 if drift else 0)


# --------------------------------------------------------------------------- registration


def register(app: typer.Typer) -> None:
    """Add the operator commands to the cert-rollout app."""
    app.command("invoke")(invoke)
    app.command("check")(check)
    app.command("history")(history)
    app.command("renew")(renew)
    app.command("status")(status)
    app.add_typer(targets_app, name="targets")
