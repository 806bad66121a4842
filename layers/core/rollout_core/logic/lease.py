"""One writer per certificate, and the newest request wins: the per-certificate rollout lease.

The mechanism (DESIGN.md "One writer per target"):

* Lease. One item per certificate ARN (adapters/leases.py), taken with a conditional write
  when it is free, expired or already ours, holding the rollout id (execution name), the
  execution ARN, the serial being installed and an expiry. This is the pattern of the
  amazon-dynamodb-lock-client (owner + lease duration, conditional writes, no read-then-write)
  and of Kubernetes' coordination.k8s.io Lease, the one cert-manager's controllers use for
  leader election (holderIdentity, leaseDurationSeconds, renewTime: a candidate takes over a
  lease not renewed within its duration). A crashed or aborted execution's lease is never
  renewed again and expires after LeaseSeconds; the abnormal-end notifier can release it at
  once with ``release_for_execution``.
* Renewal = fencing. Every install (and rollback) command of a target first renews the lease
  (``fence_target_command``, a conditional write on the holder): a rollout that no longer holds
  it sends nothing. The renewal keeps the lease alive while the rollout progresses, so
  LeaseSeconds only has to outlive one target's slowest step (LeaseSettings.safe_lease_seconds),
  not the whole rollout.
* Newest wins. Serials are random (not ordered), so "newer" cannot be read from two serials:
  ACM holds exactly one current certificate per ARN, and a rollout always exports that one, so
  the newest request is the one whose serial is ACM's current serial (DescribeCertificate now),
  and among those, the one that asked last (a manual ``force`` redeploy of the same serial
  included: it takes the lease like any rollout). A waiting request for the current serial
  marks the holder's lease superseded (Kubernetes' Lease has the same idea in
  ``preferredHolder``: a signal to the holder to give the lease up); the holder's remaining
  targets then end SUPERSEDED at their fence (no command sent), its in-flight targets finish
  (verify, rollback), it releases the lease, and the waiting rollout covers every target. This
  mirrors cert-manager's revision rule: a CertificateRequest of an older revision of a
  Certificate is never acted on once a newer revision exists.
* A request whose exported serial is no longer ACM's current (ACM renewed again since the
  export) is STALE: the state machine exports again, so the current serial is rolled out.

Nothing here touches key material: leases hold ARNs, rollout ids and serials only.
"""

from __future__ import annotations

import time
from datetime import datetime

from rollout_core import ports
from rollout_core.contracts import Action, LeaseInput, LeaseReleaseResult, LeaseResult
from rollout_core.domain.errors import InvalidSerial, RolloutError
from rollout_core.domain.serials import serials_equal
from rollout_core.observability import logger
from rollout_core.settings import InstallSettings, LeaseSettings

MAX_RETRY_AFTER_SECONDS = 30
MIN_RETRY_AFTER_SECONDS = 1


class Superseded(RolloutError):
    """The target is not installed by this rollout: a newer request for the certificate holds
    or waits for its lease (the target's outcome: SUPERSEDED, logic/outcome.py)."""


class LeaseNotHeld(RolloutError):
    """This rollout does not hold the certificate's lease and no other rollout does either
    (e.g. it expired and was released): nothing is sent to the target (FAILED, lease-not-held)."""


class InvalidLeaseRequest(RolloutError):
    """An AcquireLease payload without the field the operation needs (names it)."""


def _same_serial(a: str | None, b: str | None) -> bool:
    """Serials compared as integers (DESIGN.md); an unparseable or missing one is no match."""
    if not a or not b:
        return False
    try:
        return serials_equal(a, b)
    except InvalidSerial:
        return False


