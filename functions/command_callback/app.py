"""CommandCallback: SSM command status change (EventBridge) -> complete the waiting Map task;
and, invoked by the state machine (ReconcileInstall / ReconcileRollback) after a waiting task
timed out, the same status read from GetCommandInvocation."""

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext
from rollout_core.adapters.dynamo import DynamoWaitingTasks
from rollout_core.adapters.ssm import SsmCommands
from rollout_core.adapters.stepfunctions import StepFunctionsCallbacks
from rollout_core.contracts import CommandCallbackResult, CommandResult, ReconcileInput
from rollout_core.logic.callback import CommandEvent, complete_waiting_task, reconcile_timed_out_task
from rollout_core.observability import logger, tracer
from rollout_core.settings import CallbackSettings, load_settings

SETTINGS = load_settings(CallbackSettings)
COMMANDS = SsmCommands()
WAITING_TASKS = DynamoWaitingTasks(SETTINGS.rollout_table)
CALLBACKS = StepFunctionsCallbacks()


@logger.inject_lambda_context(log_event=True)
@tracer.capture_lambda_handler(capture_response=False)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """CommandEvent (SSM's status-change event) in, CommandCallbackResult out; or ReconcileInput
    (a payload with ``reconcile``, from the state machine) in, CommandResult out."""
    if "reconcile" in event:
        reconciled: CommandResult = reconcile_timed_out_task(ReconcileInput.model_validate(event), commands=COMMANDS,
                                                             waiting_tasks=WAITING_TASKS)
        return reconciled.model_dump(mode="json")
    result: CommandCallbackResult = complete_waiting_task(CommandEvent.model_validate(event), commands=COMMANDS,
                                                          waiting_tasks=WAITING_TASKS, callbacks=CALLBACKS)
    return result.model_dump(mode="json", exclude_none=True)
