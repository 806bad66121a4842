"""Ports: what the rollout's logic needs from the world, written as typing.Protocol classes.

logic/*.py takes these as keyword arguments and never builds an AWS client; the handlers
(functions/*/app.py) build the AWS adapters (rollout_core/adapters/) once per cold start and
pass them in; unit tests pass the in-memory fakes of tests/fakes/.

  Inventory        which targets serve which certificate (DynamoDB inventory table)
  Certificates     ACM DescribeCertificate / ExportCertificate / ListTagsForCertificate
  BundleStaging    Secrets Manager: the exported bundle staged for the nodes (one secret per rollout)
  KeystorePasswords Secrets Manager: the operator's keystore password secrets (export role only)
  Commands         SSM SendCommand / GetCommandInvocation
  WaitingTasks     the waiting Map tasks' tokens (records in the rollout table)
  TaskCallbacks    Step Functions SendTaskSuccess
  Notifications    SNS Publish to the rollout topic
  RolloutRecords   one outcome record per target per rollout (rollout table)
  RolloutClaims    the idempotent claim on (certificate ARN, serial)
  Executions       Step Functions DescribeExecution (how an execution ended, its input)
  TlsProbe         one TLS handshake with SNI: the leaf and chain a target serves
  InstallerSource  where a node downloads the installer (the InstallerLayer version's zip)
  Leases           one writer per certificate: the rollout lease (rollout table, logic/lease.py)

Every adapter raises the named errors below (the Step Functions Retry/Catch and
logic/outcome.py ERROR_REASONS match them by class name) or a named AwsError
(rollout_core/adapters/errors.py). Nothing a port returns or records holds key material,
except the ones that must: BundleStaging.put_value's ``secret_string`` and
KeystorePasswords.read's answer.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

from rollout_core.models import Target
from rollout_core.probe import ServedCertificate

# --------------------------------------------------------------------------- named errors


class TargetNotFound(Exception):
    """The inventory has no such target for this certificate."""


class CertificateNotFound(Exception):
    """ACM has no certificate with this ARN (ResourceNotFoundException)."""


class NodeNotManaged(Exception):
    """SendCommand refused the node (InvalidInstanceId): it is not a managed node, it is not
    running, or SSM Agent is not registered (SSM API reference, SendCommand errors)."""


class InvocationNotFound(Exception):
    """GetCommandInvocation: InvocationDoesNotExist (normal right after SendCommand, D3)."""


class LeaseHeld(Exception):
    """Leases.acquire: another rollout holds the certificate's lease and it has not expired
    (DynamoDB ConditionalCheckFailedException on both conditional writes). ``lease`` is the
    holder's lease as read right after (None when it was released in between)."""

    def __init__(self, certificate_arn: str, lease: Lease | None) -> None:
        holder = f"rollout {lease.holder} (serial {lease.serial})" if lease else "another rollout"
        super().__init__(f"the lease of {certificate_arn} is held by {holder}")
        self.lease = lease


# --------------------------------------------------------------------------- values


@dataclass(frozen=True)
class CertificateDescription:
    """What DescribeCertificate says about a certificate (the facts decisions are made on)."""

    arn: str
    type: str  # PRIVATE, IMPORTED, AMAZON_ISSUED
    status: str  # ISSUED, INACTIVE, EXPIRED, REVOKED, FAILED, PENDING_VALIDATION, ...
    serial: str | None  # canonical lowercase colon hex
    domain_name: str
    not_after: datetime | None
    renewal_status: str | None
    renewal_status_reason: str | None
    key_algorithm: str | None


@dataclass(frozen=True)
class ExportedCertificate:
    """ExportCertificate's answer. ``encrypted_private_key`` is secret: never log it."""

    certificate: str
    chain: str
    encrypted_private_key: str

    def __repr__(self) -> str:  # keep key material out of reprs and tracebacks
        return "ExportedCertificate(<redacted>)"


@dataclass(frozen=True)
class StagedSecret:
    """The staged bundle's references: the only things that enter the state."""

    arn: str
    version_id: str


@dataclass(frozen=True)
class DeploymentState:
    """One inventory item's deployment state, read without validating its settings (one bad
    item must fail only its own target, in the Map, never the whole rollout)."""

    target_id: str
    last_deployed_serial: str | None
    last_outcome: str | None


