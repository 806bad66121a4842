"""Every asynchronously invoked function of a SAM template keeps its failed events, alarmed.

checkov's CKV_AWS_116 (function without a dead-letter queue) is skipped for every function in
.checkov.yaml, because six of them are invoked synchronously by the state machine, where a DLQ never
receives anything. This check keeps the part of CKV_AWS_116 that matters (README, Security review):
a function with an asynchronous event source (EventBridge rule, schedule, SNS, S3 ...) must have

- a DeadLetterQueue (its own or the Globals') or an EventInvokeConfig OnFailure destination,
  for events that still fail after Lambda's two retries;
- on every EventBridge rule event (EventBridgeRule, CloudWatchEvent, Schedule) a DeadLetterConfig,
  for events the rule cannot deliver;
- each of those queues, when it is a queue of this template: KMS-encrypted (KmsMasterKeyId) and
  watched by an AWS::CloudWatch::Alarm on its QueueName.

Usage: python scripts/check_async_dlq.py [template.yaml]; prints one line per problem and exits 1
when there is one (scripts/security_lint.sh runs it; tests/unit/test_check_async_dlq.py).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

# SAM event source types whose service invokes the function asynchronously (InvocationType Event);
# poll-based sources (SQS, Kinesis, DynamoDB, MSK, MQ) and API/Cognito (synchronous) are not here.
ASYNC_EVENT_TYPES = frozenset({"EventBridgeRule", "CloudWatchEvent", "Schedule", "ScheduleV2", "SNS", "S3",
                               "CloudWatchLogs", "IoTRule", "AlexaSkill"})
RULE_EVENT_TYPES = frozenset({"EventBridgeRule", "CloudWatchEvent", "Schedule"})


def _queue_logical_id(arn: Any) -> str | None:
    """The logical id X of `!GetAtt X.Arn` (short or long form); None for any other value."""
    if isinstance(arn, dict) and "Fn::GetAtt" in arn:
        target = arn["Fn::GetAtt"]
        parts = target.split(".", 1) if isinstance(target, str) else list(target)
        if len(parts) == 2 and parts[1] == "Arn":
            return str(parts[0])
    return None


def _alarmed_queues(resources: dict[str, Any]) -> set[str]:
    """Logical ids of queues some AWS::CloudWatch::Alarm watches (dimension QueueName = !GetAtt X.QueueName)."""
    watched: set[str] = set()
    for resource in resources.values():
        if resource.get("Type") != "AWS::CloudWatch::Alarm":
            continue
        for dimension in resource.get("Properties", {}).get("Dimensions", []):
            value = dimension.get("Value")
            if dimension.get("Name") == "QueueName" and isinstance(value, dict) and "Fn::GetAtt" in value:
                target = value["Fn::GetAtt"]
                parts = target.split(".", 1) if isinstance(target, str) else list(target)
                watched.add(str(parts[0]))
    return watched


def _check_queue(where: str, arn: Any, resources: dict[str, Any], alarmed: set[str]) -> list[str]:
    """Problems of one dead-letter target: a queue of this template must be encrypted and alarmed."""
    queue = _queue_logical_id(arn)
    if queue is None or queue not in resources:
        return []  # an ARN from outside the template: its owner encrypts and watches it
    problems = []
    if resources[queue].get("Type") != "AWS::SQS::Queue":
        return [f"{where}: dead-letter target {queue} is not an AWS::SQS::Queue"]
    if not resources[queue].get("Properties", {}).get("KmsMasterKeyId"):
        problems.append(f"{where}: dead-letter queue {queue} has no KmsMasterKeyId")
    if queue not in alarmed:
        problems.append(f"{where}: no AWS::CloudWatch::Alarm watches dead-letter queue {queue}")
    return problems


def problems_of(template: dict[str, Any]) -> list[str]:
    """Every problem of `template` (a parsed SAM template, long-form intrinsics), as one line each.

    Rules: module docstring. Returns [] when every asynchronously invoked AWS::Serverless::Function
    keeps its failed and undeliverable events in an encrypted, alarmed queue.
    """
    resources: dict[str, Any] = template.get("Resources", {})
    global_function = template.get("Globals", {}).get("Function", {})
    alarmed = _alarmed_queues(resources)
    problems: list[str] = []
    for lid, resource in resources.items():
        if resource.get("Type") != "AWS::Serverless::Function":
            continue
        props = resource.get("Properties", {})
        async_events = {name: event for name, event in (props.get("Events") or {}).items()
                        if event.get("Type") in ASYNC_EVENT_TYPES}
        if not async_events:
            continue
        dlq = props.get("DeadLetterQueue") or global_function.get("DeadLetterQueue")
        on_failure = props.get("EventInvokeConfig", {}).get("DestinationConfig", {}).get("OnFailure")
        if dlq:
            problems += _check_queue(f"{lid} DeadLetterQueue", dlq.get("TargetArn"), resources, alarmed)
        elif on_failure:
            problems += _check_queue(f"{lid} OnFailure", on_failure.get("Destination"), resources, alarmed)
        else:
            problems.append(f"{lid}: invoked asynchronously ({', '.join(sorted(async_events))}) "
                            "without DeadLetterQueue or EventInvokeConfig OnFailure")
        for name, event in async_events.items():
            if event["Type"] not in RULE_EVENT_TYPES:
                continue
            config = event.get("Properties", {}).get("DeadLetterConfig")
            if not config:
                problems.append(f"{lid} event {name}: EventBridge rule without DeadLetterConfig")
            elif "Arn" not in config:  # SAM's own queue (Type: SQS): neither encrypted nor alarmed
                problems.append(f"{lid} event {name}: DeadLetterConfig without Arn (SAM's queue is not alarmed)")
            else:
                problems += _check_queue(f"{lid} event {name} DeadLetterConfig", config["Arn"], resources, alarmed)
    return problems


def main(argv: list[str] | None = None) -> int:
    """Check the template named by argv[0] (default template.yaml); 0 when clean, 1 with problems printed."""
    from samtranslator.yaml_helper import yaml_parse

    args = sys.argv[1:] if argv is None else argv
    path = Path(args[0] if args else "template.yaml")
    problems = problems_of(yaml_parse(path.read_text()))
    for problem in problems:
        print(f"check_async_dlq: {path}: {problem}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
