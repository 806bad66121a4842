"""SNS adapter: publish the rollout notification (port rollout_core/ports.py Notifications)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from rollout_core.adapters.aws import client as cached_client
from rollout_core.adapters.errors import named_aws_error

SUBJECT_MAX_CHARS = 100  # SNS Publish: Subject "must be less than 100 characters" (SNS API reference)


class SnsNotifications:
    """One SNS topic (``topic_arn``) through one boto3 client (default the cached one)."""

    def __init__(self, topic_arn: str, sns: Any | None = None) -> None:
        self.topic_arn = topic_arn
        self._sns = sns if sns is not None else cached_client("sns")

    def publish(self, subject: str, message: str, attributes: Mapping[str, str]) -> str:
        """Publish one message; returns its MessageId. Subject cut to 100 characters, empty
        attribute values dropped (SNS refuses them). Raises a named AwsError."""
        try:
            answer = self._sns.publish(
                TopicArn=self.topic_arn, Subject=subject[:SUBJECT_MAX_CHARS], Message=message,
                MessageAttributes={k: {"DataType": "String", "StringValue": v} for k, v in attributes.items() if v},
            )
        except (ClientError, BotoCoreError) as e:
            raise named_aws_error(e, "Publish") from None
        return str(answer["MessageId"])
