"""Every adapter (rollout_core/adapters/) and every fake (tests/fakes/) has each method of its
port (rollout_core/ports.py) with the port's parameter names and kinds, so a test on a fake
exercises the call the handler makes on the adapter."""

from __future__ import annotations

import inspect

import pytest
from rollout_core import ports
from rollout_core.adapters.acm import AcmCertificates
from rollout_core.adapters.claims import PowertoolsClaims
from rollout_core.adapters.dynamo import DynamoInventory, DynamoRolloutRecords, DynamoWaitingTasks
from rollout_core.adapters.installer_source import LayerInstallerSource
from rollout_core.adapters.leases import DynamoLeases
from rollout_core.adapters.secrets import SecretsManagerKeystorePasswords, SecretsManagerStaging
from rollout_core.adapters.sns import SnsNotifications
from rollout_core.adapters.ssm import SsmCommands
from rollout_core.adapters.stepfunctions import StepFunctionsCallbacks, StepFunctionsExecutions
from rollout_core.adapters.tls import SocketTlsProbe

from tests import fakes

IMPLEMENTATIONS: dict[type, tuple[type, type]] = {
    ports.Inventory: (DynamoInventory, fakes.FakeInventory),
    ports.Certificates: (AcmCertificates, fakes.FakeCertificates),
    ports.BundleStaging: (SecretsManagerStaging, fakes.FakeStaging),
    ports.KeystorePasswords: (SecretsManagerKeystorePasswords, fakes.FakeKeystorePasswords),
    ports.Commands: (SsmCommands, fakes.FakeCommands),
    ports.WaitingTasks: (DynamoWaitingTasks, fakes.FakeWaitingTasks),
    ports.TaskCallbacks: (StepFunctionsCallbacks, fakes.FakeCallbacks),
    ports.Notifications: (SnsNotifications, fakes.FakeNotifications),
    ports.RolloutRecords: (DynamoRolloutRecords, fakes.FakeRolloutRecords),
    ports.RolloutClaims: (PowertoolsClaims, fakes.FakeClaims),
    ports.Executions: (StepFunctionsExecutions, fakes.FakeExecutions),
    ports.TlsProbe: (SocketTlsProbe, fakes.FakeProbe),
    ports.InstallerSource: (LayerInstallerSource, fakes.FakeInstallerSource),
    ports.Leases: (DynamoLeases, fakes.FakeLeases),
}


def port_methods(port: type) -> list[str]:
    return [name for name, value in vars(port).items() if inspect.isfunction(value) and not name.startswith("_")]


def shape(function: object) -> list[tuple[str, object, bool]]:
    """(name, kind, has default) of every parameter but self."""
    return [(p.name, p.kind, p.default is not inspect.Parameter.empty)
            for p in inspect.signature(function).parameters.values() if p.name != "self"]  # type: ignore[arg-type]


def test_every_port_has_an_adapter_and_a_fake() -> None:
    declared = {v for v in vars(ports).values()
                if isinstance(v, type) and getattr(v, "_is_protocol", False) and v.__module__ == ports.__name__}
    assert declared == set(IMPLEMENTATIONS)


@pytest.mark.parametrize("port", list(IMPLEMENTATIONS), ids=lambda p: p.__name__)
def test_adapter_and_fake_match_the_ports_signatures(port: type) -> None:
    methods = port_methods(port)
    assert methods, port
    for implementation in IMPLEMENTATIONS[port]:
        for name in methods:
            assert hasattr(implementation, name), f"{implementation.__name__} lacks {port.__name__}.{name}"
            assert shape(getattr(implementation, name)) == shape(getattr(port, name)), (
                f"{implementation.__name__}.{name} differs from {port.__name__}.{name}")


def test_fakes_are_instances_of_their_ports() -> None:
    for port, (_, fake) in IMPLEMENTATIONS.items():
        assert isinstance(fake(), port), fake.__name__
