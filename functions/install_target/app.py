"""InstallOnTarget / RollbackTarget: send the install document to one target's managed node
(ProbeOnProbeNode: its read-only probe action to the target's probe node, models.Target.probeNode);
the task then waits on its token until CommandCallback reports the command's final status.
First the certificate's lease is renewed (logic/lease.py fence_target_command): a rollout
superseded by a newer request sends nothing (the task fails with Superseded, and the
iteration's Catch records the target SUPERSEDED)."""

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext
from rollout_core.adapters.dynamo import DynamoInventory, DynamoWaitingTasks
from rollout_core.adapters.installer_source import LayerInstallerSource
from rollout_core.adapters.leases import DynamoLeases
from rollout_core.adapters.ssm import SsmCommands
from rollout_core.adapters.tls import SocketTlsProbe
from rollout_core.contracts import CommandRef, TargetCommandInput
from rollout_core.logic.commands import send_target_command
from rollout_core.logic.lease import fence_target_command
from rollout_core.observability import logger, tracer
from rollout_core.settings import InstallSettings, load_settings

SETTINGS = load_settings(InstallSettings)
INVENTORY = DynamoInventory(SETTINGS.inventory_table)
COMMANDS = SsmCommands()
WAITING_TASKS = DynamoWaitingTasks(SETTINGS.rollout_table)
PROBE = SocketTlsProbe()
INSTALLER = LayerInstallerSource()
LEASES = DynamoLeases(SETTINGS.rollout_table)


@logger.inject_lambda_context(log_event=False)  # the event carries a task token
@tracer.capture_lambda_handler(capture_response=False)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """TargetCommandInput in, CommandRef out (Step Functions ignores it: the waiting task's
    result is the CommandResult that CommandCallback sends with the token)."""
    r = TargetCommandInput.model_validate(event)
    fence_target_command(r.action, r.certificateArn, r.rolloutId, settings=SETTINGS, leases=LEASES)
    result: CommandRef = send_target_command(r.action, r.certificateArn, r.targetId, r.rolloutId, r.expectedSerial,
                                             r.secretArn, r.secretVersionId, settings=SETTINGS, inventory=INVENTORY,
                                             commands=COMMANDS, waiting_tasks=WAITING_TASKS, probe=PROBE,
                                             installer=INSTALLER, task_token=r.taskToken)
    return result.model_dump(mode="json")
