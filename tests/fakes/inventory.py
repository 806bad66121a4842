"""A dict-backed inventory (port rollout_core/ports.py Inventory; adapter adapters/dynamo.py
DynamoInventory): items keyed (certificateArn, targetId), stored raw as DynamoDB would."""

from __future__ import annotations

import copy
from collections.abc import Iterator, Sequence
from typing import Any

from rollout_core.models import Target
from rollout_core.ports import DeploymentState, TargetNotFound

from tests.fakes.recording import Recording


class FakeInventory(Recording):
    """``items`` maps (certificate ARN, target id) to the raw item; ``add`` stores any mapping
    (also one the Target model refuses, as a hand-edited table item can be)."""

    def __init__(self, *targets: Target | dict[str, Any]) -> None:
        super().__init__()
        self.items: dict[tuple[str, str], dict[str, Any]] = {}
        for target in targets:
            self.add(target)

    def add(self, target: Target | dict[str, Any]) -> None:
        """Store an item without validating it (test set-up, not a port operation)."""
        item = target.model_dump(exclude_none=True) if isinstance(target, Target) else copy.deepcopy(target)
        self.items[(item["certificateArn"], item["targetId"])] = item

    def state(self) -> Any:
        return list(self.items.values())

    def _of(self, certificate_arn: str) -> list[dict[str, Any]]:
        return [copy.deepcopy(i) for (arn, _), i in sorted(self.items.items()) if arn == certificate_arn]

    def get(self, certificate_arn: str, target_id: str) -> Target:
        self._record("get", certificate_arn=certificate_arn, target_id=target_id)
        item = self.items.get((certificate_arn, target_id))
        if item is None:
            raise TargetNotFound(f"target {target_id} of {certificate_arn} is not in the inventory")
        return Target.model_validate(copy.deepcopy(item))

    def targets_for(self, certificate_arn: str) -> list[Target]:
        self._record("targets_for", certificate_arn=certificate_arn)
        return [Target.model_validate(i) for i in self._of(certificate_arn)]

    def deployment_states(self, certificate_arn: str) -> list[DeploymentState]:
        self._record("deployment_states", certificate_arn=certificate_arn)
        return [DeploymentState(target_id=i["targetId"], last_deployed_serial=i.get("lastDeployedSerial"),
                                last_outcome=i.get("lastOutcome")) for i in self._of(certificate_arn)]

    def items_for(self, certificate_arn: str) -> list[dict[str, Any]]:
        self._record("items_for", certificate_arn=certificate_arn)
        return self._of(certificate_arn)

    def scan_pages(self, page_size: int = 100) -> Iterator[list[dict[str, Any]]]:
        self._record("scan_pages", page_size=page_size)
        if not 1 <= page_size <= 1000:
            raise ValueError(f"page_size must be 1..1000 items, got {page_size}")
        items = [copy.deepcopy(i) for _, i in sorted(self.items.items())]
        for start in range(0, len(items), page_size):
            yield items[start:start + page_size]
        if not items:
            yield []

    def put(self, target: Target) -> None:
        self._record("put", target=target.model_dump(exclude_none=True))
        self.add(target)

    def put_many(self, targets: Sequence[Target]) -> None:
        self._record("put_many", targets=[t.model_dump(exclude_none=True) for t in targets])
        for target in targets:
            self.add(target)

    def delete(self, certificate_arn: str, target_id: str) -> bool:
        self._record("delete", certificate_arn=certificate_arn, target_id=target_id)
        return self.items.pop((certificate_arn, target_id), None) is not None

    def mark_deployed(self, certificate_arn: str, target_id: str, serial: str, outcome: str,
                      at_iso: str) -> None:
        self._record("mark_deployed", certificate_arn=certificate_arn, target_id=target_id, serial=serial,
                     outcome=outcome, at_iso=at_iso)
        item = self.items.get((certificate_arn, target_id))
        if item is not None:  # a removed target is left alone (ConditionExpression in the adapter)
            item.update(lastDeployedSerial=serial, lastDeployedAt=at_iso, lastOutcome=outcome)
