"""boto3 clients, created once per process and reused across invocations."""

from __future__ import annotations

from functools import cache
from typing import Any

import boto3
from botocore.config import Config

# Retries inside the SDK stay short: the state machine owns retry with backoff and jitter.
_CONFIG = Config(retries={"max_attempts": 2, "mode": "standard"}, connect_timeout=5, read_timeout=20)


@cache
def client(service: str) -> Any:
    """A boto3 client for ``service`` (region and endpoint from the environment)."""
    factory: Any = boto3.client  # typed per service literal; ``service`` is any name here
    return factory(service, config=_CONFIG)


@cache
def table(name: str) -> Any:
    """A boto3 DynamoDB Table resource."""
    return boto3.resource("dynamodb", config=_CONFIG).Table(name)
