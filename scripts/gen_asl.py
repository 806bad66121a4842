"""Write statemachine/rollout.asl.json, the one state machine SAM deploys.

The shared Retry/Catch blocks are written once here; tests/unit/test_statemachine.py fails
when the JSON file and this script disagree. Run: .venv/bin/python scripts/gen_asl.py
"""

from __future__ import annotations

import json
from pathlib import Path

ASL_PATH = Path(__file__).resolve().parent.parent / "statemachine" / "rollout.asl.json"

LAMBDA_SERVICE_ERRORS = [
    "Lambda.ServiceException",
    "Lambda.AWSLambdaException",
    "Lambda.SdkClientException",
    "Lambda.TooManyRequestsException",
]
# Transient AWS errors, named by rollout_core.adapters.errors (ThrottlingException,
# RequestInProgressException, 5xx ...). Permanent ones (AccessDenied, NotFound ...) are not retried.
TRANSIENT_AWS_ERRORS = ["AwsThrottled", "AwsRequestInProgress", "AwsServiceUnavailable"]

RETRY_TRANSIENT = [
    {"ErrorEquals": LAMBDA_SERVICE_ERRORS, "IntervalSeconds": 1, "MaxAttempts": 3,
     "BackoffRate": 2.0, "MaxDelaySeconds": 10, "JitterStrategy": "FULL"},
    {"ErrorEquals": TRANSIENT_AWS_ERRORS, "IntervalSeconds": 2, "MaxAttempts": 5,
     "BackoffRate": 2.0, "MaxDelaySeconds": 30, "JitterStrategy": "FULL"},
]


def task(function: str, payload: dict, selector: dict, result_path: str | None, comment: str,
         next_state: str | None = None, catch: list | None = None) -> dict:
    """A lambda:invoke Task whose ResultSelector keeps only the named payload fields."""
    state: dict = {
        "Type": "Task",
        "Comment": comment,
        "Resource": "arn:aws:states:::lambda:invoke",
        "Parameters": {"FunctionName": "${" + function + "FunctionArn}", "Payload": payload},
        "ResultSelector": {f"{k}.$": f"$.Payload.{v}" for k, v in selector.items()},
        "ResultPath": result_path,
        "Retry": RETRY_TRANSIENT,
    }
    if catch:
        state["Catch"] = catch
    if next_state:
        state["Next"] = next_state
    else:
        state["End"] = True
    return state


def same(*names: str) -> dict:
    return {n: n for n in names}


def catch_all(next_state: str, result_path: str = "$.error") -> list:
    return [{"ErrorEquals": ["States.ALL"], "ResultPath": result_path, "Next": next_state}]


ITEM = {
    "targetId.$": "$.targetId",
    "certificateArn.$": "$.certificateArn",
    "rolloutId.$": "$.rolloutId",
    "expectedSerial.$": "$.expectedSerial",
}

