"""The inventory cannot make root do anything (issue 11 item 3), end to end on the local cloud.

One rollout, one certificate, seven targets. Each misconfigured item fails its own target with a
named reason and nothing is written; the healthy target is VERIFIED in the same rollout.
  /etc/shadow, another entry's backup name, ["sh", "-c", "echo hi"] as reload: refused by the
      Target model (a product rule) before any command is sent: invalid-target-settings.
  a path through a symbolic link, a directory the node's policy does not list, a reload command
      the node's policy does not list: the Target model passes them, the node's installer refuses
      them before it takes the lock, fetches the key or touches a file: node-policy-denied.
      (tests/unit/test_node_policy.py shows the node also refuses the first three when the
      inventory validation is bypassed.)
Every path of these items is under pytest's tmp_path, except /etc/shadow, which is only read
(its bytes and mode are compared before and after; the model refuses it before any SSM command).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import commands_on, install_commands_on, run_scenario, target_by_id
from tests.unit.test_node_policy import system_files_snapshot

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(420)]

MODEL_REFUSED = ("shadow-1", "backup-1", "shell-1")
NODE_REFUSED = ("symlink-1", "outside-1", "command-1")


def _files(directory: Path) -> list[dict[str, Any]]:
    return [{"path": str(directory / "fullchain.pem"), "content": "fullchain", "mode": "0644"},
            {"path": str(directory / "privkey.pem"), "content": "key", "mode": "0600"}]


@pytest.fixture(scope="module")
def refused(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("node-policy")
    real, link = tmp / "real", tmp / "link"
    real.mkdir()
    link.symlink_to(real, target_is_directory=True)
    backup, outside = tmp / "backup", tmp / "outside"
    backup.mkdir()
    outside.mkdir()
    marker = tmp / "reload-ran"
    before = system_files_snapshot()
    report, data = run_scenario({
        "name": "node-policy",
        "certificates": {"web": {"domain": "web.internal.example", "key_algorithm": "EC_prime256v1"}},
        "targets": [
            {"id": "ok-1", "certificate": "web"},
            {"id": "shadow-1", "certificate": "web", "inventory_overrides": {
                "files": [{"path": "/etc/shadow", "content": "key", "mode": "0600"}]}},
            {"id": "backup-1", "certificate": "web", "inventory_overrides": {
                "files": [{"path": str(backup / "fullchain.pem"), "content": "fullchain", "mode": "0644"},
                          {"path": str(backup / "fullchain.pem.rollout-bak"), "content": "key", "mode": "0600"}]}},
            {"id": "shell-1", "certificate": "web", "inventory_overrides": {
                "reloadCommand": ["sh", "-c", "echo hi"]}},
            {"id": "symlink-1", "certificate": "web", "inventory_overrides": {"files": _files(link)}},
            {"id": "outside-1", "certificate": "web", "inventory_overrides": {"files": _files(outside)}},
            {"id": "command-1", "certificate": "web", "inventory_overrides": {
                "reloadCommand": [sys.executable, "-c", f"open({str(marker)!r}, 'w')"]}},
        ],
        "steps": [{"renew": "web"}, {"event": "events/eventbridge/health-renewal-completed.json", "certificate": "web"}],
    })
    return {"report": report, "data": data, "before": before, "after": system_files_snapshot(),
            "real": real, "link": link, "backup": backup, "outside": outside, "marker": marker}


def test_each_refused_item_fails_its_own_target_and_the_healthy_one_is_verified(refused: dict[str, Any]) -> None:
    [entry] = refused["report"]["events"]
    by_id = target_by_id(entry)
    assert (entry["outcome"], entry["status"]) == ("PARTIAL", "FAILED"), entry
    assert by_id["ok-1"]["outcome"] == "VERIFIED", by_id["ok-1"]
    for tid in MODEL_REFUSED:
        assert (by_id[tid]["outcome"], by_id[tid]["reason"]) == ("FAILED", "invalid-target-settings"), by_id[tid]
    for tid in NODE_REFUSED:
        assert (by_id[tid]["outcome"], by_id[tid]["reason"]) == ("FAILED", "node-policy-denied"), by_id[tid]


def test_the_reason_names_the_rule(refused: dict[str, Any]) -> None:
    by_id = target_by_id(refused["report"]["events"][0])
    assert "system account" in by_id["shadow-1"]["detail"]
    assert ".rollout-" in by_id["backup-1"]["detail"]
    assert "inline shell script" in by_id["shell-1"]["detail"]
    assert "symbolic link" in by_id["symlink-1"]["detail"]
    assert "writeDirectories" in by_id["outside-1"]["detail"]
    assert "reloadCommand" in by_id["command-1"]["detail"]
    assert "not one of the node policy's commands" in by_id["command-1"]["detail"]


def test_the_model_refuses_before_any_command_and_the_node_before_any_change(refused: dict[str, Any]) -> None:
    data = refused["data"]
    for tid in MODEL_REFUSED:
        assert install_commands_on(data, tid) == [], tid
    for tid in NODE_REFUSED:
        [command] = commands_on(data, tid)  # one install, refused before any change: no restore was due
        assert command in install_commands_on(data, tid)
        invocation = command["Invocations"][0]
        line = [ln for ln in invocation["StandardOutputContent"].splitlines() if ln.startswith("ROLLOUT_RESULT ")]
        result = json.loads(line[-1][len("ROLLOUT_RESULT "):])
        assert (result["reason"], result["exitCode"], result["stage"]) == ("node-policy-denied", 19, "write")
        assert "installedSerial" not in result  # refused before the bundle was fetched


def test_nothing_is_written(refused: dict[str, Any]) -> None:
    assert refused["after"] == refused["before"]  # /etc/shadow, /etc/passwd, authorized_keys
    assert sorted(p.name for p in refused["real"].iterdir()) == []  # nothing through the link
    assert refused["link"].is_symlink()
    assert sorted(p.name for p in refused["backup"].iterdir()) == []
    assert sorted(p.name for p in refused["outside"].iterdir()) == []
    assert not refused["marker"].exists()  # the unlisted reload command never ran
    targets = refused["data"]["targets"]
    for tid in MODEL_REFUSED + NODE_REFUSED:  # each target's own files are as they were created
        assert targets[tid]["fullchain_final"] == targets[tid]["fullchain_initial"], tid
        directory = targets[tid]["directory"]
        assert sorted(p.name for p in directory.iterdir() if ".rollout-" in p.name) == [], tid
