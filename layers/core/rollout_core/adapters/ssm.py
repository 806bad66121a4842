"""SSM Run Command: send the install document to one managed node, read its invocation."""

from __future__ import annotations

from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from rollout_core.adapters.aws import client
from rollout_core.adapters.errors import named_aws_error


class NodeNotManaged(Exception):
    """SendCommand refused the node (InvalidInstanceId): it is not a managed node, it is not
    running, or SSM Agent is not registered (SSM API reference, SendCommand errors)."""


class InvocationNotFound(Exception):
    """GetCommandInvocation: InvocationDoesNotExist (normal right after SendCommand, D3)."""


def send_command(document: str, instance_id: str, parameters: dict[str, str], timeout_seconds: int,
                 comment: str, ssm: Any | None = None) -> str:
    """SendCommand to one instance; returns the command id.

    ``timeout_seconds`` is SSM's delivery timeout (TimeoutSeconds, 30..2592000).
    Raises NodeNotManaged or a named AwsError.
    """
    ssm = ssm or client("ssm")
    try:
        answer = ssm.send_command(
            DocumentName=document, InstanceIds=[instance_id],
            Parameters={k: [v] for k, v in parameters.items()},
            TimeoutSeconds=max(30, timeout_seconds), Comment=comment[:100],
        )
    except ClientError as e:
        if e.response.get("Error", {}).get("Code") in ("InvalidInstanceId", "UnsupportedPlatformType"):
            raise NodeNotManaged(f"{instance_id}: {e.response['Error'].get('Message', '')}") from None
        raise named_aws_error(e, "SendCommand") from None
    except BotoCoreError as e:
        raise named_aws_error(e, "SendCommand") from None
    return answer["Command"]["CommandId"]


def get_invocation(command_id: str, instance_id: str, ssm: Any | None = None) -> dict[str, Any]:
    """GetCommandInvocation. Raises InvocationNotFound (transient, D3) or a named AwsError."""
    ssm = ssm or client("ssm")
    try:
        return ssm.get_command_invocation(CommandId=command_id, InstanceId=instance_id)
    except ClientError as e:
        if e.response.get("Error", {}).get("Code") == "InvocationDoesNotExist":
            raise InvocationNotFound(command_id) from None
        raise named_aws_error(e, "GetCommandInvocation") from None
    except BotoCoreError as e:
        raise named_aws_error(e, "GetCommandInvocation") from None

