"""D3: SSM command invocation status classification."""

from __future__ import annotations

import pytest
from rollout_core.domain.errors import UnknownCommandStatus
from rollout_core.domain.ssm_status import CommandState, classify_invocation, is_transient_invocation_error


@pytest.mark.parametrize(
    ("status", "details"),
    [("Pending", "Pending"), ("InProgress", "In Progress"), ("Delayed", "Delayed"), ("Pending", None)],
)
def test_pending_in_progress_and_delayed_are_not_terminal(status: str, details: str | None) -> None:
    state = classify_invocation(status, details, -1)
    assert state is CommandState.PENDING
    assert not state.terminal


def test_success_is_success() -> None:
    assert classify_invocation("Success", "Success", 0) is CommandState.SUCCEEDED


def test_missing_response_code_is_not_a_failure() -> None:
    assert classify_invocation("Success", "Success", None) is CommandState.SUCCEEDED
    assert classify_invocation("Success", None, None) is CommandState.SUCCEEDED


def test_response_code_minus_one_with_success_stays_success() -> None:
    assert classify_invocation("Success", "Success", -1) is CommandState.SUCCEEDED


def test_failed_is_command_failed() -> None:
    assert classify_invocation("Failed", "Failed", 1) is CommandState.FAILED
    assert classify_invocation("Failed", "Failed", None) is CommandState.FAILED


@pytest.mark.parametrize(
    ("status", "details"),
    [
        ("TimedOut", "Delivery Timed Out"),
        ("TimedOut", "Execution Timed Out"),
        ("Failed", "Execution Timed Out"),
        ("TimedOut", None),
        ("TimedOut", "TimedOut"),
        ("DeliveryTimedOut", None),
        ("ExecutionTimedOut", None),
    ],
)
def test_delivery_and_execution_timeouts_are_timed_out(status: str, details: str | None) -> None:
    assert classify_invocation(status, details, -1) is CommandState.TIMED_OUT


@pytest.mark.parametrize(
    ("status", "details"),
    [("Failed", "Undeliverable"), ("Failed", "Terminated"), ("Undeliverable", None), ("Terminated", None)],
)
def test_undeliverable_and_terminated_are_undeliverable_not_command_failed(
    status: str, details: str | None
) -> None:
    assert classify_invocation(status, details, -1) is CommandState.UNDELIVERABLE


@pytest.mark.parametrize(
    ("status", "details"),
    [("Cancelled", "Canceled"), ("Cancelling", "Cancelling"), ("Cancelled", None), ("Canceled", None)],
)
def test_cancelled_and_cancelling_are_cancelled(status: str, details: str | None) -> None:
    assert classify_invocation(status, details, -1) is CommandState.CANCELLED


def test_every_state_but_pending_is_terminal() -> None:
    assert {s for s in CommandState if s.terminal} == set(CommandState) - {CommandState.PENDING}


def test_timed_out_is_distinct_from_command_failed() -> None:
    assert classify_invocation("TimedOut", "Execution Timed Out", -1) is not classify_invocation(
        "Failed", "Failed", 1
    )


def test_matching_ignores_case_spaces_and_underscores() -> None:
    assert classify_invocation("IN_PROGRESS", "in progress", None) is CommandState.PENDING
    assert classify_invocation("success", None, None) is CommandState.SUCCEEDED


def test_unknown_status_raises_naming_it() -> None:
    with pytest.raises(UnknownCommandStatus, match="Exploded"):
        classify_invocation("Exploded", None, None)


def test_invocation_does_not_exist_is_transient() -> None:
    assert is_transient_invocation_error("InvocationDoesNotExist")
    assert not is_transient_invocation_error("InvalidInstanceId")
    assert not is_transient_invocation_error(None)


def test_state_values_are_strings_for_json_state() -> None:
    assert CommandState.TIMED_OUT == "TIMED_OUT"


def test_installer_reasons_name_whether_files_may_have_changed() -> None:
    from rollout_core.domain.ssm_status import INSTALLER_REASONS, installer_reason

    assert installer_reason({"reason": "older-than-installed", "exitCode": 17}) == ("older-than-installed", False)
    assert installer_reason({"reason": "lock-timeout"}) == ("lock-timeout", False)
    assert installer_reason({"reason": "installer-killed"}) == ("installer-killed", True)
    assert installer_reason(None) == (None, True)  # no result line: the command died
    assert installer_reason({"stage": "reload", "error": "x"}) == (None, False)
    assert installer_reason({"reason": "made-up"}) == (None, False)
    # every reason the installer and its bootstrap can write is known here
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    text = (root / "installer" / "install_bundle.py").read_text() + (
        root / "documents" / "install-bundle.ssm.yaml").read_text()
    written = set(re.findall(r'reason="([a-z-]+)"', text)) | set(re.findall(r'"(installer-[a-z-]+)"', text))
    assert written <= set(INSTALLER_REASONS), written - set(INSTALLER_REASONS)
    assert {"lock-timeout", "older-than-installed", "installer-killed"} <= written
