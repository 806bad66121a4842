"""The state contracts of statemachine/rollout.asl.json: what each task receives and returns,
what the Map iteration holds when its outcome is classified, and what Notify reads.

One model per shape, written once. The ASL reads these fields by name (ResultSelector,
Parameters, Choice variables, ItemsPath, OutputPath ...): tests/unit/test_statemachine.py maps
every Task state to its output model and fails, naming the state, when a path the ASL reads is
not a field of that model. The JSON field names are those of the ASL and of execution
histories (camelCase), so they stay as they are.

Where each shape lives in the state (top level of an execution):

  $.rollout       ValidateEvent's ValidateResult, or the RolloutState that EventRejected /
                  ExportFailed write instead; Notify reads it as RolloutState
  $.export        ExportCertificate's ExportResult
  $.lease         AcquireLease's LeaseResult (the certificate's lease, logic/lease.py)
  $.leaseRelease  ReleaseLease's LeaseReleaseResult
  $.error         a Catch's StateError
  $.notification  Notify's NotifyResult

Inside the Map (one iteration per target), starting from the TargetItem of ItemSelector:

  $.installCommand, $.rollbackCommand   CommandResult: what CommandCallback sends the waiting
                                         task, or, when the task timed out, what ReconcileInstall /
                                         ReconcileRollback read from SSM (InstallStatusUnknown /
                                         RollbackStatusUnknown when even that failed)
  $.verify        VerificationStart (BeginVerification), then VerifyTarget's VerifyResult
  $.error         InstallOnTarget's Catch (the InstallTarget function raised: no command was sent)
  $.installTimeout, $.rollbackTimeout   the States.Timeout of the waiting task (then reconciled)
  $.verifyError, $.rollbackError, $.reconcileError   the StateError of that step's Catch
  $.outcome       RecordTargetOutcome's OutcomeSummary (the iteration's output)

State carries references only (ARNs, serials, secret version ids, target ids): no model here
has a field for key material or a passphrase (DESIGN.md, Hard rules).
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from rollout_core.models import Decision, RolloutOutcome, TargetOutcome

Action = Literal["install", "rollback", "probe"]  # probe: the probe node's read-only probe (models.Target.probeNode)
# Did the command change the target's files? (logic.commands.files_changed, from the installer's
# ROLLOUT_RESULT stage): "no" (it stopped before the swap, or never ran), "restored" (it reached
# the swap and put the previous files back itself), "yes" (the swap happened and stands),
# "unknown" (no ROLLOUT_RESULT: killed, timed out, still running). Only "no" and "restored"
# let the iteration skip RollbackTarget.
FilesChanged = Literal["no", "restored", "yes", "unknown"]
CommandStateName = Literal["PENDING", "SUCCEEDED", "FAILED", "TIMED_OUT", "UNDELIVERABLE", "CANCELLED"]
VerifyStateName = Literal["VERIFIED", "WAITING", "NOT_SERVING", "UNREACHABLE"]


class _State(BaseModel):
    """A shape the state machine builds itself: exact, unknown fields are refused (a renamed
    field in the ASL fails the handler at once, with the field's name)."""

    model_config = ConfigDict(extra="forbid")


class StateError(BaseModel):
    """What a Catch writes (``ResultPath: $.error``): the error's name and its cause.

    For a Lambda task the cause is Lambda's JSON error ({"errorMessage", "errorType", ...});
    for a States.* error it is plain text. Source: AWS Step Functions Developer Guide,
    "Handling errors in Step Functions workflows" (Catch output: Error, Cause).
    """

    Error: str = "Error"
    Cause: str | None = None

    def message(self) -> str:
        """The cause's ``errorMessage`` when it is Lambda's JSON error, else the cause text."""
        cause = self.Cause or ""
        try:
            parsed = json.loads(cause)
        except json.JSONDecodeError:
            return cause
        if isinstance(parsed, dict):
            return str(parsed.get("errorMessage", ""))
        return str(parsed)

    def text(self, limit: int) -> str:
        """``"<Error>: <message>"`` cut to ``limit`` characters."""
        return f"{self.Error}: {self.message()}"[:limit]


# --- ValidateEvent ---------------------------------------------------------------------


class ValidateInput(_State):
    """ValidateEvent's payload: the execution input and the execution's ARN (its name is the
    rollout id)."""

    event: Any
    executionArn: str


class ValidateResult(_State):
    """ValidateEvent's output ($.rollout): references only (ARN, serial, target ids)."""

    decision: Decision
    certificateArn: str
    serial: str | None = None
    rolloutId: str
    targetIds: list[str] = Field(default_factory=list)
    maxConcurrency: int = 10  # the Map's MaxConcurrencyPath (0 = no limit)
    taskTimeoutSeconds: int = 900  # how long an install/rollback task waits for SSM's final status
    reason: str | None = None
    daysToExpiry: int | None = None
    domainName: str | None = None
    duplicateOf: str | None = None
    # ACM's NotAfter of the certificate (EXPIRY_NOTICE: what the notification says); ISO 8601 in the state.
    notAfter: datetime | None = None


class RolloutState(_State):
    """$.rollout as Notify reads it: ValidateEvent's result (every field of ValidateResult), or
    what EventRejected (decision REJECTED, rolloutId, error) or ExportFailed (decision
    EXPORT_FAILED, the certificate's fields, error) write in its place."""

    decision: Decision
    rolloutId: str
    certificateArn: str | None = None
    serial: str | None = None
    targetIds: list[str] = Field(default_factory=list)
    maxConcurrency: int | None = None
    taskTimeoutSeconds: int | None = None
    reason: str | None = None
    daysToExpiry: int | None = None
    domainName: str | None = None
    duplicateOf: str | None = None
    notAfter: datetime | None = None
    error: StateError | None = None


# --- ExportCertificate -----------------------------------------------------------------


class ExportInput(_State):
    """ExportCertificate's payload, from $.rollout, and the execution's ARN ($$.Execution.Id:
    the staged secret's name carries its name, the rollout id; its tag the ARN). ``targetIds``:
    the rollout's targets; their nodes are the only readers of the staged bundle."""

    certificateArn: str
    serial: str | None = None
    rolloutId: str
    executionArn: str
    targetIds: list[str]


class ExportResult(_State):
    """ExportCertificate's output ($.export): the staged secret's references, never its value,
    and ``trustAnchor``: the PEM of the root certificate of the certificate's issuing CA (the last
    certificate of the exported CertificateChain, domain.tls_checks.trust_anchor), which every
    iteration's VerifyTarget checks served chains against. Certificates are public; the key and
    the passphrase never ride here."""

    secretArn: str
    secretVersionId: str
    serial: str
    notAfter: str
    keyAlgorithm: str
    trustAnchor: str


# --- the certificate's lease (logic/lease.py) ------------------------------------------

LeaseStateName = Literal["ACQUIRED", "WAITING", "STALE", "GAVE_UP"]


class LeaseInput(_State):
    """AcquireLease / ReleaseLease's payload. ``serial`` is the exported serial (what the
    rollout installs); ``executionStartTime`` ($$.Execution.StartTime) bounds the wait."""

    operation: Literal["acquire", "release"]
    certificateArn: str
    rolloutId: str
    executionArn: str | None = None
    serial: str | None = None
    executionStartTime: str | None = None


class LeaseResult(_State):
    """AcquireLease's output ($.lease).

    ACQUIRED  this rollout holds the lease: install on the targets
    WAITING   another rollout holds it (marked superseded when it is older): wait
              ``retryAfterSeconds`` (WaitForLease), then try again
    STALE     ACM holds a newer serial than the exported one: export again (the current one)
    GAVE_UP   one holder kept it past the longest wait (LeaseSettings.max_wait_seconds): nothing installed
    """

    state: LeaseStateName
    serial: str | None = None
    currentSerial: str | None = None
    holder: str | None = None
    holderSerial: str | None = None
    expiresAt: int | None = None  # epoch seconds
    retryAfterSeconds: int = 0
    detail: str | None = None


class LeaseReleaseResult(_State):
    """ReleaseLease's output ($.leaseRelease): False when this rollout held no lease."""

    released: bool


# --- the Map iteration -----------------------------------------------------------------


class TargetItem(_State):
    """One Map item (InstallTargets' ItemSelector): the target and the rollout's references,
    with the export's trust anchor (ExportResult.trustAnchor, public PEM)."""

    targetId: str
    certificateArn: str
    rolloutId: str
    expectedSerial: str
    secretArn: str
    secretVersionId: str
    taskTimeoutSeconds: int
    trustAnchor: str


class TargetCommandInput(_State):
    """InstallOnTarget / RollbackTarget's payload: the item's references, the action and the
    waiting task's token (lambda:invoke.waitForTaskToken)."""

    action: Action
    targetId: str
    certificateArn: str
    rolloutId: str
    expectedSerial: str
    secretArn: str
    secretVersionId: str
    taskToken: str | None = None


class CommandRef(_State):
    """What the InstallTarget function returns for one sent command. The waiting task's result
    is not this (Step Functions ignores a waitForTaskToken Lambda's response) but the
    CommandResult that CommandCallback sends with the task token."""

    commandId: str
    instanceId: str
    endpoint: str
    servedSerialBefore: str | None = None


class WaitingTaskContext(_State):
    """What the InstallTarget function stores with the task token for CommandCallback to return
    besides the status: the target's endpoint and what it served before the install."""

    endpoint: str | None = None
    servedSerialBefore: str | None = None
    action: Action | None = None
    probeNode: str | None = None  # the install's: the node ProbeOnProbeNode sends the probe to


class ServedEvidence(BaseModel):
    """What a verifyFrom-node target's own node saw when it probed the target after the
    command's reload (installer/install_bundle.py probe_served; ROLLOUT_RESULT "served"):
    certificates are public, nothing else is carried. ``chain``: the last chain served, hex DER,
    leaf first (``chainComplete`` False when the node's Python gave only the leaf, or the cap
    dropped ``chainTruncated`` certificates); ``serialsSeen``: the last handshakes' leaf serials
    (colon hex, None for an unreadable leaf); ``probes``: handshakes in a row at the end that
    served the wanted serial, of ``required``; ``error``: the last handshake's failure (None when
    it answered); ``at``: when (UTC ISO 8601); ``before``: the serial served before the install
    (ROLLOUT_RESULT "servedBefore"; None: unreachable or not probed). Unknown fields from a
    newer installer are ignored."""

    model_config = ConfigDict(extra="ignore")

    chain: list[str] = Field(default_factory=list, max_length=10)
    chainComplete: bool = False
    chainTruncated: int = 0
    serialsSeen: list[str | None] = Field(default_factory=list, max_length=50)
    probes: int = Field(default=0, ge=0)
    required: int = Field(default=1, ge=1)
    attempts: int = Field(default=0, ge=0)
    error: str | None = Field(default=None, max_length=500)
    at: str | None = None
    before: str | None = None


class CommandStatus(_State):
    """The classified final status of one SSM command invocation (logic.commands.command_status)."""

    state: CommandStateName
    reason: str | None = None
    detail: str | None = None
    stage: str | None = None  # the installer's ROLLOUT_RESULT stage (fetch|write|test|reload|rollback), None without one
    filesChanged: FilesChanged = "unknown"
    served: ServedEvidence | None = None  # verifyFrom node: the node's probe after the reload


class CommandResult(CommandStatus):
    """$.installCommand / $.rollbackCommand: CommandCallback's output to the waiting task
    (status + context + ids); when the task's timeout fires first, ReconcileInstall /
    ReconcileRollback return the same shape from GetCommandInvocation, and InstallStatusUnknown /
    RollbackStatusUnknown write a TIMED_OUT status with filesChanged "unknown" when even that
    failed (then only state, reason, detail, filesChanged)."""

    endpoint: str | None = None
    servedSerialBefore: str | None = None
    action: Action | None = None
    probeNode: str | None = None  # set: InstallFinished sends a successful install's probe there
    commandId: str | None = None
    instanceId: str | None = None


class CommandCallbackResult(BaseModel):
    """CommandCallback's own return (its EventBridge invocation's result, in its log): either
    which command completed which state, or why the status change was ignored."""

    commandId: str | None = None
    state: CommandStateName | None = None
    ignored: str | None = None


class ReconcileInput(_State):
    """ReconcileInstall / ReconcileRollback's payload (the CommandCallback function's reconcile
    mode): which waiting task timed out. The task's own output is lost on timeout; its command
    is found through the waiting-task record (logic.waiting.waiting_task_key)."""

    reconcile: Action
    targetId: str
    rolloutId: str


class VerificationStart(_State):
    """$.verify as BeginVerification writes it: when verification began (ISO 8601)."""

    since: str


class VerifyInput(_State):
    """VerifyTarget's payload: the item's references, its trust anchor (PEM of the issuing CA's
    root) and $.verify.since."""

    targetId: str
    certificateArn: str
    rolloutId: str
    expectedSerial: str
    since: str
    trustAnchor: str
    served: ServedEvidence | None = None  # $.installCommand.served (verifyFrom node)


# Why a probed endpoint does not pass (domain.tls_checks.CHECK_REASONS, or no certificate read).
VerifyReason = Literal["not-serving-new-serial", "expired", "chain-invalid", "hostname-mismatch", "unreachable"]


class EndpointResult(_State):
    """One probed endpoint of a target (its host:port, or one of its backends): ``passed`` when
    every handshake passed every check; else ``reason`` and ``detail`` of the first that did not,
    and what it served (``servedSerial``, ``chainLength``; None when nothing was read)."""

    endpoint: str
    passed: bool
    reason: VerifyReason | None = None
    servedSerial: str | None = None
    chainLength: int | None = None
    detail: str | None = None


class VerifyResult(_State):
    """VerifyTarget's output ($.verify). WAITING loops through WaitForReload, which waits
    ``pollIntervalSeconds`` (the PollIntervalSeconds parameter) before the next probe."""

    state: VerifyStateName
    since: str
    servedSerial: str | None = None
    pollIntervalSeconds: int
    detail: str | None = None
    reason: VerifyReason | None = None  # why not VERIFIED (None when VERIFIED)
    chainLength: int | None = None  # certificates the target's host:port sent (leaf included)
    backends: list[EndpointResult] | None = None  # one per Target.backends entry, None without backends


class IterationState(TargetItem):
    """The iteration's state when RecordTargetOutcome runs ($, sent as ``target``): the item
    and what each step wrote. A step that did not run left its field None."""

    installCommand: CommandResult | None = None
    installTimeout: StateError | None = None
    probeCommand: CommandResult | None = None  # ProbeOnProbeNode (a target with a probeNode)
    probeError: StateError | None = None
    verify: VerifyResult | VerificationStart | None = None
    verifyError: StateError | None = None
    rollbackCommand: CommandResult | None = None
    rollbackTimeout: StateError | None = None
    rollbackError: StateError | None = None
    reconcileError: StateError | None = None
    error: StateError | None = None


class RecordInput(_State):
    """RecordTargetOutcome's payload."""

    target: IterationState


class OutcomeSummary(_State):
    """RecordTargetOutcome's output ($.outcome, then the iteration's output), or what
    OutcomeNotRecorded writes when recording failed."""

    targetId: str
    outcome: TargetOutcome
    reason: str | None = None


class OutcomeRecord(BaseModel):
    """One target's rollout record in RolloutTable (no key material). Notify reads these."""

    rolloutId: str
    targetId: str
    certificateArn: str
    endpoint: str | None = None
    outcome: TargetOutcome
    reason: str | None = None
    detail: str | None = None
    expectedSerial: str | None = None
    servedSerialBefore: str | None = None
    servedSerialAfter: str | None = None
    restoreAttempted: bool = False  # RollbackTarget ran for this target
    restoreResult: str | None = None  # what the restore attempt ended with (logic.outcome.restore_result)
    recordedAt: str
    expiresAt: int

    def summary(self) -> OutcomeSummary:
        """The part the state machine keeps ($.outcome)."""
        return OutcomeSummary(targetId=self.targetId, outcome=self.outcome, reason=self.reason)


class TargetLine(BaseModel):
    """One target as the notification lists it: its OutcomeRecord's fields that the message
    shows (other fields of the record are ignored), or a FAILED line for a target without one."""

    model_config = ConfigDict(extra="ignore")

    targetId: str
    outcome: TargetOutcome
    reason: str | None = None
    detail: str | None = None
    endpoint: str | None = None
    servedSerialBefore: str | None = None
    servedSerialAfter: str | None = None
    restoreAttempted: bool = False
    restoreResult: str | None = None
    expectedSerial: str | None = None  # the serial the rollout installed (the exported one)

    @classmethod
    def not_recorded(cls, target_id: str) -> TargetLine:
        """The line of a target whose outcome was never recorded: FAILED/outcome-not-recorded."""
        return cls(targetId=target_id, outcome=TargetOutcome.FAILED, reason="outcome-not-recorded")


# --- Notify ----------------------------------------------------------------------------


class NotifyInput(_State):
    """Notify's payload: $.rollout."""

    rollout: RolloutState


class NotifyResult(_State):
    """Notify's output ($.notification; the execution's output when it succeeds)."""

    outcome: RolloutOutcome
    rolloutId: str
    certificateArn: str | None = None
    expectedSerial: str | None = None
    targetCount: int = 0
    verified: int = 0
    rolledBack: int = 0
    failed: int = 0
    superseded: int = 0
    messageId: str


# --------------------------------------------------------------------------- abnormal ends
# Not state shapes: NotifyAbnormalEnd's input (an EventBridge event) and its return value.


class ExecutionStatusChangeDetail(BaseModel):
    """The detail of Step Functions' "Step Functions Execution Status Change" event (Step
    Functions Developer Guide, "Automating Step Functions event delivery with EventBridge")."""

    model_config = ConfigDict(extra="ignore")
    executionArn: str = Field(pattern=r"^arn:aws[a-z-]*:states:[a-z0-9-]+:[0-9]{12}:execution:[^:]+:[^:]+$")
    stateMachineArn: str
    name: str = ""
    status: str
    error: str | None = None
    cause: str | None = None


class ExecutionStatusChange(BaseModel):
    """The EventBridge event NotifyAbnormalEnd receives (source aws.states)."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)
    source: Literal["aws.states"]
    detail_type: Literal["Step Functions Execution Status Change"] = Field(alias="detail-type")
    detail: ExecutionStatusChangeDetail


class AbnormalEndResult(BaseModel):
    """What NotifyAbnormalEnd did for one execution end: published a message (``messageId``),
    or not because ``alreadyNotifiedBy`` (Notify, or an earlier delivery of the same event)."""

    executionArn: str
    status: str
    certificateArn: str | None
    published: bool
    messageId: str | None = None
    alreadyNotifiedBy: str | None = None
