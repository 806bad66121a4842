"""NotifyAbnormalEnd (logic/abnormal_end.py) on the fakes: every execution that ends FAILED,
TIMED_OUT or ABORTED is notified exactly once, naming the execution, the certificate and why;
an end Notify already reported is not notified again (issue 10, item 7)."""

from __future__ import annotations

from typing import Any

import pytest
from rollout_core.adapters.errors import AwsServiceUnavailable
from rollout_core.contracts import ExecutionStatusChange, RolloutState
from rollout_core.logic.abnormal_end import (
    AbnormalEnd,
    AbnormalEndHookFailed,
    ForeignExecution,
    certificate_of,
    notify_abnormal_end,
)
from rollout_core.logic.notify import notify

from tests.fakes.world import ARN, ROLLOUT_ID, World, world

STATE_MACHINE = "arn:aws:states:eu-west-1:123456789012:stateMachine:CertRollout"
EXECUTION = "arn:aws:states:eu-west-1:123456789012:execution:CertRollout:rollout-1"
HEALTH_INPUT = {"source": "aws.health", "detail-type": "AWS Health Event", "resources": [ARN],
                "detail": {"service": "ACM", "eventTypeCode": "AWS_ACM_RENEWAL_STATE_CHANGE",
                           "affectedEntities": [{"entityValue": ARN}]}}


def change(status: str, state_machine: str = STATE_MACHINE) -> ExecutionStatusChange:
    return ExecutionStatusChange.model_validate({
        "source": "aws.states", "detail-type": "Step Functions Execution Status Change",
        "detail": {"executionArn": EXECUTION, "stateMachineArn": state_machine, "name": ROLLOUT_ID,
                   "status": status}})


def run(w: World, status: str, **kwargs: Any) -> Any:
    return notify_abnormal_end(change(status), state_machine_arn=STATE_MACHINE, executions=w.executions,
                               records=w.records, notifications=w.notifications, **kwargs)


@pytest.fixture
def w() -> World:
    return world()


def test_an_aborted_execution_is_notified_once_naming_execution_certificate_and_why(w: World) -> None:
    w.executions.add(EXECUTION, "ABORTED", {"certificateArn": ARN, "force": True})
    result = run(w, "ABORTED")
    assert (result.published, result.certificateArn, result.messageId) == (True, ARN, "message-1")
    [message] = w.notifications.messages
    assert message["subject"] == "[EXECUTION_ABORTED] certificate rollout rollout-1"
    assert EXECUTION in message["message"] and ARN in message["message"]
    assert "stopped (StopExecution)" in message["message"]
    assert message["attributes"] == {"outcome": "EXECUTION_ABORTED", "certificateArn": ARN, "rolloutId": ROLLOUT_ID,
                                     "executionArn": EXECUTION}
    # a redelivered event (EventBridge, Lambda's async retries) publishes nothing more
    again = run(w, "ABORTED")
    assert (again.published, again.alreadyNotifiedBy) == (False, "NotifyAbnormalEnd")
    assert len(w.notifications.messages) == 1


def test_a_failed_rollout_that_notify_reported_is_not_notified_twice(w: World) -> None:
    notify(RolloutState.model_validate({"decision": "EXPORT_FAILED", "certificateArn": ARN, "rolloutId": ROLLOUT_ID,
                                        "error": {"Error": "AwsPermanentError", "Cause": "denied"}}),
           records=w.records, notifications=w.notifications, staging=w.staging, secret_prefix="acm-cert-rollout")
    w.executions.add(EXECUTION, "FAILED", HEALTH_INPUT, error="RolloutFailed", cause="see the notification")
    result = run(w, "FAILED")
    assert (result.published, result.alreadyNotifiedBy) == (False, "Notify")
    assert len(w.notifications.messages) == 1


def test_a_runtime_failure_is_notified_with_its_error_and_cause(w: World) -> None:
    w.executions.add(EXECUTION, "FAILED", HEALTH_INPUT, error="States.Runtime",
                     cause="An error occurred while executing the state 'Route'")
    result = run(w, "FAILED")
    assert result.published and result.certificateArn == ARN
    body = w.notifications.messages[0]["message"]
    assert "States.Runtime: An error occurred while executing the state 'Route'" in body


def test_timed_out_is_notified(w: World) -> None:
    w.executions.add(EXECUTION, "TIMED_OUT", HEALTH_INPUT)
    assert run(w, "TIMED_OUT").published
    assert "TimeoutSeconds" in w.notifications.messages[0]["message"]


def test_a_succeeded_execution_publishes_nothing(w: World) -> None:
    w.executions.add(EXECUTION, "SUCCEEDED", HEALTH_INPUT)
    result = run(w, "FAILED")  # the event said FAILED; Step Functions has the last word
    assert not result.published and w.notifications.messages == [] and w.records.markers == {}


def test_another_state_machines_execution_is_refused_by_name(w: World) -> None:
    with pytest.raises(ForeignExecution):
        notify_abnormal_end(change("FAILED", STATE_MACHINE + "-other"), state_machine_arn=STATE_MACHINE,
                            executions=w.executions, records=w.records, notifications=w.notifications)
    assert w.notifications.messages == []


def test_a_failed_publish_releases_the_marker_so_the_retry_publishes(w: World, monkeypatch: pytest.MonkeyPatch) -> None:
    w.executions.add(EXECUTION, "ABORTED", HEALTH_INPUT)
    publish = w.notifications.publish

    def unavailable(subject: str, message: str, attributes: Any) -> str:
        raise AwsServiceUnavailable("Publish", "InternalError", "try again")

    monkeypatch.setattr(w.notifications, "publish", unavailable)
    with pytest.raises(AwsServiceUnavailable):
        run(w, "ABORTED")
    assert w.records.markers == {}
    monkeypatch.setattr(w.notifications, "publish", publish)
    assert run(w, "ABORTED").published and len(w.notifications.messages) == 1


def test_on_abnormal_end_callbacks_run_and_a_failing_one_is_retried_after_the_notification(w: World) -> None:
    w.executions.add(EXECUTION, "ABORTED", HEALTH_INPUT)
    seen: list[AbnormalEnd] = []

    def release_lease(end: AbnormalEnd) -> None:
        seen.append(end)
        if len(seen) == 1:
            raise RuntimeError("lease table throttled")

    with pytest.raises(AbnormalEndHookFailed):
        run(w, "ABORTED", on_abnormal_end=[release_lease])
    assert len(w.notifications.messages) == 1
    run(w, "ABORTED", on_abnormal_end=[release_lease])  # Lambda's retry: the callback again, no second message
    assert [(e.rollout_id, e.status, e.certificate_arn) for e in seen] == [(ROLLOUT_ID, "ABORTED", ARN)] * 2
    assert len(w.notifications.messages) == 1


@pytest.mark.parametrize(("execution_input", "expected"), [
    ({"certificateArn": ARN, "force": True}, ARN),
    (HEALTH_INPUT, ARN),
    ({"garbage": f"something about {ARN}"}, ARN),  # a rejected event still names its certificate
    ({"nothing": "here"}, None),
    (None, None),
])
def test_certificate_of_an_execution_input(execution_input: Any, expected: str | None) -> None:
    assert certificate_of(execution_input, EXECUTION) == expected
