"""cert-rollout: the operator's command line (tools for real AWS, and local cloud runs).

The app is assembled here from the command modules (cert_rollout.commands.*, one per command
group); importing it loads no local-cloud code, so the operator commands run with the base
dependencies only.
"""

from __future__ import annotations

from typing import Any

import typer
from typer import _click as click  # typer 0.29 runs on its own vendored click: its Context, its options
from typer.core import TyperArgument, TyperGroup, TyperOption

from cert_rollout.commands import (
    bench,
    check,
    demo,
    history,
    invoke,
    local,
    nodes,
    renew,
    rollouts,
    status,
    targets,
)

JSON_FLAG = "--json"


class CertRolloutGroup(TyperGroup):
    """The app's click group: an AWS error that reaches it from any command (boto3 finding no
    region or credentials when a client is made or a call signed, an endpoint that does not
    answer, ...) ends the command with one line and exit 2 (commands.common.fail), never a
    traceback; as JSON when the command line has --json."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        ctx.meta["cert_rollout.as_json"] = JSON_FLAG in args
        return super().parse_args(ctx, args)

    def invoke(self, ctx: click.Context) -> Any:
        from botocore.exceptions import BotoCoreError, ClientError
        from rollout_core.adapters.errors import AwsError

        from cert_rollout.commands.common import aws_error, fail

        try:
            return super().invoke(ctx)
        except (BotoCoreError, ClientError, AwsError) as e:
            fail(aws_error(e), 2, bool(ctx.meta.get("cert_rollout.as_json")))


# Help text as an operator reads it (tests/integration/test_cli_messages.py): typer 0.29's rich help
# writes a type after every option, flags too (`--json <bool>`, `--help <bool>`), and a required
# argument in braces in the usage line (`{HOST:PORT}`). A flag takes no value, so it shows none;
# an argument shows its name (click's own usage form).
_option_type = TyperOption.display_type_rich


def _flag_shows_no_type(self: TyperOption, ctx: click.Context) -> str | None:
    return None if self.is_flag or self.count else _option_type(self, ctx)


def _argument_usage_name(self: TyperArgument) -> str:
    name = self.display_name_raw if self.required else f"[{self.display_name_raw}]"
    return name + ("..." if self.nargs != 1 else "")


TyperOption.display_type_rich = _flag_shows_no_type  # type: ignore[method-assign]
TyperArgument._usage_display_name = _argument_usage_name  # type: ignore[method-assign]

app = typer.Typer(cls=CertRolloutGroup, add_completion=False, no_args_is_help=True, rich_markup_mode="markdown",
                  help="Roll renewed ACM private certificates out to the servers they were exported to.")

# The order of `cert-rollout --help`.
for command_group in (demo, local, invoke, check, rollouts, history, renew, status, targets, nodes, bench):
    command_group.register(app)


def main() -> None:
    """The ``cert-rollout`` console script (pyproject.toml [project.scripts])."""
    app()


if __name__ == "__main__":
    main()
