"""SNS: publish the rollout notification."""

from __future__ import annotations

from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from rollout_core.adapters.aws import client
from rollout_core.adapters.errors import named_aws_error


def publish(topic_arn: str, subject: str, message: str, attributes: dict[str, str],
            sns: Any | None = None) -> str:
    """Publish one message; returns its MessageId. Subject is cut to SNS's 100 characters."""
    sns = sns or client("sns")
    try:
        answer = sns.publish(
            TopicArn=topic_arn, Subject=subject[:100], Message=message,
            MessageAttributes={k: {"DataType": "String", "StringValue": v} for k, v in attributes.items() if v},
        )
    except (ClientError, BotoCoreError) as e:
        raise named_aws_error(e, "Publish") from None
    return answer["MessageId"]
