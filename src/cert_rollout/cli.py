"""cert-rollout: the operator's command line (tools for real AWS, and local cloud runs).

The app is assembled here from the command modules (cert_rollout.commands.*, one per command
group); importing it loads no local-cloud code, so the operator commands run with the base
dependencies only.
"""

from __future__ import annotations

import typer

from cert_rollout.commands import bench, check, demo, history, invoke, local, nodes, renew, status, targets

app = typer.Typer(add_completion=False, no_args_is_help=True, rich_markup_mode="markdown",
                  help="Roll renewed ACM private certificates out to the servers they were exported to.")

# The order of `cert-rollout --help`.
for command_group in (demo, local, invoke, check, history, renew, status, targets, nodes, bench):
    command_group.register(app)


def main() -> None:
    """The ``cert-rollout`` console script (pyproject.toml [project.scripts])."""
    app()


if __name__ == "__main__":
    main()