@dataclass(frozen=True)
class Lease:
    """The per-certificate rollout lease (logic/lease.py has the rules). Times are epoch
    seconds (UTC). ``superseded_by_*`` is set by a rollout of a newer request that waits for
    this one: the holder then installs on no further target."""

    certificate_arn: str
    holder: str  # the holding rollout's id (its execution name)
    execution_arn: str
    serial: str  # canonical colon hex: the serial the holder installs
    acquired_at: int
    expires_at: int
    superseded_by_serial: str | None = None
    superseded_by_rollout: str | None = None

    def expired(self, now: int) -> bool:
        """True when the lease is past its expiry at ``now`` (epoch seconds): free to take."""
        return self.expires_at <= now

    @property
    def superseded(self) -> bool:
        """True when a newer request has asked the holder to stop installing."""
        return self.superseded_by_rollout is not None


@dataclass(frozen=True)
class ExecutionDescription:
    """What DescribeExecution says about one execution of the rollout state machine. ``input``
    is the execution's input (references only: DESIGN.md hard rules), None when not JSON."""

    execution_arn: str
    name: str
    status: str  # RUNNING, SUCCEEDED, FAILED, TIMED_OUT, ABORTED, PENDING_REDRIVE
    input: Any
    error: str | None
    cause: str | None


@dataclass(frozen=True)
class NotificationMarker:
    """The rollout table's record that a rollout's notification was published (or is being
    published): by whom ("Notify" or "NotifyAbnormalEnd"), with which outcome and message id."""

    rollout_id: str
    by: str
    outcome: str
    message_id: str | None


@dataclass(frozen=True)
class WaitingTask:
    """A Map task waiting for a command's final status: its token (a capability to complete
    one task, not key material) and what the callback returns besides the status."""

    task_token: str
    context: dict[str, Any]
    command_id: str | None = None  # the command sent for it (WaitingTasks.attach_command), None until sent
    instance_id: str | None = None


# --------------------------------------------------------------------------- ports


@runtime_checkable
class Inventory(Protocol):
    """The inventory: items keyed (certificateArn, targetId). Used by the Lambdas and the CLI."""

    def get(self, certificate_arn: str, target_id: str) -> Target:
        """One target, validated. Raises TargetNotFound, pydantic.ValidationError (invalid
        settings) or a named AwsError."""
        ...

    def targets_for(self, certificate_arn: str) -> list[Target]:
        """Every target of the certificate, validated, ordered by targetId (paged Query)."""
        ...

    def deployment_states(self, certificate_arn: str) -> list[DeploymentState]:
        """Every target's id and deployment state, settings not validated (paged Query)."""
        ...

    def items_for(self, certificate_arn: str) -> list[dict[str, Any]]:
        """Every raw item of the certificate (numbers as int/float), ordered by targetId."""
        ...

    def scan_pages(self, page_size: int = 100) -> Iterator[list[dict[str, Any]]]:
        """The whole inventory as raw items, one list per Scan page of at most ``page_size``."""
        ...

    def put(self, target: Target) -> None:
        """Add or replace a target's item (keeps nothing of a previous item)."""
        ...

    def put_many(self, targets: Sequence[Target]) -> None:
        """Add or replace several targets (batched writes)."""
        ...

    def delete(self, certificate_arn: str, target_id: str) -> bool:
        """Remove a target; True if it existed."""
        ...

    def mark_deployed(self, certificate_arn: str, target_id: str, serial: str, outcome: str,
                      at_iso: str) -> None:
        """Record what the target was last verified to serve; a removed target is left alone."""
        ...


@runtime_checkable
class Certificates(Protocol):
    """ACM, as the validate and export steps use it."""

    def describe(self, certificate_arn: str) -> CertificateDescription:
        """DescribeCertificate, serial canonical. Raises CertificateNotFound or a named AwsError."""
        ...

    def export(self, certificate_arn: str, passphrase: bytes) -> ExportedCertificate:
        """ExportCertificate with ``passphrase`` (the bytes later used to decrypt). Raises a
        named AwsError (RequestInProgressException -> AwsRequestInProgress)."""
        ...

    def tags(self, certificate_arn: str) -> dict[str, str]:
        """ListTagsForCertificate as tag key -> value ("" for a tag without a value). Raises
        CertificateNotFound or a named AwsError."""
        ...


@dataclass(frozen=True)
class StagedEntry:
    """One staged secret as ListSecrets lists it: its name, ARN and the execution ARN of the
    rollout that staged it (its domain.staging.EXECUTION_TAG tag; None when untagged)."""

    name: str
    arn: str
    execution_arn: str | None


