"""`cert-rollout local run SCENARIO`: a scenario file on the embedded local cloud, followed live,
with its report and leak check (cert_rollout.localcloud; needs the [local] extra). Also the
runner `cert-rollout demo` shares (run_scenario)."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.console import Console
from rich.markup import escape

from cert_rollout.commands.common import ReportPath, require_local
from cert_rollout.render import PhaseGroups, console_for

if TYPE_CHECKING:
    from cert_rollout.localcloud.scenario import Scenario

local_app = typer.Typer(no_args_is_help=True, help="The embedded local cloud (no AWS account): run a scenario, or keep one up for the operator commands.")
# The terminal's width, or render.PIPE_WIDTH through a pipe; no emoji (render.console_for).
console = console_for()
err = Console(stderr=True, emoji=False, soft_wrap=True)  # an error is one line, whatever the width


def print_step(out: Console, message: str) -> None:
    """A scenario step's line ("> ACM renewed web: new serial ..."), wrapped at spaces only: a
    serial moves whole to the next line rather than break."""
    out.print(f"[cyan]>[/] {escape(message)}", highlight=False)


class Progress:
    """Live per-target progress on ``out``, read from the execution history as events appear:
    one line each time targets' phase in words changes, the targets that reach it together on
    one line (cert_rollout.render.PhaseGroups). A group is printed when the next change does
    not join it, or ``window`` seconds after it began (a timer: an install can be quiet for a
    while); call ``flush`` at the end."""

    def __init__(self, out: Console, window: float = 2.0) -> None:
        self.out = out
        self.groups = PhaseGroups(width=12, window=window)
        self.window = window
        self.lock = threading.Lock()
        self.timer: threading.Timer | None = None

    def _print(self, lines: list[str]) -> None:
        for line in lines:
            self.out.print("  " + escape(line), soft_wrap=True, highlight=False)

    def __call__(self, arn: str, event: dict[str, Any]) -> None:
        """Show what ``event`` (of execution ``arn``) changes."""
        with self.lock:
            self._print(self.groups.add(event))
            if self.groups.pending and self.timer is None:
                self.timer = threading.Timer(self.window + 0.25, self.flush)
                self.timer.daemon = True
                self.timer.start()

    def flush(self) -> None:
        """Print the pending group now."""
        with self.lock:
            if self.timer is not None:
                self.timer.cancel()  # a no-op when the timer itself calls
            self.timer = None
            self._print(self.groups.flush())


def run_scenario(scenario: Scenario, report_path: Path | None, history: bool) -> int:
    """Run ``scenario`` on a fresh local cloud, print its report (and write it to
    ``report_path``); the exit code: 0 when every event step ends as expected and the leak check
    is clean, 1 otherwise, 2 on a scenario or deploy error."""
    from cert_rollout.localcloud import report as reporting
    from cert_rollout.localcloud.deploy import DeployError
    from cert_rollout.localcloud.scenario import ScenarioError, ScenarioRunner, step_as_expected

    progress = Progress(console)
    runner = ScenarioRunner(scenario, on_event=progress, on_step=lambda m: print_step(console, m))
    try:
        result = runner.run(keep_running=True)
        reporting.finalize(result, runner.cloud)
    except (ScenarioError, DeployError) as e:
        err.print(f"[red]scenario error:[/] {escape(str(e))}")
        return 2
    finally:
        progress.flush()
        runner.close()
    if report_path:
        reporting.write(result, report_path)
    reporting.render(result, console, show_history=history, written_to=report_path)
    unexpected = [step for step in result["events"] if not step_as_expected(step)]
    for step in unexpected:
        err.print(escape(f"step {step['step']}: outcome {step['outcome']}, expected {step.get('expect') or 'ROLLED_OUT'}"))
    return 0 if not unexpected and not result["leak_check"]["findings"] else 1


@local_app.command("run")
def local_run(scenario: Path = typer.Argument(..., exists=True, dir_okay=False, help="Scenario YAML file."),
              report: ReportPath = None,
              history: bool = typer.Option(False, "--history",
                                           help="Also print each execution's history table (every event) "
                                                "before the summary.")) -> None:
    """Run a scenario file on the local cloud. Exit 0 when every event step ends as its
    `expect:` says (default: ROLLED_OUT for a rollout) and the leak check is clean.

    The scenario format (certificates, targets, steps) is documented at the top of
    src/cert_rollout/localcloud/scenario.py; examples are in tests/e2e/scenarios/ (README, "The
    local cloud")."""
    require_local("local run")
    from cert_rollout.localcloud.scenario import Scenario, ScenarioError

    try:
        loaded = Scenario.load(scenario)
    except ScenarioError as e:
        err.print(f"[red]scenario error:[/] {escape(str(e))}")
        raise typer.Exit(2) from None
    raise typer.Exit(run_scenario(loaded, report, history))


def register(app: typer.Typer) -> None:
    """Add the ``local`` group (run; up, env, down: commands/local_up.py) to the cert-rollout app."""
    from cert_rollout.commands import local_up

    local_up.register(local_app)
    app.add_typer(local_app, name="local")
