"""One set of fakes wired the way the handlers wire the adapters, with a private PKI and an
inventory to start from (tests/unit/test_*_with_fakes.py)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from rollout_core.models import Target

from tests.fakes.aws import (
    FakeCallbacks,
    FakeCertificates,
    FakeClaims,
    FakeCommands,
    FakeExecutions,
    FakeInstallerSource,
    FakeKeystorePasswords,
    FakeNotifications,
    FakeRolloutRecords,
    FakeStaging,
    FakeWaitingTasks,
)
from tests.fakes.inventory import FakeInventory
from tests.fakes.probe import FakeProbe
from tests.fakes.recording import Recording
from tests.unit.pki_fixtures import pki

ARN = "arn:aws:acm:eu-west-1:123456789012:certificate/6f1e2d3c-4b5a-4987-8c6d-5e4f3a2b1c0d"  # events/statemachine/*.json
EXECUTION_ARN = "arn:aws:states:eu-west-1:123456789012:execution:CertRollout:rollout-1"
ROLLOUT_ID = "rollout-1"


def target(target_id: str = "web-1", *, port: int = 8443, **changes: Any) -> Target:
    """A valid nginx target on 127.0.0.1:``port`` with SNI web.internal.example."""
    data: dict[str, Any] = {
        "certificateArn": ARN, "targetId": target_id, "host": "127.0.0.1", "port": port,
        "sni": "web.internal.example", "instanceId": "mi-0123456789abcdef0", "server": "nginx",
        "files": [{"path": f"/etc/nginx/tls/{target_id}.fullchain.pem", "content": "fullchain", "mode": "0644"},
                  {"path": f"/etc/nginx/tls/{target_id}.key", "content": "key", "mode": "0600"}],
        "testCommand": ["nginx", "-t"], "reloadCommand": ["nginx", "-s", "reload"],
    }
    return Target.model_validate({**data, **changes})


@dataclass
class World:
    """Every fake port, plus the certificate ARN registered in ``certificates``."""

    certificates: FakeCertificates = field(default_factory=FakeCertificates)
    staging: FakeStaging = field(default_factory=FakeStaging)
    inventory: FakeInventory = field(default_factory=FakeInventory)
    commands: FakeCommands = field(default_factory=FakeCommands)
    waiting_tasks: FakeWaitingTasks = field(default_factory=FakeWaitingTasks)
    callbacks: FakeCallbacks = field(default_factory=FakeCallbacks)
    notifications: FakeNotifications = field(default_factory=FakeNotifications)
    records: FakeRolloutRecords = field(default_factory=FakeRolloutRecords)
    claims: FakeClaims = field(default_factory=FakeClaims)
    executions: FakeExecutions = field(default_factory=FakeExecutions)
    probe: FakeProbe = field(default_factory=FakeProbe)
    installer: FakeInstallerSource = field(default_factory=FakeInstallerSource)
    passwords: FakeKeystorePasswords = field(default_factory=FakeKeystorePasswords)

    def fakes(self) -> list[Recording]:
        return [self.certificates, self.staging, self.inventory, self.commands, self.waiting_tasks,
                self.callbacks, self.notifications, self.records, self.claims, self.executions, self.probe,
                self.installer, self.passwords]


def world(algorithm: str = "RSA_2048") -> World:
    """Fakes with ARN registered in ACM (a private, issued certificate of ``algorithm``)."""
    w = World()
    w.certificates.add(ARN, pki(algorithm))
    return w
