"""Step Functions adapters: complete a waiting task with its token, and describe an execution
(ports rollout_core/ports.py TaskCallbacks, Executions)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from rollout_core.adapters.aws import client as cached_client
from rollout_core.adapters.errors import named_aws_error
from rollout_core.ports import ExecutionDescription

# SendTaskSuccess errors meaning the task no longer waits (Step Functions API reference).
TASK_GONE_CODES = frozenset({"TaskTimedOut", "InvalidToken", "TaskDoesNotExist"})


class StepFunctionsCallbacks:
    """Step Functions through one boto3 client (default the cached process-wide one)."""

    def __init__(self, stepfunctions: Any | None = None) -> None:
        self._sfn = stepfunctions if stepfunctions is not None else cached_client("stepfunctions")

    def succeed(self, task_token: str, output: Mapping[str, Any]) -> bool:
        """SendTaskSuccess with ``output`` as JSON. False when the task no longer waits;
        raises a named AwsError for other failures."""
        try:
            self._sfn.send_task_success(taskToken=task_token, output=json.dumps(dict(output)))
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") in TASK_GONE_CODES:
                return False
            raise named_aws_error(e, "SendTaskSuccess") from None
        except BotoCoreError as e:
            raise named_aws_error(e, "SendTaskSuccess") from None
        return True


class StepFunctionsExecutions:
    """DescribeExecution through one boto3 client (default the cached process-wide one)."""

    def __init__(self, stepfunctions: Any | None = None) -> None:
        self._sfn = stepfunctions if stepfunctions is not None else cached_client("stepfunctions")

    def describe(self, execution_arn: str) -> ExecutionDescription | None:
        """The execution's status, input (parsed JSON, None when not JSON), error and cause; None
        when Step Functions has no such execution. Raises a named AwsError."""
        try:
            answer = self._sfn.describe_execution(executionArn=execution_arn)
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") == "ExecutionDoesNotExist":
                return None
            raise named_aws_error(e, "DescribeExecution") from None
        except BotoCoreError as e:
            raise named_aws_error(e, "DescribeExecution") from None
        try:
            parsed: Any = json.loads(answer.get("input") or "null")
        except ValueError:
            parsed = None
        return ExecutionDescription(execution_arn=str(answer["executionArn"]), name=str(answer.get("name", "")),
                                    status=str(answer["status"]), input=parsed, error=answer.get("error"),
                                    cause=answer.get("cause"))
