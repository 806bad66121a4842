"""Each function's environment, validated at cold start: a missing or bad variable fails at
once with its name (pydantic ValidationError), not deep inside a request."""

from __future__ import annotations

import os

from pydantic import BaseModel, Field

from rollout_core.domain.managed import DEFAULT_MANAGED_TAG


def load_settings[T: BaseModel](model: type[T]) -> T:
    """Build ``model`` from os.environ (field name upper-cased = variable name).

    Raises pydantic ValidationError naming each missing or bad variable's field."""
    values = {name: os.environ[name.upper()] for name in model.model_fields if name.upper() in os.environ}
    return model.model_validate(values)


SECONDS_PER_DAY = 86400

# Step Functions runs at most 40 iterations of an inline Map at once, whatever MaxConcurrency
# says (AWS Step Functions Developer Guide, "Using Map state in Inline mode"). MaxConcurrency 0
# means "no limit" to Step Functions, which for an inline Map is again 40: the parameter is
# 1..40, so the number deployed is the number that runs (ask for 40, not 0, for the most).
INLINE_MAP_MAX_CONCURRENCY = 40


class ValidateSettings(BaseModel):
    """ValidateEvent's environment. Bounds equal template.yaml's parameter bounds
    (tests/unit/test_template_parameters.py checks that they agree)."""

    inventory_table: str = Field(min_length=3)
    rollout_table: str = Field(min_length=3)
    idempotency_table: str = Field(min_length=3)
    idempotency_ttl_days: int = Field(default=400, ge=1, le=3653)
    max_concurrency: int = Field(default=10, ge=1, le=INLINE_MAP_MAX_CONCURRENCY)
    command_timeout_seconds: int = Field(default=600, ge=5, le=3600)
    max_targets_per_rollout: int = Field(default=900, ge=1, le=1000)
    # The certificates this deployment manages are tagged acm-cert-rollout=<this> (domain/managed.py).
    managed_certificate_tag: str = Field(default=DEFAULT_MANAGED_TAG, pattern=r"^[A-Za-z0-9 _.:/=+@-]{1,256}$")

    @property
    def idempotency_ttl_seconds(self) -> int:
        """How long a (certificate ARN, serial) claim lives, in seconds (Powertools Idempotency's
        ``expires_after_seconds``): IDEMPOTENCY_TTL_DAYS x 86,400."""
        return self.idempotency_ttl_days * SECONDS_PER_DAY


# SecretPrefix (template.yaml): staged bundles are <SecretPrefix>/staged/..., keystore passwords
# <SecretPrefix>/keystores/... (domain/staging.py).
SECRET_PREFIX_PATTERN = r"^[A-Za-z0-9_+=.@-]+$"


class ExportSettings(BaseModel):
    secret_prefix: str = Field(min_length=1, pattern=SECRET_PREFIX_PATTERN)
    kms_key_id: str = Field(min_length=1)
    inventory_table: str = Field(min_length=3)


# The per-certificate rollout lease (logic/lease.py): bounds of the LeaseSeconds parameter.
LEASE_SECONDS_MIN, LEASE_SECONDS_MAX, LEASE_SECONDS_DEFAULT = 10, 43200, 3600


class InstallSettings(BaseModel):
    inventory_table: str = Field(min_length=3)
    rollout_table: str = Field(min_length=3)
    install_document: str = Field(min_length=3)
    # The InstallerLayer version the document downloads (template.yaml, !Ref InstallerLayer).
    installer_layer_arn: str = Field(pattern=r"^arn:aws[a-z-]*:lambda:[a-z0-9-]+:[0-9]{12}:layer:[A-Za-z0-9_-]+:[0-9]+$")
    command_timeout_seconds: int = Field(default=600, ge=5, le=3600)
    probe_timeout_seconds: float = Field(default=5.0, ge=1, le=30)
    # Each install/rollback renews the certificate's lease for this long (logic/lease.py fence_target_command).
    lease_seconds: int = Field(default=LEASE_SECONDS_DEFAULT, ge=LEASE_SECONDS_MIN, le=LEASE_SECONDS_MAX)


class LeaseSettings(BaseModel):
    """The lease function's environment (functions/lease/app.py, logic/lease.py)."""

    rollout_table: str = Field(min_length=3)
    lease_seconds: int = Field(default=LEASE_SECONDS_DEFAULT, ge=LEASE_SECONDS_MIN, le=LEASE_SECONDS_MAX)
    command_timeout_seconds: int = Field(default=600, ge=5, le=3600)
    verify_timeout_seconds: int = Field(default=60, ge=1, le=900)

    @property
    def max_wait_seconds(self) -> int:
        """How long a rollout waits for another rollout's lease before it gives up, in seconds:
        two lease durations (a superseded holder stops installing and renews at most once more,
        for a rollback already under way) plus one minute."""
        return 2 * self.lease_seconds + 60

    @property
    def safe_lease_seconds(self) -> int:
        """The shortest lease that outlives one target's slowest step between two renewals, in
        seconds: an install task's wait (2 x CommandTimeoutSeconds, at least 30 each, + 60:
        logic/validate.py taskTimeoutSeconds), then verification (VerifyTimeoutSeconds), plus
        one minute of margin. A shorter LeaseSeconds can expire under a live rollout."""
        return 2 * max(30, self.command_timeout_seconds) + 60 + self.verify_timeout_seconds + 60


class VerifySettings(BaseModel):
    inventory_table: str = Field(min_length=3)
    verify_timeout_seconds: int = Field(default=60, ge=1, le=900)
    poll_interval_seconds: int = Field(default=5, ge=1, le=60)
    probe_timeout_seconds: float = Field(default=5.0, ge=1, le=30)


class RecordSettings(BaseModel):
    inventory_table: str = Field(min_length=3)
    rollout_table: str = Field(min_length=3)
    probe_timeout_seconds: float = Field(default=5.0, ge=1, le=30)


class NotifySettings(BaseModel):
    rollout_table: str = Field(min_length=3)
    topic_arn: str = Field(pattern=r"^arn:aws[a-z-]*:sns:")
    secret_prefix: str = Field(min_length=1, pattern=SECRET_PREFIX_PATTERN)  # the staged bundle it deletes


class CallbackSettings(BaseModel):
    rollout_table: str = Field(min_length=3)


class AbnormalEndSettings(BaseModel):
    """NotifyAbnormalEnd's environment: the rollout table (notification markers), the topic and
    the one state machine whose executions it reports."""

    rollout_table: str = Field(min_length=3)
    topic_arn: str = Field(pattern=r"^arn:aws[a-z-]*:sns:")
    state_machine_arn: str = Field(pattern=r"^arn:aws[a-z-]*:states:[a-z0-9-]+:[0-9]{12}:stateMachine:")
    secret_prefix: str = Field(min_length=1, pattern=SECRET_PREFIX_PATTERN)  # the staged bundle it deletes
