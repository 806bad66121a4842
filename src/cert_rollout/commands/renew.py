"""`cert-rollout renew CERTIFICATE_ARN [--follow]`: acm:RenewCertificate, then the renewal's
status and serial; with --follow, the rollout execution the renewal's event starts, followed
(bounded) until it ends."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import Progress

from cert_rollout.commands.common import (
    AsJson,
    EndpointUrl,
    Region,
    StackOutputs,
    StateMachineArn,
    aws_client,
    aws_error,
    describe_certificate,
    emit_json,
    err_console,
    fail,
    out_console,
    progress_bar,
    resolve,
)
from cert_rollout.commands.history import summarize_history
from cert_rollout.render import PhaseGroups, execution_facts, json_or_none, one_line, targets_text
from cert_rollout.sfn import fetch_history

TERMINAL = ("SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED")


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
    """Poll (bounded) until the execution ends; ``on_line`` gets a line each time a target's (or
    the execution's) phase in words changes (installing, verifying, waiting for reload, rolling
    back, done: OUTCOME), the targets of one poll that reach a phase together on one line
    (render.PhaseGroups)."""
    deadline = time.monotonic() + timeout
    seen = 0
    phases = PhaseGroups()
    task = progress.add_task("rollout RUNNING", total=None) if progress else None
    try:
        while True:
            desc = sfn.describe_execution(executionArn=arn)
            events = fetch_history(sfn, arn)
            lines = [line for e in events[seen:] for line in phases.add(e)] + phases.flush()
            for line in lines if on_line else []:
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


def duplicate_of(execution_arn: str, events: list[dict[str, Any]]) -> str | None:
    """The ARN of the execution that holds the serial's claim when ``execution_arn`` (whose
    history is ``events``) decided ALREADY_DEPLOYED as a duplicate of another rollout (its
    ValidateEvent output ``rollout.duplicateOf``, logic/validate.py); None otherwise."""
    for e in reversed(events):
        exited = e.get("stateExitedEventDetails")
        if exited and exited.get("name") == "ValidateEvent":
            rollout = (json_or_none(exited.get("output")) or {}).get("rollout") or {}
            holder = rollout.get("duplicateOf") if isinstance(rollout, dict) else None
            if isinstance(holder, str) and holder and holder != execution_arn.rsplit(":", 1)[-1]:
                return f"{execution_arn.rsplit(':', 1)[0]}:{holder}"
            return None
    return None


def _request_renewal(acm: Any, certificate_arn: str,
                     as_json: bool) -> tuple[dict[str, Any], datetime, dict[str, Any]]:
    """acm:RenewCertificate between two DescribeCertificate calls: (certificate before, the
    second the renewal was requested (UTC), certificate after). An AWS error exits 2, named."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        before = describe_certificate(acm, certificate_arn)
        started = datetime.now(UTC).replace(microsecond=0)
        acm.renew_certificate(CertificateArn=certificate_arn)
        after = describe_certificate(acm, certificate_arn)
    except (ClientError, BotoCoreError) as e:
        fail(aws_error(e), 2, as_json)
    return before, started, after


def _print_renewal(out: Console, certificate_arn: str, before: dict[str, Any], after: dict[str, Any]) -> None:
    """The renewal request, ACM's RenewalSummary status (and reason) and the serial change."""
    out.print(f"RenewCertificate requested for {certificate_arn}", highlight=False)
    rs = after["renewalSummary"]
    out.print(f"Renewal status [bold]{rs.get('RenewalStatus', 'not reported yet')}[/]"
              + (f" ({rs['RenewalStatusReason']})" if rs.get("RenewalStatusReason") else ""))
    out.print(f"Serial {before['serial']} -> [bold]{after['serial']}[/]  (not after {after['notAfter']})")


