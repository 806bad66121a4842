"""VerifyTarget: does the target serve the expected serial on its host:port with its SNI name?

Rules: S2 (files on disk are never success), S3 (SNI sent, serial read from the DER leaf even
with chain verification off), S4 (could-not-connect and serial-mismatch are different), and
reload lag (nginx needs ~20 ms, sometimes longer, to serve new files: never assume). Until
``since + VerifyTimeoutSeconds`` a mismatch answers WAITING and the state machine probes again
after its WaitForReload state (PollIntervalSeconds). Unreachable past that deadline ends
FAILED/unreachable (no rollback: nothing proves the new files are at fault); a mismatch or a
failing handshake ends NOT_SERVING, and the state machine rolls the target back.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from rollout_core import ports
from rollout_core.contracts import ServedEvidence, VerifyResult
from rollout_core.domain.serials import canonical_serial, parse_serial
from rollout_core.logic.verify_node import verify_from_node_evidence
from rollout_core.probe import TargetUnreachable, TlsHandshakeFailed
from rollout_core.settings import VerifySettings

STABLE_PROBES = 3


def verify_target(certificate_arn: str, target_id: str, expected_serial: str, since: str, *,
                  settings: VerifySettings, now: datetime, inventory: ports.Inventory,
                  probe: ports.TlsProbe, node_evidence: ServedEvidence | None = None) -> VerifyResult:
    """Probe the target once and say where verification stands.

    ``since`` is when verification began (ISO 8601, the state's EnteredTime); until
    ``since + VERIFY_TIMEOUT_SECONDS`` a mismatch or an unreachable target answers WAITING.
    Serials are compared as integers (DESIGN.md). Ports: ``inventory`` (the target's host,
    port, SNI), ``probe`` (the handshakes). A verifyFrom-node target is judged on its node's
    evidence ``node_evidence`` instead ($.installCommand.served; logic.verify_node), with no handshake.
    Raises TargetNotFound or a named AwsError (inventory read).
    """
    target = inventory.get(certificate_arn, target_id)
    if target.verifyFrom == "node":
        return verify_from_node_evidence(node_evidence, expected_serial, since=since, target=target, settings=settings)
    started = datetime.fromisoformat(since.replace("Z", "+00:00"))
    expired = now >= started + timedelta(seconds=settings.verify_timeout_seconds)
    expected = parse_serial(expected_serial)
    common: dict[str, Any] = {"since": since, "pollIntervalSeconds": settings.poll_interval_seconds}
    try:
        # nginx keeps answering some handshakes from old workers for ~100 ms after a reload:
        # the new serial counts as served only when STABLE_PROBES handshakes in a row show it.
        for _ in range(STABLE_PROBES):
            served_serial = probe.served_certificate(target.host, target.port, target.sni,
                                                     timeout=settings.probe_timeout_seconds).serial
            if served_serial != expected:
                break
    except TargetUnreachable as e:
        return VerifyResult(state="UNREACHABLE" if expired else "WAITING", detail=str(e), **common)
    except TlsHandshakeFailed as e:
        return VerifyResult(state="NOT_SERVING" if expired else "WAITING", detail=f"TLS handshake failed: {e}",
                            **common)
    served = canonical_serial(served_serial)
    if served_serial == expected:
        return VerifyResult(state="VERIFIED", servedSerial=served, **common)
    detail = f"expected serial {canonical_serial(expected)}, served {served} (SNI {target.sni})"
    return VerifyResult(state="NOT_SERVING" if expired else "WAITING", servedSerial=served, detail=detail, **common)
