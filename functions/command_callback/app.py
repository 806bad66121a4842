"""CommandCallback: SSM command status change (EventBridge) -> complete the waiting Map task."""

from aws_lambda_powertools.utilities.parser import parse
from aws_lambda_powertools.utilities.parser.models import EventBridgeModel
from aws_lambda_powertools.utilities.typing import LambdaContext
from rollout_core.adapters.dynamo import DynamoWaitingTasks
from rollout_core.adapters.ssm import SsmCommands
from rollout_core.adapters.stepfunctions import StepFunctionsCallbacks
from rollout_core.logic.callback import CommandEventDetail, complete_waiting_task
from rollout_core.observability import logger, tracer
from rollout_core.settings import CallbackSettings, load_settings

SETTINGS = load_settings(CallbackSettings)
COMMANDS = SsmCommands()
WAITING_TASKS = DynamoWaitingTasks(SETTINGS.rollout_table)
CALLBACKS = StepFunctionsCallbacks()


class CommandStatusChange(EventBridgeModel):
    """EventBridge's "EC2 Command Invocation Status-change Notification" from aws.ssm."""

    detail: CommandEventDetail


@logger.inject_lambda_context(log_event=True)
@tracer.capture_lambda_handler(capture_response=False)
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    parse(event=event, model=CommandStatusChange)
    return complete_waiting_task(event, commands=COMMANDS, waiting_tasks=WAITING_TASKS, callbacks=CALLBACKS)