def _follow_rollout(sfn: Any, sm_arn: str, started: datetime, wait: float, timeout: float, as_json: bool,
                    err: Console) -> tuple[dict[str, Any] | None, int]:
    """Find the rollout execution started after ``started`` (bounded by ``wait`` seconds) and
    follow it (bounded by ``timeout``), showing each line on ``err`` unless ``as_json``.

    Returns (the ``execution`` entry of the result, exit code): None and 1 when none started;
    the execution's status, error, cause and per-target outcomes and 0 only when it SUCCEEDED;
    a TimedOut entry and 1 when still running after ``timeout``. An AWS error exits 2, named."""
    from botocore.exceptions import BotoCoreError, ClientError

    with progress_bar(err) as progress:
        def show(line: str) -> None:
            if not as_json:
                progress.console.print(line, highlight=False, markup=False, soft_wrap=True)
        try:
            arn = _find_execution(sfn, sm_arn, started, wait, progress)
            if arn is None:
                if not as_json:
                    err.print(f"[red]no rollout execution started within {wait:.0f} s[/]")
                return None, 1
            if not as_json:
                progress.console.print(f"Following {arn}", highlight=False, soft_wrap=True)
            desc = follow_execution(sfn, arn, timeout, progress, show)
            events = fetch_history(sfn, arn)
            holder = duplicate_of(arn, events)
            if holder is not None:
                # Health and ACM both announce a renewal: the execution that claimed the serial is the rollout.
                if not as_json:
                    progress.console.print(f"{arn.rsplit(':', 1)[-1]} is a duplicate (ALREADY_DEPLOYED): "
                                           f"following {holder}", highlight=False)
                arn = holder
                desc = follow_execution(sfn, arn, timeout, progress, show)
                events = fetch_history(sfn, arn)
            execution = {**execution_facts(desc, events), "targets": summarize_history(events)["targets"]}
            return execution, 0 if desc["status"] == "SUCCEEDED" else 1
        except TimeoutError as e:
            if not as_json:
                err.print(f"[red]{e}[/]")
            return {"error": "TimedOut", "cause": str(e)}, 1
        except (ClientError, BotoCoreError) as e:
            fail(aws_error(e), 2, as_json)


def _print_execution(out: Console, execution: dict[str, Any]) -> None:
    """The followed execution's status (and error) and each target's outcome and reason."""
    out.print(f"Execution [bold]{execution['status']}[/], outcome [bold]{execution.get('outcome') or '-'}[/], "
              f"targets {targets_text(execution)}")
    if execution.get("error"):
        out.print(escape(one_line(f"error {execution['error']}: {execution.get('cause') or ''}")),
                  soft_wrap=True, highlight=False)
    for t in execution["targets"]:
        out.print(escape(f"  {t['targetId']}: {t['outcome']} {t.get('reason') or ''}"), soft_wrap=True, highlight=False)
    out.print(escape(f"History: cert-rollout history {execution['executionArn']}"), soft_wrap=True, highlight=False)


def renew(
    certificate_arn: str = typer.Argument(..., help="ACM private certificate to renew."),
    follow: bool = typer.Option(False, "--follow", help="Find the rollout the renewal triggers and follow it."),
    state_machine_arn: StateMachineArn = None,
    stack_outputs: StackOutputs = None,
    wait: float = typer.Option(300.0, "--wait", min=1, help="Seconds to wait for the rollout execution to start."),
    timeout: float = typer.Option(1800.0, "--timeout", min=1, help="Seconds to follow the execution."),
    region: Region = None,
    endpoint_url: EndpointUrl = None,
    as_json: AsJson = False,
) -> None:
    """acm:RenewCertificate, then DescribeCertificate's RenewalSummary and Serial. With --follow,
    find the execution the renewal's event starts (newest started after the call; bounded wait)
    and follow it until it ends: exit 1 unless it SUCCEEDED (or none started within --wait)."""
    sm_arn = resolve(state_machine_arn, stack_outputs, "RolloutStateMachineArn", "--state-machine-arn",
                      as_json) if follow else None
    acm = aws_client("acm", region, endpoint_url)
    out, err = out_console(), err_console()
    result: dict[str, Any] = {"certificateArn": certificate_arn}
    before, started, after = _request_renewal(acm, certificate_arn, as_json)
    result.update({"serialBefore": before["serial"], "serial": after["serial"], "notAfter": after["notAfter"],
                   "renewalSummary": after["renewalSummary"], "serialChanged": before["serial"] != after["serial"]})
    if not as_json:
        _print_renewal(out, certificate_arn, before, after)
    code = 0
    if sm_arn is not None:
        sfn = aws_client("stepfunctions", region, endpoint_url)
        result["execution"], code = _follow_rollout(sfn, sm_arn, started, wait, timeout, as_json, err)
        if not as_json and result["execution"] and result["execution"].get("status"):
            _print_execution(out, result["execution"])
    if as_json:
        emit_json(result)
    raise typer.Exit(code)


def register(app: typer.Typer) -> None:
    """Add ``renew`` to the cert-rollout app."""
    app.command("renew")(renew)
