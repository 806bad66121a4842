"""`cert-rollout demo`: the main job, shown on the embedded local cloud (needs the [local] extra)."""

from __future__ import annotations

import typer

from cert_rollout.commands.common import ReportPath, require_local
from cert_rollout.commands.local import run_scenario


def demo(targets: int = typer.Option(3, "--targets", min=1, max=200, help="How many TLS targets serve the certificate."),
         report: ReportPath = None,
         history: bool = typer.Option(False, "--history", help="Also print the execution history table (every event).")) -> None:
    """Private CA, one certificate with two SANs on N local targets, renewed; the Health event
    goes through the rule; the rollout is followed live. Exit 0 only when every target serves
    the new serial."""
    require_local("demo")
    from cert_rollout.localcloud.scenario import demo_scenario

    raise typer.Exit(run_scenario(demo_scenario(targets), report, history))


def register(app: typer.Typer) -> None:
    """Add ``demo`` to the cert-rollout app."""
    app.command("demo")(demo)
