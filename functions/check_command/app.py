"""CheckInstall / CheckRollback: classify one SSM command invocation (D3)."""

from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel

from rollout_core.logic.commands import check_command
from rollout_core.observability import logger, tracer


class CheckInput(BaseModel):
    targetId: str
    commandId: str
    instanceId: str
    deadline: float


@logger.inject_lambda_context(log_event=True)
@tracer.capture_lambda_handler(capture_response=False)
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    r = CheckInput.model_validate(event)
    logger.append_keys(target_id=r.targetId)
    return check_command(r.commandId, r.instanceId, r.deadline).model_dump(mode="json")
