"""The rollout lease (adapters/leases.py DynamoLeases) in memory: the same conditions as the
adapter's condition expressions, each write atomic (one method call), so a test interleaving
rollouts step by step sees what DynamoDB would decide."""

from __future__ import annotations

import dataclasses
from typing import Any

from rollout_core.ports import Lease, LeaseHeld

from tests.fakes.recording import Recording


class FakeLeases(Recording):
    """``leases`` maps certificate ARN -> Lease, as the adapter stores one item per certificate."""

    def __init__(self) -> None:
        super().__init__()
        self.leases: dict[str, Lease] = {}

    def state(self) -> Any:
        return {arn: dataclasses.asdict(lease) for arn, lease in self.leases.items()}

    def acquire(self, certificate_arn: str, rollout_id: str, execution_arn: str, serial: str, *,
                now: int, duration_seconds: int) -> Lease:
        self._record("acquire", certificate_arn=certificate_arn, rollout_id=rollout_id, execution_arn=execution_arn,
                     serial=serial, now=now, duration_seconds=duration_seconds)
        held = self.leases.get(certificate_arn)
        if held is None or held.expires_at <= now:  # free or expired: ours, mark cleared
            lease = Lease(certificate_arn=certificate_arn, holder=rollout_id, execution_arn=execution_arn,
                          serial=serial, acquired_at=now, expires_at=now + duration_seconds)
        elif held.holder == rollout_id:  # ours already: extended, mark kept
            lease = dataclasses.replace(held, expires_at=now + duration_seconds)
        else:
            raise LeaseHeld(certificate_arn, held)
        self.leases[certificate_arn] = lease
        return lease

    def renew(self, certificate_arn: str, rollout_id: str, *, now: int, duration_seconds: int) -> Lease | None:
        self._record("renew", certificate_arn=certificate_arn, rollout_id=rollout_id, now=now,
                     duration_seconds=duration_seconds)
        held = self.leases.get(certificate_arn)
        if held is None or held.holder != rollout_id:
            return None
        self.leases[certificate_arn] = dataclasses.replace(held, expires_at=now + duration_seconds)
        return self.leases[certificate_arn]

    def mark_superseded(self, certificate_arn: str, holder: str, by_rollout_id: str, by_serial: str) -> bool:
        self._record("mark_superseded", certificate_arn=certificate_arn, holder=holder, by_rollout_id=by_rollout_id,
                     by_serial=by_serial)
        held = self.leases.get(certificate_arn)
        if held is None or held.holder != holder:
            return False
        self.leases[certificate_arn] = dataclasses.replace(held, superseded_by_serial=by_serial,
                                                           superseded_by_rollout=by_rollout_id)
        return True

    def release(self, certificate_arn: str, rollout_id: str) -> bool:
        self._record("release", certificate_arn=certificate_arn, rollout_id=rollout_id)
        held = self.leases.get(certificate_arn)
        if held is None or held.holder != rollout_id:
            return False
        del self.leases[certificate_arn]
        return True

    def get(self, certificate_arn: str) -> Lease | None:
        self._record("get", certificate_arn=certificate_arn)
        return self.leases.get(certificate_arn)
