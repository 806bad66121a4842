"""files_changed (logic/commands.py) reads the installer's named failures (domain/ssm_status.py
INSTALLER_REASONS): a killed installer may have changed files (restore attempted), a refusal
before the swap did not (no restore)."""

import pytest
from rollout_core.domain.ssm_status import INSTALLER_REASONS, CommandState
from rollout_core.logic.commands import files_changed


@pytest.mark.parametrize("reason", sorted(INSTALLER_REASONS))
def test_every_named_installer_failure_decides_whether_files_may_have_changed(reason: str) -> None:
    result = {"status": "failed", "stage": "installer", "reason": reason}
    expected = "unknown" if INSTALLER_REASONS[reason] else "no"
    assert files_changed("install", CommandState.FAILED, result, "Failed") == expected


def test_killed_installer_is_restored_and_bootstrap_failure_is_not() -> None:
    killed = {"stage": "installer", "reason": "installer-killed"}
    unavailable = {"stage": "installer", "reason": "installer-unavailable"}
    assert files_changed("install", CommandState.FAILED, killed, "Failed") == "unknown"
    assert files_changed("install", CommandState.FAILED, unavailable, "Failed") == "no"