@runtime_checkable
class BundleStaging(Protocol):
    """Where an exported bundle waits for the nodes: one Secrets Manager secret per rollout
    (customer-managed KMS key), readable only as its resource policy allows (logic/staging.py)."""

    def create_empty(self, name: str, *, kms_key_id: str, description: str, tags: Mapping[str, str]) -> bool:
        """CreateSecret ``name`` WITHOUT a value (nothing to read yet); True when created, False
        when a secret of that name exists (a retried export: it is kept as it is)."""
        ...

    def put_policy(self, name: str, policy: Mapping[str, Any]) -> None:
        """PutResourcePolicy with BlockPublicPolicy true (replaces any policy)."""
        ...

    def put_value(self, name: str, secret_string: str) -> StagedSecret:
        """PutSecretValue: a new version; ``secret_string`` holds key material and goes to the
        store only. Returns references. Raises a named AwsError."""
        ...

    def delete(self, name: str) -> bool:
        """DeleteSecret ForceDeleteWithoutRecovery (idempotent); False when Secrets Manager says
        there is no such secret (it may also accept the name and return True)."""
        ...

    def list_staged(self, name_prefix: str) -> list[StagedEntry]:
        """Every secret whose name starts with ``name_prefix`` (ListSecrets, paged, name filter)."""
        ...


@runtime_checkable
class KeystorePasswords(Protocol):
    """The operator's keystore password secrets (Target files' passwordSecret), read by
    ExportCertificate's own role; the nodes never read them."""

    def read(self, secret_id: str) -> str:
        """GetSecretValue's SecretString (the password; secret: never log it). Raises a named
        AwsError (AwsPermanentError for AccessDenied, ResourceNotFound, a binary secret)."""
        ...


@runtime_checkable
class Commands(Protocol):
    """SSM Run Command to one managed node."""

    def send(self, document: str, instance_id: str, parameters: Mapping[str, str], *,
             timeout_seconds: int, comment: str) -> str:
        """SendCommand; returns the command id. ``timeout_seconds`` is the delivery timeout.
        Raises NodeNotManaged or a named AwsError."""
        ...

    def invocation(self, command_id: str, instance_id: str) -> dict[str, Any]:
        """GetCommandInvocation's answer. Raises InvocationNotFound or a named AwsError
        (AwsPermanentError code InvalidCommandId for a command SSM does not know)."""
        ...

    def cancel(self, command_id: str, instance_id: str) -> None:
        """CancelCommand for one instance (asynchronous in SSM: the invocation ends Cancelled
        later). Raises a named AwsError (AwsPermanentError code InvalidCommandId for a command
        SSM does not know)."""
        ...


@runtime_checkable
class WaitingTasks(Protocol):
    """Task tokens of Map tasks waiting on a command, under a short key (logic/commands.py
    waiting_task_key)."""

    def remember(self, key: str, task_token: str, context: Mapping[str, Any], *, ttl_seconds: int) -> None:
        """Store the token and context; the record expires after ``ttl_seconds`` seconds."""
        ...

    def attach_command(self, key: str, command_id: str, instance_id: str) -> None:
        """Add the sent command's ids to the record under ``key`` (what a task that times out
        reads back to ask SSM, logic.callback.reconcile_timed_out_task). No-op when the record
        is gone. Raises a named AwsError."""
        ...

    def find(self, key: str) -> WaitingTask | None:
        """The waiting task stored under ``key``, or None (not recorded yet, or expired)."""
        ...


@runtime_checkable
class TaskCallbacks(Protocol):
    """Step Functions task tokens."""

    def succeed(self, task_token: str, output: Mapping[str, Any]) -> bool:
        """SendTaskSuccess with ``output`` (JSON). False when the task no longer waits
        (TaskTimedOut, InvalidToken, TaskDoesNotExist); raises a named AwsError otherwise."""
        ...


@runtime_checkable
class Notifications(Protocol):
    """The rollout topic (SNS)."""

    def publish(self, subject: str, message: str, attributes: Mapping[str, str]) -> str:
        """Publish one message (subject cut to 100 characters); returns its message id."""
        ...


@runtime_checkable
class RolloutRecords(Protocol):
    """One record per target per rollout (keys rolloutId, targetId). No key material."""

    def put(self, record: Mapping[str, Any]) -> None:
        """Write one record (None values dropped). Raises a named AwsError."""
        ...

    def list(self, rollout_id: str) -> list[dict[str, Any]]:
        """Every record of ``rollout_id`` (paged Query). Raises a named AwsError."""
        ...

    def mark_notified(self, rollout_id: str, *, by: str, outcome: str, message_id: str) -> None:
        """Record that ``by`` published the rollout's notification (replaces any marker)."""
        ...

    def claim_notification(self, rollout_id: str, *, by: str, outcome: str) -> bool:
        """Write a marker only if the rollout has none (conditional write); False when one
        exists (its notification is published or being published). Raises a named AwsError."""
        ...

    def forget_notification(self, rollout_id: str) -> None:
        """Delete the rollout's marker (a claimed notification that could not be published)."""
        ...

    def notification(self, rollout_id: str) -> NotificationMarker | None:
        """The rollout's marker (a consistent read), or None. Raises a named AwsError."""
        ...


