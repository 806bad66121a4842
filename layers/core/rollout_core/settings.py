"""Each function's environment, validated at cold start: a missing or bad variable fails at
once with its name (pydantic ValidationError), not deep inside a request."""

from __future__ import annotations

import os
from typing import TypeVar

from pydantic import BaseModel, Field

T = TypeVar("T", bound=BaseModel)


def load_settings(model: type[T]) -> T:
    """Build ``model`` from os.environ (field name upper-cased = variable name)."""
    values = {name: os.environ[name.upper()] for name in model.model_fields if name.upper() in os.environ}
    return model.model_validate(values)


class ValidateSettings(BaseModel):
    inventory_table: str = Field(min_length=3)
    idempotency_table: str = Field(min_length=3)
    idempotency_ttl_seconds: int = Field(default=400 * 86400, ge=60)
    max_concurrency: int = Field(default=10, ge=0, le=1000)
    command_timeout_seconds: int = Field(default=600, ge=5, le=3600)
    max_targets_per_rollout: int = Field(default=900, ge=1, le=1000)


class ExportSettings(BaseModel):
    secret_prefix: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_+=.@-]+$")
    kms_key_id: str = Field(min_length=1)


class InstallSettings(BaseModel):
    inventory_table: str = Field(min_length=3)
    rollout_table: str = Field(min_length=3)
    install_document: str = Field(min_length=3)
    # The InstallerLayer version the document downloads (template.yaml, !Ref InstallerLayer).
    installer_layer_arn: str = Field(pattern=r"^arn:aws[a-z-]*:lambda:[a-z0-9-]+:[0-9]{12}:layer:[A-Za-z0-9_-]+:[0-9]+$")
    command_timeout_seconds: int = Field(default=600, ge=5, le=3600)
    poll_interval_seconds: int = Field(default=5, ge=1, le=60)
    probe_timeout_seconds: float = Field(default=5.0, gt=0, le=30)


class VerifySettings(BaseModel):
    inventory_table: str = Field(min_length=3)
    verify_timeout_seconds: int = Field(default=60, ge=1, le=900)
    poll_interval_seconds: int = Field(default=5, ge=1, le=60)
    probe_timeout_seconds: float = Field(default=5.0, gt=0, le=30)


class RecordSettings(BaseModel):
    inventory_table: str = Field(min_length=3)
    rollout_table: str = Field(min_length=3)
    probe_timeout_seconds: float = Field(default=5.0, gt=0, le=30)


class NotifySettings(BaseModel):
    rollout_table: str = Field(min_length=3)
    topic_arn: str = Field(pattern=r"^arn:aws[a-z-]*:sns:")


class CallbackSettings(BaseModel):
    rollout_table: str = Field(min_length=3)
