"""In-memory fakes of every port in rollout_core/ports.py, for unit tests of logic/*.py.

Each fake behaves as its port's docstring says (named errors included) and records what it
was asked in ``calls`` (operation, arguments), so a test can read everything that left the
logic: ``recorded_text(*fakes)`` is that, as one string, for key-material scans.
"""

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
from tests.fakes.leases import FakeLeases
from tests.fakes.probe import FakeProbe
from tests.fakes.recording import Recording, recorded_text

__all__ = [
    "FakeCallbacks", "FakeCertificates", "FakeClaims", "FakeCommands", "FakeExecutions", "FakeInstallerSource",
    "FakeInventory", "FakeKeystorePasswords", "FakeLeases", "FakeNotifications",
    "FakeProbe", "FakeRolloutRecords", "FakeStaging", "FakeWaitingTasks", "Recording", "recorded_text",
]
