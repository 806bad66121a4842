"""verifyFrom node: VerifyTarget judges what the target's own node saw.

A target the Lambda cannot reach (on-premises, another VPC: models.Target.verifyFrom "node")
is probed by its node after the install's reload (installer/install_bundle.py probe_served:
handshakes until the expected serial is served ``required`` times in a row, bounded by one
command timeout), and the node reports the evidence in its ROLLOUT_RESULT ("served"), which
CommandCallback hands to the waiting task ($.installCommand.served) and the state machine to
VerifyTarget. The decision is made here, in the Lambda, on that evidence; the Lambda itself
sends no handshake to such a target (nor InstallTarget before, nor RecordTargetOutcome after).
The node already waited for the reload, so there is no WAITING answer:

  no evidence, or no chain and an error              -> UNREACHABLE (from the node)
  the leaf's serial is the expected one (integers), served
    ``required`` handshakes in a row                  -> VERIFIED
  otherwise (another serial, or not stable)           -> NOT_SERVING (the state machine rolls back)
  the new serial, stable, but domain/tls_checks refuses the chain the node saw (expired,
    chain-invalid, hostname-mismatch), or the node could not read the whole chain
    (chainComplete false: Python < 3.10 on the node; chainTruncated)  -> NOT_SERVING, that reason

A target with a ``probeNode`` (models.Target) is probed the same way by that other node: after
its install succeeded, the state machine's ProbeOnProbeNode sends the install document's
read-only "probe" action there (logic.commands.send_target_command; installer do_probe, the
same probe_served), and UseProbeNodeEvidence puts its "served" where the target's own node's
would be ($.installCommand.served); the target's own node then does not probe.

The checks are the Lambda-verified targets' own (domain.tls_checks.check_served_chain, the same
trust anchor and name), run here on the node's DER chain.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from cryptography import x509
from pydantic import ValidationError

from rollout_core.contracts import CommandResult, IterationState, ServedEvidence, VerifyResult
from rollout_core.domain.errors import InvalidSerial
from rollout_core.domain.serials import canonical_serial, parse_serial
from rollout_core.domain.tls_checks import check_served_chain
from rollout_core.logic.observe import check_name
from rollout_core.models import Target
from rollout_core.probe import CertificateParseError, parse_served_certificate
from rollout_core.settings import VerifySettings


def parse_served(result: dict[str, Any] | None) -> ServedEvidence | None:
    """The node's evidence in an installer ROLLOUT_RESULT dict ("served", with "servedBefore"
    as ``before``), None when there is none (a Lambda-verified target, or an installer without
    it). Evidence that does not parse becomes an evidence whose ``error`` says so (never raises)."""
    raw = (result or {}).get("served")
    if raw is None:
        return None
    before = (result or {}).get("servedBefore")
    try:
        if not isinstance(raw, dict):
            raise ValueError("not an object")
        return ServedEvidence.model_validate({**raw, "before": before if isinstance(before, str) else None})
    except (ValidationError, ValueError) as e:
        return ServedEvidence(error=f"the node's probe evidence is unreadable: {str(e).splitlines()[0][:200]}")


def _leaf_serial(served: ServedEvidence) -> int | None:
    """The served leaf's serial: from the chain's first DER certificate, else the node's own
    reading of it (its last serialsSeen, colon hex); None when neither can be read."""
    if served.chain:
        try:
            return parse_served_certificate(bytes.fromhex(served.chain[0])).serial
        except (ValueError, CertificateParseError):
            pass
    last = served.serialsSeen[-1] if served.serialsSeen else None
    try:
        return parse_serial(last, assume="hex") if last else None
    except InvalidSerial:
        return None


def verify_from_node_evidence(served: ServedEvidence | None, expected_serial: str, *, since: str,
                              target: Target, settings: VerifySettings, anchors: tuple[x509.Certificate, ...],
                              now: datetime) -> VerifyResult:
    """VERIFIED / NOT_SERVING / UNREACHABLE from the node's evidence (module table); never WAITING.

    ``expected_serial`` in any form domain.serials reads; serials are compared as integers
    (DESIGN.md). ``target`` names the endpoint and node in the detail; ``anchors`` (the issuing
    CA's root) and ``now`` (aware) feed domain.tls_checks. Raises InvalidSerial for an
    unreadable ``expected_serial``.
    """
    expected = parse_serial(expected_serial)
    common: dict[str, Any] = {"since": since, "pollIntervalSeconds": settings.poll_interval_seconds}
    node = f"probe node {target.probeNode}" if target.probeNode else f"node {target.instanceId}"
    where = f"from {node} to {target.endpoint} (SNI {target.sni})"
    if served is None:
        why = ("its probe command did not succeed: ProbeOnProbeNode in the execution history" if target.probeNode
               else "an installer without verifyFrom node?")
        return VerifyResult(state="UNREACHABLE", reason="unreachable", detail=f"the {node} reported no probe evidence {where} "
                                                        f"({why})", **common)
    if not served.chain and not served.serialsSeen:
        return VerifyResult(state="UNREACHABLE", reason="unreachable", detail=f"{where}: {served.error or 'no certificate served'}"[:800],
                            **common)
    serial = _leaf_serial(served)
    shown = canonical_serial(serial) if serial is not None else None
    if serial != expected:
        return VerifyResult(state="NOT_SERVING", reason="not-serving-new-serial", servedSerial=shown, detail=(
            f"expected serial {canonical_serial(expected)}, served {shown or 'an unreadable certificate'} {where}; "
            f"serials seen {', '.join(s or '?' for s in served.serialsSeen[-5:])}")[:800], **common)
    if served.probes < served.required:
        return VerifyResult(state="NOT_SERVING", reason="not-serving-new-serial", servedSerial=shown, detail=(
            f"the new serial was served {served.probes} of {served.required} handshakes in a row {where}; "
            f"serials seen {', '.join(s or '?' for s in served.serialsSeen[-5:])}")[:800], **common)
    if not served.chainComplete or served.chainTruncated:
        return VerifyResult(state="NOT_SERVING", reason="chain-invalid", servedSerial=shown, detail=(
            f"the new serial is served {where}, but the node could not report the whole chain it was sent "
            f"({'truncated to fit the command output' if served.chainTruncated else 'its python cannot read it: 3.10 or later needed'}): "
            "a client's chain check cannot be shown to pass")[:800], **common)
    try:
        check = check_served_chain([bytes.fromhex(c) for c in served.chain], expected_serial=expected,
                                   anchors=anchors, name=check_name(target), now=now)
    except ValueError as e:  # a sent certificate that is not DER X.509
        return VerifyResult(state="NOT_SERVING", reason="chain-invalid", servedSerial=shown,
                            detail=f"{where}: the chain the node saw cannot be read: {e}"[:800], **common)
    if check.reason is not None:
        return VerifyResult(state="NOT_SERVING", reason=check.reason, servedSerial=shown, chainLength=check.chain_length,
                            detail=f"{where}: {check.detail}"[:800], **common)
    return VerifyResult(state="VERIFIED", servedSerial=shown, chainLength=check.chain_length, **common)


def node_served_after(state: IterationState) -> str | None:
    """What a verifyFrom-node target served at the end (RecordTargetOutcome's servedSerialAfter,
    in place of the Lambda's after-probe): the last serial the node saw after the rollback's
    reload, else after the install's; None when the node saw none. A target whose probe node
    probed it (state.probeCommand) and was then rolled back: None (no node probed it after the
    rollback; what was seen before it is not what it serves now)."""
    if state.rollbackCommand is not None and state.probeCommand is not None:
        return None
    for command in (state.rollbackCommand, state.installCommand):
        if command is not None and command.served is not None and command.served.serialsSeen:
            last = command.served.serialsSeen[-1]
            try:
                return canonical_serial(last, assume="hex") if last else None
            except InvalidSerial:
                return None
    return None


def with_node_served_before(result: CommandResult) -> CommandResult:
    """``result`` with servedSerialBefore from the node's own pre-install probe (served.before)
    when the Lambda did not probe (verifyFrom node): the state machine's Verified choice and
    RecordTargetOutcome read it there."""
    if result.servedSerialBefore is None and result.served is not None and result.served.before:
        try:
            before = canonical_serial(result.served.before, assume="hex")
        except InvalidSerial:
            return result
        return result.model_copy(update={"servedSerialBefore": before})
    return result
