"""cert-rollout: the operator's command line (local cloud runs, and tools for real AWS)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape

app = typer.Typer(add_completion=False, no_args_is_help=True, rich_markup_mode="markdown",
                  help="Roll renewed ACM private certificates out to the servers they were exported to.")
local_app = typer.Typer(no_args_is_help=True, help="Run scenarios on the embedded local cloud (no AWS account).")
app.add_typer(local_app, name="local")
# emoji=False: serials such as "fe:ab:b6" must never render as ":ab:" emoji.
console = Console(width=None if sys.stdout.isatty() else 160, emoji=False)
err = Console(stderr=True, emoji=False)


class _Progress:
    """Live per-target progress, read from the execution history as events appear."""

    def __init__(self) -> None:
        self.last: dict[str, str] = {}

    def __call__(self, arn: str, event: dict[str, Any]) -> None:
        entered = event.get("stateEnteredEventDetails")
        if entered:
            try:
                data = json.loads(entered.get("input") or "{}")
            except json.JSONDecodeError:
                data = {}
            target = data.get("targetId") if isinstance(data, dict) else None
            name = entered.get("name", "")
            if target:
                if self.last.get(target) != name:
                    self.last[target] = name
                    console.print(f"  [dim]{event['timestamp']:%H:%M:%S}[/] {target:<12} {name}")
            else:
                console.print(f"  [dim]{event['timestamp']:%H:%M:%S}[/] {'execution':<12} {name}")
        exited = event.get("stateExitedEventDetails")
        if exited and exited.get("name") == "RecordTargetOutcome":
            try:
                out = json.loads(exited.get("output") or "{}")
                console.print(f"  [dim]{event['timestamp']:%H:%M:%S}[/] {escape(str(out.get('targetId', ''))):<12} "
                              f"[bold]{escape(str(out.get('outcome')))}[/] {escape(out.get('reason') or '')}")
            except json.JSONDecodeError:
                pass
        if event["type"] in ("ExecutionSucceeded", "ExecutionFailed"):
            console.print(f"  [dim]{event['timestamp']:%H:%M:%S}[/] {'execution':<12} {event['type']}")


def _run(scenario: Any, report_path: Path | None, history: bool) -> int:
    from cert_rollout import report as reporting
    from cert_rollout.localcloud.deploy import DeployError
    from cert_rollout.scenario import ScenarioError, ScenarioRunner

    runner = ScenarioRunner(scenario, on_event=_Progress(),
                            on_step=lambda m: console.print(f"[cyan]>[/] {escape(m)}"))
    try:
        result = runner.run(keep_running=True)
        reporting.finalize(result, runner.cloud)
    except (ScenarioError, DeployError) as e:
        err.print(f"[red]scenario error:[/] {escape(str(e))}")
        return 2
    finally:
        runner.close()
    reporting.render(result, console, show_history=history)
    if report_path:
        reporting.write(result, report_path)
        console.print(f"Report written to {report_path}")
    from cert_rollout.scenario import step_as_expected

    unexpected = [e for e in result["events"] if not step_as_expected(e)]
    for e in unexpected:
        err.print(escape(f"step {e['step']}: outcome {e['outcome']}, expected {e.get('expect') or 'ROLLED_OUT'}"))
    return 0 if not unexpected and not result["leak_check"]["findings"] else 1


@app.command()
def demo(targets: int = typer.Option(3, "--targets", min=1, max=200, help="How many TLS targets serve the certificate."),
         report: Path | None = typer.Option(None, "--report", help="Write the JSON report here."),
         history: bool = typer.Option(True, "--history/--no-history", help="Print the execution history table.")) -> None:
    """Private CA, one certificate with two SANs on N local targets, renewed; the Health event
    goes through the rule; the rollout is followed live. Exit 0 only when every target serves
    the new serial."""
    from cert_rollout.scenario import demo_scenario

    raise typer.Exit(_run(demo_scenario(targets), report, history))


@local_app.command("run")
def local_run(scenario: Path = typer.Argument(..., exists=True, dir_okay=False, help="Scenario YAML file."),
              report: Path | None = typer.Option(None, "--report", help="Write the JSON report here."),
              history: bool = typer.Option(True, "--history/--no-history")) -> None:
    """Run a scenario file on the local cloud. Exit 0 when every event step ends as its
    `expect:` says (default: ROLLED_OUT for a rollout) and the leak check is clean."""
    from cert_rollout.scenario import Scenario, ScenarioError

    try:
        loaded = Scenario.load(scenario)
    except ScenarioError as e:
        err.print(f"[red]scenario error:[/] {escape(str(e))}")
        raise typer.Exit(2) from None
    raise typer.Exit(_run(loaded, report, history))


from cert_rollout.bench import register_bench  # noqa: E402  (commands defined in their own modules)
from cert_rollout.ops import register  # noqa: E402

register(app)  # operator commands: targets, check, history, renew, invoke, status
register_bench(app)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
