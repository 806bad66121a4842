"""Shared by the operator-command integration tests: a module-scoped embedded local cloud with
the operator's own credentials, and the CLI options that point a command at it."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from cert_rollout.cli import app
from cert_rollout.localcloud.cloud import LocalCloud

runner = CliRunner()


@pytest.fixture(scope="module")
def cloud():
    mp = pytest.MonkeyPatch()
    mp.setenv("AWS_ACCESS_KEY_ID", "localcloud")
    mp.setenv("AWS_SECRET_ACCESS_KEY", "localcloud")
    mp.delenv("AWS_PROFILE", raising=False)
    try:
        with LocalCloud(lambda_workers=2) as c:
            yield c
    finally:
        mp.undo()


def aws(cloud: LocalCloud) -> list[str]:
    return ["--region", cloud.region, "--endpoint-url", cloud.endpoint]


def table_opts(cloud: LocalCloud) -> list[str]:
    return ["--inventory-table", cloud.outputs["InventoryTableName"], *aws(cloud)]


def run(*args: str):
    return runner.invoke(app, list(args), catch_exceptions=False)
