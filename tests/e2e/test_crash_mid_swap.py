"""Target fault crash-mid-swap (issue 10, item 8): the installer is killed after the first file
of the target's set is replaced. The target ends FAILED or ROLLED_BACK with a named reason, keeps
serving the old certificate (the reload never ran), the interrupted change is rolled back by the
next command on that node before anything else, and the following rollout is VERIFIED on it.
The leak check (run by run_scenario) covers the files left on the nodes: no staged key survives."""

from __future__ import annotations

import json
from typing import Any

import pytest

from .conftest import commands_on, run_scenario, target_by_id

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]


@pytest.fixture(scope="module")
def crash() -> dict[str, Any]:
    report, data = run_scenario("crash-mid-swap.yaml")
    first, second = report["events"]
    return {"report": report, "data": data, "first": target_by_id(first), "second": target_by_id(second),
            "entries": (first, second), "initial": report["certificates"]["web"]["serial_initial"],
            "final": report["certificates"]["web"]["serial_final"]}


def _results(data: dict[str, Any], target_id: str) -> list[dict[str, Any]]:
    """The installer's ROLLOUT_RESULT of every command (install or rollback) on the target's node, in order."""
    out = []
    for command in commands_on(data, target_id):
        for invocation in command["Invocations"]:
            lines = [ln for ln in str(invocation.get("StandardOutputContent", "")).splitlines()
                     if ln.startswith("ROLLOUT_RESULT ")]
            out.append(json.loads(lines[-1][len("ROLLOUT_RESULT "):]) if lines else {})
    return out


def test_the_killed_install_ends_with_a_named_reason(crash: dict[str, Any]) -> None:
    t = crash["first"]["crash-1"]
    assert t["outcome"] in ("FAILED", "ROLLED_BACK"), t
    assert t["reason"], t
    assert "installer-killed" in (t["detail"] or ""), t  # the bootstrap's line for the killed installer
    assert crash["first"]["healthy-1"]["outcome"] == "VERIFIED"
    assert crash["entries"][0]["outcome"] == "PARTIAL"


def test_the_old_certificate_stays_served_and_the_next_rollout_is_verified(crash: dict[str, Any]) -> None:
    t = crash["second"]["crash-1"]
    # what the target served before the next rollout's install: the initial (old) certificate
    assert t["served_serial_before"] == crash["initial"], t
    assert t["outcome"] == "VERIFIED", t
    assert t["served_serial_after"] == crash["final"]
    assert crash["data"]["targets"]["crash-1"]["served_serial_final"] == crash["final"]
    assert crash["entries"][1]["outcome"] == "ROLLED_OUT"


def test_the_next_command_on_the_node_rolled_the_interrupted_change_back_first(crash: dict[str, Any]) -> None:
    results = _results(crash["data"], "crash-1")
    killed, restore, *later = results
    assert killed.get("reason") == "installer-killed", killed
    # A killed installer may have changed files (domain/ssm_status.py INSTALLER_REASONS), so the
    # rollout's RollbackTarget runs next on that node: it finds the interrupted change first and
    # reverts it (the journal's pre-image), which is the restore.
    assert restore.get("action") == "rollback", restore
    assert restore.get("recovered", {}).get("result") == "reverted", restore
    assert restore["recovered"]["action"] == "install" and restore["recovered"]["pairCheck"] == "ok"
    assert not [r for r in later if r.get("recovered")], later  # nothing left to recover later
    assert later[-1]["status"] == "ok" and later[-1]["installedSerial"] == crash["final"]


def test_no_staged_file_or_journal_is_left_on_the_node(crash: dict[str, Any]) -> None:
    directory = crash["data"]["targets"]["crash-1"]["directory"]
    assert sorted(p.name for p in directory.iterdir() if ".rollout-" in p.name) == []
    surfaces = crash["report"]["leak_check"]["scanned"]
    assert surfaces.get("node_files", 0) >= 1  # the nodes' state files were scanned
    assert crash["report"]["leak_check"]["findings"] == []
