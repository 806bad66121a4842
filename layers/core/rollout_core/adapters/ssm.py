"""SSM Run Command adapter: send the install document to one managed node, read its
invocation (port rollout_core/ports.py Commands)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from rollout_core.adapters.aws import client as cached_client
from rollout_core.adapters.errors import named_aws_error
from rollout_core.ports import InvocationNotFound, NodeNotManaged

__all__ = ["InvocationNotFound", "NodeNotManaged", "SsmCommands"]

COMMENT_MAX_CHARS = 100  # SendCommand Comment: at most 100 characters (SSM API reference)
MIN_DELIVERY_TIMEOUT_SECONDS = 30  # SendCommand TimeoutSeconds: 30..2592000


class SsmCommands:
    """SSM through one boto3 client (default the cached process-wide one)."""

    def __init__(self, ssm: Any | None = None) -> None:
        self._ssm = ssm if ssm is not None else cached_client("ssm")

    def send(self, document: str, instance_id: str, parameters: Mapping[str, str], *,
             timeout_seconds: int, comment: str) -> str:
        """SendCommand to one instance; returns the command id.

        ``timeout_seconds`` is SSM's delivery timeout (TimeoutSeconds, raised to 30 at least).
        Raises NodeNotManaged (InvalidInstanceId, UnsupportedPlatformType) or a named AwsError.
        """
        try:
            answer = self._ssm.send_command(
                DocumentName=document, InstanceIds=[instance_id],
                Parameters={k: [v] for k, v in parameters.items()},
                TimeoutSeconds=max(MIN_DELIVERY_TIMEOUT_SECONDS, timeout_seconds),
                Comment=comment[:COMMENT_MAX_CHARS],
            )
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") in ("InvalidInstanceId", "UnsupportedPlatformType"):
                raise NodeNotManaged(f"{instance_id}: {e.response['Error'].get('Message', '')}") from None
            raise named_aws_error(e, "SendCommand") from None
        except BotoCoreError as e:
            raise named_aws_error(e, "SendCommand") from None
        return str(answer["Command"]["CommandId"])

    def invocation(self, command_id: str, instance_id: str) -> dict[str, Any]:
        """GetCommandInvocation. Raises InvocationNotFound (transient, D3) or a named AwsError."""
        try:
            answer: dict[str, Any] = self._ssm.get_command_invocation(CommandId=command_id, InstanceId=instance_id)
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") == "InvocationDoesNotExist":
                raise InvocationNotFound(command_id) from None
            raise named_aws_error(e, "GetCommandInvocation") from None
        except BotoCoreError as e:
            raise named_aws_error(e, "GetCommandInvocation") from None
        return answer

    def cancel(self, command_id: str, instance_id: str) -> None:
        """CancelCommand for one instance. Raises a named AwsError (InvalidCommandId included)."""
        try:
            self._ssm.cancel_command(CommandId=command_id, InstanceIds=[instance_id])
        except (ClientError, BotoCoreError) as e:
            raise named_aws_error(e, "CancelCommand") from None