def retry_after_seconds(waited_seconds: int, holder_expires_in: int) -> int:
    """How long to wait before the next attempt, in seconds: a quarter of the time waited so
    far (a backoff that grows about 1.25x per attempt), at least 1 s, at most 30 s, and never
    past the holder's expiry (+1 s). Keeps a long wait to about 2 history events per 30 s."""
    delay = min(MAX_RETRY_AFTER_SECONDS, max(MIN_RETRY_AFTER_SECONDS, waited_seconds // 4))
    if holder_expires_in >= 0:
        delay = min(delay, holder_expires_in + 1)
    return max(MIN_RETRY_AFTER_SECONDS, delay)


def _waited_seconds(request: LeaseInput, now: int) -> int:
    if not request.executionStartTime:
        return 0
    try:
        started = datetime.fromisoformat(request.executionStartTime.replace("Z", "+00:00")).timestamp()
    except ValueError:
        raise InvalidLeaseRequest(f"executionStartTime {request.executionStartTime[:40]!r} is not an ISO 8601 "
                                  "time") from None
    return max(0, now - int(started))


def acquire_lease(request: LeaseInput, *, settings: LeaseSettings, leases: ports.Leases,
                  certificates: ports.Certificates, now: int | None = None) -> LeaseResult:
    """Try to take the certificate's lease for ``request.serial`` (the exported serial).

    Returns a LeaseResult: ACQUIRED (ours; possibly already marked superseded, then the fence
    ends every target SUPERSEDED), STALE (ACM's current serial is another one: export again),
    WAITING (held by another rollout, which is marked superseded; try again after
    ``retryAfterSeconds``) or GAVE_UP (the same holder kept it for longer than
    ``settings.max_wait_seconds`` while this execution waited). ``now`` is epoch seconds.
    Raises InvalidLeaseRequest, CertificateNotFound (ports) or a named AwsError (transient ones
    are retried by the state machine).
    Ports: ``certificates`` (DescribeCertificate: the current serial), ``leases``.
    """
    now = int(time.time()) if now is None else now
    if not request.serial or not request.executionArn:
        raise InvalidLeaseRequest("acquire needs serial and executionArn")
    arn, me = request.certificateArn, request.rolloutId
    if settings.lease_seconds < settings.safe_lease_seconds:
        logger.warning("LeaseSeconds is shorter than one target's slowest step: a live rollout's lease can expire",
                       extra={"lease_seconds": settings.lease_seconds, "safe_lease_seconds": settings.safe_lease_seconds})
    current = certificates.describe(arn).serial
    if not _same_serial(current, request.serial):
        logger.warning("ACM holds a newer serial than the exported one: exporting again",
                       extra={"certificate_arn": arn, "exported": request.serial, "current": current})
        return LeaseResult(state="STALE", serial=request.serial, currentSerial=current,
                           detail=f"ACM's current serial is {current}, not {request.serial}")
    try:
        lease = leases.acquire(arn, me, request.executionArn, request.serial, now=now,
                               duration_seconds=settings.lease_seconds)
    except ports.LeaseHeld as e:
        return _wait_for(request, e.lease, current, settings=settings, leases=leases, now=now)
    logger.info("lease acquired", extra={"certificate_arn": arn, "rollout_id": me, "serial": request.serial,
                                         "expires_at": lease.expires_at, "superseded": lease.superseded})
    return LeaseResult(state="ACQUIRED", serial=request.serial, currentSerial=current, holder=lease.holder,
                       holderSerial=lease.serial, expiresAt=lease.expires_at)


def _wait_for(request: LeaseInput, held: ports.Lease | None, current: str | None, *, settings: LeaseSettings,
              leases: ports.Leases, now: int) -> LeaseResult:
    """The lease is another rollout's: mark it superseded (we ask for ACM's current serial, so
    ours is the newer request) and wait, or give up after the longest wait."""
    arn, me = request.certificateArn, request.rolloutId
    waited = _waited_seconds(request, now)
    # The bound is per holder: how long this holder has kept us waiting. Each holder is an older
    # or equal request that stops installing once marked; a chain of holders is finite.
    held_for = min(waited, now - held.acquired_at) if held else 0
    result = LeaseResult(state="WAITING", serial=request.serial, currentSerial=current,
                         holder=held.holder if held else None, holderSerial=held.serial if held else None,
                         expiresAt=held.expires_at if held else None)
    if held_for > settings.max_wait_seconds:
        detail = (f"the lease of {arn} was still held by rollout {result.holder} (serial {result.holderSerial}) "
                  f"after {held_for} s (at most {settings.max_wait_seconds} s: 2 x LeaseSeconds + 60)")
        logger.warning("gave up waiting for the lease", extra={"certificate_arn": arn, "holder": result.holder})
        return result.model_copy(update={"state": "GAVE_UP", "detail": detail})
    if held is not None and held.superseded_by_rollout != me:
        marked = leases.mark_superseded(arn, held.holder, me, str(request.serial))
        logger.info("lease held by an older request: marked superseded",
                    extra={"certificate_arn": arn, "holder": held.holder, "holder_serial": held.serial,
                           "by": me, "marked": marked})
    expires_in = held.expires_at - now if held else 0
    return result.model_copy(update={"retryAfterSeconds": retry_after_seconds(waited, expires_in),
                                     "detail": f"waiting for rollout {result.holder} to stop"})


def release_lease(request: LeaseInput, *, leases: ports.Leases) -> LeaseReleaseResult:
    """ReleaseLease: give the lease up if this rollout holds it (every path after the Map).
    Raises a named AwsError."""
    released = leases.release(request.certificateArn, request.rolloutId)
    logger.info("lease released" if released else "no lease to release",
                extra={"certificate_arn": request.certificateArn, "rollout_id": request.rolloutId})
    return LeaseReleaseResult(released=released)


def release_for_execution(execution_arn: str, certificate_arn: str, *, leases: ports.Leases) -> bool:
    """Release the certificate's lease if the execution ``execution_arn`` holds it: for an
    execution that ended without reaching ReleaseLease (ABORTED, TIMED_OUT, a States.Runtime
    failure). The abnormal-end notifier calls this; without it the lease expires after
    LeaseSeconds. Returns True when a lease was released. Raises a named AwsError."""
    rollout_id = execution_arn.rsplit(":", 1)[-1]
    held = leases.get(certificate_arn)
    if held is None or held.holder != rollout_id:
        return False
    return leases.release(certificate_arn, rollout_id)


def fence_target_command(action: Action, certificate_arn: str, rollout_id: str, *, settings: InstallSettings,
                         leases: ports.Leases, now: int | None = None) -> ports.Lease:
    """Before a command is sent to a target: renew the lease (a conditional write on the
    holder) and refuse when this rollout must not write.

    Install: refused when the lease is marked superseded (Superseded) or held by another rollout
    (Superseded: it took over after our lease expired) or by none (LeaseNotHeld). Rollback of a
    target this rollout changed: allowed while the lease is ours, superseded or not (it finishes
    that target's restore before the newer rollout starts). Returns the renewed lease.
    Raises Superseded, LeaseNotHeld or a named AwsError. ``now`` is epoch seconds.
    """
    now = int(time.time()) if now is None else now
    lease = leases.renew(certificate_arn, rollout_id, now=now, duration_seconds=settings.lease_seconds)
    if lease is None:
        other = leases.get(certificate_arn)
        if other is not None:
            raise Superseded(f"superseded by serial {other.serial} (rollout {other.holder}), which holds the lease "
                             f"of {certificate_arn} now")
        raise LeaseNotHeld(f"rollout {rollout_id} does not hold the lease of {certificate_arn}: nothing sent")
    if action == "install" and lease.superseded:
        raise Superseded(f"superseded by serial {lease.superseded_by_serial} (rollout {lease.superseded_by_rollout}),"
                         " which installs on this target next")
    return lease
