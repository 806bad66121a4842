"""`cert-rollout invoke FUNCTION -e EVENT`: one function of template.yaml on a sample event, like
`sam local invoke`, without Docker (cert_rollout.localcloud.invoke; needs the [local] extra)."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from cert_rollout.commands.common import AsJson, emit_json, err_console, fail, out_console, require_local


def invoke(
    function: str = typer.Argument(..., help="Logical id in template.yaml, e.g. ValidateEventFunction."),
    event: Path = typer.Option(..., "-e", "--event", exists=True, dir_okay=False, help="Event JSON file (events/*.json)."),
    parameter_overrides: list[str] | None = typer.Option(
        None, "--parameter-overrides", help="Template parameter K=V (repeatable, or 'A=1 B=2')."),
    region: str | None = typer.Option(None, "--region", help="Region of the local cloud (default eu-west-1)."),
    as_json: AsJson = False,
) -> None:
    """Run one function of template.yaml on a sample event, like `sam local invoke`, without Docker.

    The real handler runs with the function's own template environment against an embedded
    local cloud (moto) with template.yaml deployed in it, seeded with what the event names:
    each ACM certificate ARN in it becomes a real private certificate under that ARN, each
    targetId / targetIds entry an embedded TLS target in the inventory. Resources the event only
    references (a secret version, an SSM command id) are not created: the function then answers
    its named error, as in AWS. E.g. ValidateEventFunction on events/validate_event.json
    decides NO_TARGETS (the event's certificate exists, its event names no target). Prints the
    function's log lines and its response; exit 1 on a function error.
    """
    require_local("invoke")
    from cert_rollout.localcloud.invoke import InvokeError, invoke_function, parse_overrides

    try:
        payload = event.read_bytes()
        json.loads(payload or b"{}")
    except (OSError, ValueError) as e:
        fail(f"event {event}: not JSON: {e}", 2, as_json)
    try:
        overrides = parse_overrides(parameter_overrides)
        err = err_console()
        if as_json:
            result = invoke_function(function, payload, overrides, region)
        else:
            with err.status(f"Starting the local cloud and invoking {function}..."):
                result = invoke_function(function, payload, overrides, region)
    except InvokeError as e:
        fail(str(e), 2, as_json)
    if as_json:
        emit_json(result.to_dict())
    else:
        out = out_console()
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


def register(app: typer.Typer) -> None:
    """Add ``invoke`` to the cert-rollout app."""
    app.command("invoke")(invoke)
