"""VerifyTarget: would a client accept what the target serves, on every endpoint, every time?

VERIFIED means: the target's host:port and each of its ``backends`` answered ``probes``
handshakes (Target.probes, default 3) with the target's SNI name, and every one served the new
serial with a chain that builds to the issuing CA's root (the export's trust anchor, never the
server's own chain), a leaf valid now, and a name the client connects by (RFC 6125):
domain/tls_checks.py, in its order not-serving-new-serial -> expired -> chain-invalid ->
hostname-mismatch; a handshake that does not happen is unreachable.

Rules: S2 (files on disk are never success), S3 (SNI sent; the served chain read even when it
does not verify), S4 (could-not-connect and serial-mismatch are different), and reload lag
(nginx answers some handshakes from old workers for ~100 ms after a reload: never assume).
Until ``since + VerifyTimeoutSeconds`` an old serial, a failed handshake or an unreachable
endpoint answers WAITING and the state machine probes again after WaitForReload
(PollIntervalSeconds). Once the new serial is served with an invalid chain, an expired leaf or
the wrong name, waiting cannot fix it: NOT_SERVING at once with that reason, and the state
machine rolls the target back. Past the deadline an old serial or a failed handshake is
NOT_SERVING/not-serving-new-serial, an unreachable endpoint UNREACHABLE (no rollback when it
was unreachable before the install too: logic/outcome.py).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from cryptography import x509

from rollout_core import ports
from rollout_core.contracts import EndpointResult, ServedEvidence, VerifyResult, VerifyStateName
from rollout_core.domain.serials import canonical_serial, parse_serial
from rollout_core.domain.tls_checks import FINAL_REASONS
from rollout_core.logic.observe import Expectation, Observation, check_name, endpoint_text, observe
from rollout_core.logic.verify_node import verify_from_node_evidence
from rollout_core.models import Target
from rollout_core.settings import VerifySettings

# The order in which an endpoint's reason decides the state past the deadline (worst first).
_WAITING_ORDER = ("not-serving-new-serial", "unreachable")


def load_trust_anchors(pem: str) -> tuple[x509.Certificate, ...]:
    """The certificates of a PEM text (the export's trustAnchor). Raises ValueError when it
    holds none (a state the ASL did not build)."""
    try:
        anchors = tuple(x509.load_pem_x509_certificates(pem.encode("ascii")))
    except (ValueError, UnicodeEncodeError) as e:
        raise ValueError(f"trustAnchor holds no PEM certificate: {e}") from None
    return anchors


def probe_endpoint(probe: ports.TlsProbe, host: str, port: int, target: Target, expectation: Expectation, *,
                   timeout: float) -> tuple[EndpointResult, Observation]:
    """``target.probes`` handshakes to ``host:port`` with the target's SNI (stopping at the
    first that does not pass); (its EndpointResult, the last observation)."""
    obs = observe(probe, host, port, target.sni, timeout=timeout, expectation=expectation)
    for _ in range(target.probes - 1):
        if obs.reason is not None:
            break
        obs = observe(probe, host, port, target.sni, timeout=timeout, expectation=expectation)
    chain_length = len(obs.served.chain_der) if obs.served is not None and obs.served.chain_der else None
    served = canonical_serial(obs.served.serial) if obs.served is not None else None
    reason = obs.reason
    return EndpointResult(endpoint=endpoint_text(host, port), passed=reason is None,
                          reason=reason,
                          servedSerial=served, chainLength=chain_length,
                          detail=obs.detail[:400] if obs.detail else None), obs


def verify_target(certificate_arn: str, target_id: str, expected_serial: str, since: str, trust_anchor_pem: str, *,
                  settings: VerifySettings, now: datetime, inventory: ports.Inventory,
                  probe: ports.TlsProbe, node_evidence: ServedEvidence | None = None) -> VerifyResult:
    """Probe the target (and each of its backends) and say where verification stands.

    ``since`` is when verification began (ISO 8601, the state's EnteredTime);
    ``trust_anchor_pem``: the issuing CA's root (ExportResult.trustAnchor). Serials are compared
    as integers (DESIGN.md). Handshakes: ``target.probes`` per endpoint, fewer when one fails.
    Ports: ``inventory`` (the target's host, port, SNI, probes, backends), ``probe`` (through
    logic.observe.observe). A verifyFrom-node target is judged on its node's evidence
    ``node_evidence`` instead ($.installCommand.served; logic.verify_node), with the same checks
    and no handshake from here. Raises TargetNotFound or a named AwsError (inventory read),
    ValueError for a trust anchor that is not PEM.
    """
    target = inventory.get(certificate_arn, target_id)
    anchors = load_trust_anchors(trust_anchor_pem)
    if target.verifyFrom == "node":
        return verify_from_node_evidence(node_evidence, expected_serial, since=since, target=target, settings=settings,
                                         anchors=anchors, now=now)
    started = datetime.fromisoformat(since.replace("Z", "+00:00"))
    past_deadline = now >= started + timedelta(seconds=settings.verify_timeout_seconds)
    expectation = Expectation(serial=parse_serial(expected_serial), anchors=anchors, name=check_name(target), now=now)
    timeout = settings.probe_timeout_seconds
    main, _ = probe_endpoint(probe, target.host, target.port, target, expectation, timeout=timeout)
    backends = [probe_endpoint(probe, host, port, target, expectation, timeout=timeout)[0]
                for host, port in target.backend_endpoints()]
    common: dict[str, Any] = {"since": since, "pollIntervalSeconds": settings.poll_interval_seconds,
                              "servedSerial": main.servedSerial, "chainLength": main.chainLength,
                              "backends": backends if target.backends else None}
    failing = [r for r in (main, *backends) if not r.passed]
    if not failing:
        return VerifyResult(state="VERIFIED", **common)
    detail = "; ".join(_failure_text(r, r is main) for r in failing)[:800]
    final = [r for r in failing if r.reason in FINAL_REASONS]
    if final:  # the new serial is served, and a client would refuse it: waiting cannot fix that
        return VerifyResult(state="NOT_SERVING", reason=final[0].reason, detail=detail, **common)
    if not past_deadline:
        return VerifyResult(state="WAITING", reason=failing[0].reason, detail=detail, **common)
    worst = min(failing, key=lambda r: _WAITING_ORDER.index(r.reason or "unreachable"))
    state: VerifyStateName = "UNREACHABLE" if worst.reason == "unreachable" else "NOT_SERVING"
    return VerifyResult(state=state, reason=worst.reason, detail=detail, **common)


def _failure_text(result: EndpointResult, is_main: bool) -> str:
    """One endpoint's failure for the detail: backends are named as such with what they served."""
    who = "" if is_main else f"backend {result.endpoint} "
    served = f" (served {result.servedSerial})" if not is_main and result.servedSerial else ""
    return f"{who}{result.reason}{served}: {result.detail or '-'}"