def wait_for_command(action: str, result_path: str, next_state: str, comment: str) -> dict:
    """Send an SSM command and wait on the task token until CommandCallback reports its final
    status (no polling, no Lambda that sleeps); TimeoutSecondsPath bounds the wait."""
    state = task(
        "InstallTarget",
        {**ITEM, "action": action, "secretArn.$": "$.secretArn", "secretVersionId.$": "$.secretVersionId",
         "taskToken.$": "$$.Task.Token"},
        {},
        result_path,
        comment,
        next_state,
        [{"ErrorEquals": ["States.Timeout"], "ResultPath": "$.error", "Next": f"{action.title()}TimedOut"},
         {"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "RecordTargetOutcome"}],
    )
    state["Resource"] = "arn:aws:states:::lambda:invoke.waitForTaskToken"
    state["TimeoutSecondsPath"] = "$.taskTimeoutSeconds"
    del state["ResultSelector"]  # the output is what CommandCallback sent: {state, reason, detail, ...}
    return state


def timed_out(result_path: str) -> dict:
    return {
        "Type": "Pass",
        "Comment": "No final status from SSM within the task's deadline: the node never answered.",
        "Result": {"state": "TIMED_OUT", "reason": "command-timed-out",
                   "detail": "no final command status within the deadline"},
        "ResultPath": result_path,
        "Next": "RecordTargetOutcome",
    }


iteration = {
    "StartAt": "InstallOnTarget",
    "States": {
        "InstallOnTarget": wait_for_command(
            "install", "$.installCommand", "InstallFinished",
            "Send the install command to the target's managed node (SSM Run Command) and wait "
            "for its final status."),
        "InstallTimedOut": timed_out("$.installCommand"),
        "InstallFinished": {
            "Type": "Choice",
            "Choices": [{"Variable": "$.installCommand.state", "StringEquals": "SUCCEEDED",
                         "Next": "BeginVerification"}],
            "Default": "RecordTargetOutcome",
        },
        "BeginVerification": {
            "Type": "Pass",
            "Comment": "Writing files is never success: the target must serve the new serial.",
            "Parameters": {"since.$": "$$.State.EnteredTime"},
            "ResultPath": "$.verify",
            "Next": "VerifyTarget",
        },
        "VerifyTarget": task(
            "VerifyTarget",
            {**ITEM, "since.$": "$.verify.since"},
            same("state", "since", "servedSerial", "pollIntervalSeconds", "detail"),
            "$.verify",
            "TLS handshake with SNI: does the target serve the expected serial?",
            "Verified",
            catch_all("RecordTargetOutcome"),
        ),
        "Verified": {
            "Type": "Choice",
            "Choices": [
                {"Variable": "$.verify.state", "StringEquals": "WAITING", "Next": "WaitForReload"},
                {"Variable": "$.verify.state", "StringEquals": "NOT_SERVING",
                 "Next": "RollbackTarget"},
            ],
            "Default": "RecordTargetOutcome",
        },
        "WaitForReload": {"Type": "Wait", "SecondsPath": "$.verify.pollIntervalSeconds",
                          "Next": "VerifyTarget"},
        "RollbackTarget": wait_for_command(
            "rollback", "$.rollbackCommand", "RecordTargetOutcome",
            "The new serial is not served: restore the previous files, reload, wait for the result."),
        "RollbackTimedOut": timed_out("$.rollbackCommand"),
        "RecordTargetOutcome": {
            **task(
                "RecordOutcome",
                {"target.$": "$"},
                same("targetId", "outcome", "reason"),
                None,
                "VERIFIED, ROLLED_BACK or FAILED with a reason; recorded for the notification.",
                None,
                [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.error",
                  "Next": "OutcomeNotRecorded"}],
            ),
            "ResultPath": "$.outcome",
            "OutputPath": "$.outcome",
        },
        "OutcomeNotRecorded": {
            "Type": "Pass",
            "Comment": "The notification reports this target as FAILED (no outcome recorded).",
            "Parameters": {"targetId.$": "$.targetId", "outcome": "FAILED",
                           "reason": "outcome-not-recorded"},
            "End": True,
        },
    },
}

definition = {
    "Comment": "Roll a renewed ACM private certificate out to every target: validate the event, "
               "export, install on each target in parallel (isolated failures), verify the served "
               "serial over TLS, roll back what is not served, notify. JSONPath only.",
    "StartAt": "ValidateEvent",
    "States": {
        "ValidateEvent": task(
            "ValidateEvent",
            {"event.$": "$", "executionArn.$": "$$.Execution.Id"},
            same("decision", "certificateArn", "serial", "rolloutId", "targetIds",
                 "maxConcurrency", "taskTimeoutSeconds", "reason", "daysToExpiry", "domainName",
                 "duplicateOf"),
            "$.rollout",
            "Which certificate, which serial (DescribeCertificate decides), which targets; "
            "claim (certificate ARN, serial) once.",
            "Route",
            [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "EventRejected"}],
        ),
        "EventRejected": {
            "Type": "Pass",
            "Parameters": {"decision": "REJECTED", "rolloutId.$": "$$.Execution.Name",
                           "error.$": "$.error"},
            "ResultPath": "$.rollout",
            "Next": "Notify",
        },
        "Route": {
            "Type": "Choice",
            "Choices": [
                {"Variable": "$.rollout.decision", "StringEquals": "ROLLOUT",
                 "Next": "ExportCertificate"},
                {"Variable": "$.rollout.decision", "StringEquals": "RENEWAL_FAILED",
                 "Next": "Notify"},
                {"Variable": "$.rollout.decision", "StringEquals": "NO_TARGETS", "Next": "Notify"},
            ],
            "Default": "NothingToDo",
        },
        "NothingToDo": {
            "Type": "Succeed",
            "Comment": "ALREADY_DEPLOYED or IGNORED: a duplicate installs nothing twice.",
            "OutputPath": "$.rollout",
        },
        "ExportCertificate": task(
            "ExportCertificate",
            {"certificateArn.$": "$.rollout.certificateArn", "serial.$": "$.rollout.serial",
             "rolloutId.$": "$.rollout.rolloutId"},
            same("secretArn", "secretVersionId", "serial", "notAfter", "keyAlgorithm"),
            "$.export",
            "acm:ExportCertificate with a fresh passphrase; key decrypted and matched, chain "
            "checked, staged in Secrets Manager (KMS). Only references enter the state.",
            "InstallTargets",
            [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "ExportFailed"}],
        ),
        "ExportFailed": {
            "Type": "Pass",
            "Parameters": {"decision": "EXPORT_FAILED", "rolloutId.$": "$.rollout.rolloutId",
                           "certificateArn.$": "$.rollout.certificateArn",
                           "serial.$": "$.rollout.serial", "domainName.$": "$.rollout.domainName",
                           "error.$": "$.error"},
            "ResultPath": "$.rollout",
            "Next": "Notify",
        },
        "InstallTargets": {
            "Type": "Map",
            "Comment": "Every target in parallel; each iteration catches its own failure.",
            "ItemsPath": "$.rollout.targetIds",
            "ItemSelector": {
                "targetId.$": "$$.Map.Item.Value",
                "certificateArn.$": "$.rollout.certificateArn",
                "rolloutId.$": "$.rollout.rolloutId",
                "expectedSerial.$": "$.export.serial",
                "secretArn.$": "$.export.secretArn",
                "secretVersionId.$": "$.export.secretVersionId",
                "taskTimeoutSeconds.$": "$.rollout.taskTimeoutSeconds",
            },
            "MaxConcurrencyPath": "$.rollout.maxConcurrency",
            "ItemProcessor": {"ProcessorConfig": {"Mode": "INLINE"}, **iteration},
            "ResultPath": None,
            "Next": "Notify",
        },
        "Notify": task(
            "Notify",
            {"rollout.$": "$.rollout"},
            same("outcome", "rolloutId", "certificateArn", "expectedSerial", "targetCount",
                 "verified", "rolledBack", "failed", "messageId"),
            "$.notification",
            "One SNS message with every target's outcome.",
            "Succeeded?",
            [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "NotificationFailed"}],
        ),
        "NotificationFailed": {"Type": "Fail", "Error": "NotificationFailed",
                               "Cause": "The rollout ran but its SNS notification could not be published; "
                                        "see the Notify task failure and the RolloutTable records."},
        "Succeeded?": {
            "Type": "Choice",
            "Choices": [
                {"Variable": "$.notification.outcome", "StringEquals": "ROLLED_OUT",
                 "Next": "RolloutComplete"},
                {"Variable": "$.notification.outcome", "StringEquals": "RENEWAL_FAILED",
                 "Next": "RolloutComplete"},
                {"Variable": "$.notification.outcome", "StringEquals": "NO_TARGETS",
                 "Next": "RolloutComplete"},
                {"Variable": "$.notification.outcome", "StringEquals": "REJECTED",
                 "Next": "EventNotAccepted"},
            ],
            "Default": "RolloutFailed",
        },
        "RolloutComplete": {"Type": "Succeed", "OutputPath": "$.notification"},
        "EventNotAccepted": {"Type": "Fail", "Error": "EventRejected",
                             "Cause": "The event was rejected; see the ValidateEvent task failure and the notification."},
        "RolloutFailed": {"Type": "Fail", "Error": "RolloutFailed",
                          "Cause": "At least one target does not serve the new serial; see the notification."},
    },
}


def render() -> str:
    return json.dumps(definition, indent=2) + "\n"


if __name__ == "__main__":
    ASL_PATH.write_text(render())
    print(f"wrote {ASL_PATH}")