@runtime_checkable
class RolloutClaims(Protocol):
    """The idempotent claim on (certificate ARN, serial): one rollout per serial."""

    def claim(self, certificate_arn: str, serial: str, rollout_id: str) -> str:
        """Claim the pair for ``rollout_id``; returns the rollout id holding the claim (this one or
        an earlier one). Raises AwsRequestInProgress while another caller's claim is still in
        progress (transient: retried), or another named AwsError."""
        ...

    def release(self, certificate_arn: str, serial: str, rollout_id: str) -> bool:
        """Delete the pair's completed claim if ``rollout_id`` holds it; True when deleted."""
        ...


@runtime_checkable
class Executions(Protocol):
    """Executions of the rollout state machine (Step Functions)."""

    def describe(self, execution_arn: str) -> ExecutionDescription | None:
        """DescribeExecution; None when Step Functions has no such execution (ExecutionDoesNotExist,
        e.g. after its 90-day retention). Raises a named AwsError."""
        ...


@runtime_checkable
class TlsProbe(Protocol):
    """One TLS handshake to a target (rollout_core/probe.py)."""

    def served_certificate(self, host: str, port: int, sni: str | None, *, timeout: float) -> ServedCertificate:
        """The leaf the target presents with SNI ``sni``, with the chain it sent
        (ServedCertificate.chain_der, leaf first; chain_error when it could not be read). Called
        only through logic/observe.py observe. Raises TargetUnreachable or TlsHandshakeFailed
        (both ProbeError)."""
        ...


@dataclass(frozen=True)
class InstallerPackage:
    """One installer version as the install document takes it: ``url`` (presigned, valid until
    ``expires_at``, epoch seconds) and ``sha256`` (base64 of the zip's SHA-256, as Lambda's
    CodeSha256), of the layer version ``layer_version_arn``."""

    layer_version_arn: str
    url: str
    sha256: str
    expires_at: float


@runtime_checkable
class InstallerSource(Protocol):
    """Where a managed node gets the installer (adapters/installer_source.py: Lambda
    GetLayerVersionByArn on the InstallerLayer version)."""

    def package(self, layer_version_arn: str) -> InstallerPackage:
        """The download URL and SHA-256 of that installer version. Raises ValueError for an ARN
        that is not a layer version ARN, InstallerUnavailable, or a named AwsError."""
        ...


@runtime_checkable
class Leases(Protocol):
    """One lease item per certificate ARN (rollout table, key ``lease#<certificate ARN>``):
    at most one rollout of a certificate writes to its targets at a time. Every write is
    conditional (DynamoDB condition expressions), so two callers never both win. Times are
    epoch seconds; ``duration_seconds`` is how long the lease lasts after this write."""

    def acquire(self, certificate_arn: str, rollout_id: str, execution_arn: str, serial: str, *,
                now: int, duration_seconds: int) -> Lease:
        """Take the lease when it is free or expired (clearing any superseded mark), or extend
        it when ``rollout_id`` already holds it (keeping the mark). Raises LeaseHeld when
        another rollout holds an unexpired lease, or a named AwsError."""
        ...

    def renew(self, certificate_arn: str, rollout_id: str, *, now: int, duration_seconds: int) -> Lease | None:
        """Extend the lease when ``rollout_id`` holds it (expired or not: nobody took it);
        returns it (with any superseded mark), or None when another rollout holds it or none does."""
        ...

    def mark_superseded(self, certificate_arn: str, holder: str, by_rollout_id: str, by_serial: str) -> bool:
        """Ask the rollout ``holder`` to stop installing: records the newer rollout and serial
        on the lease. False when ``holder`` no longer holds it."""
        ...

    def release(self, certificate_arn: str, rollout_id: str) -> bool:
        """Delete the lease when ``rollout_id`` holds it; False (nothing done) otherwise."""
        ...

    def get(self, certificate_arn: str) -> Lease | None:
        """The lease as stored (a consistent read), expired or not; None when there is none."""
        ...
