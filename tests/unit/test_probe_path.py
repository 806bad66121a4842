"""One probe path (issue 12, item 4): InstallOnTarget's probe before the install, VerifyTarget's
probes and RecordTargetOutcome's probe after all go through logic/observe.py observe, and a
target is probed no more than needed: on the happy path 1 handshake before, ``probes`` in
verification, none after (VerifyTarget's result already says what is served)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from rollout_core.contracts import IterationState
from rollout_core.domain.serials import canonical_serial
from rollout_core.logic.commands import send_target_command
from rollout_core.logic.outcome import record_outcome
from rollout_core.logic.verify import verify_target
from rollout_core.settings import InstallSettings, RecordSettings, VerifySettings

from tests.fakes.world import ARN, ROLLOUT_ID, target, world
from tests.unit.pki_fixtures import pki

LOGIC = Path(__file__).resolve().parents[2] / "layers" / "core" / "rollout_core" / "logic"
INSTALL = InstallSettings(inventory_table="inv", rollout_table="rollouts", install_document="CertInstall",
                          installer_layer_arn="arn:aws:lambda:eu-west-1:123456789012:layer:InstallerLayer:1")
P = pki()
NEW_SERIAL = canonical_serial(P.leaf_cert.serial_number)


def iteration(verify: dict[str, object], **steps: object) -> IterationState:
    return IterationState.model_validate({
        "targetId": "web-1", "certificateArn": ARN, "rolloutId": ROLLOUT_ID, "expectedSerial": NEW_SERIAL,
        "secretArn": "arn:aws:secretsmanager:eu-west-1:123456789012:secret:s-AbCdEf", "secretVersionId": "v1",
        "taskTimeoutSeconds": 1260, "trustAnchor": P.root_pem,
        "installCommand": {"state": "SUCCEEDED", "endpoint": "127.0.0.1:8443", "servedSerialBefore": "01:02"},
        "verify": verify, **steps})


@pytest.mark.parametrize("probes", [1, 3, 5])
def test_happy_path_handshakes_are_one_before_probes_in_verify_and_none_after(probes: int) -> None:
    w = world()
    w.inventory.add(target("web-1", probes=probes))
    w.probe.script("127.0.0.1", 8443, pki("RSA_2048", label="old").served)
    send_target_command("install", ARN, "web-1", ROLLOUT_ID, NEW_SERIAL, "arn:secret", "v1", settings=INSTALL,
                        inventory=w.inventory, commands=w.commands, waiting_tasks=w.waiting_tasks, probe=w.probe,
                        installer=w.installer, task_token="t")
    assert w.probe.handshakes() == 1
    w.probe.script("127.0.0.1", 8443, P.served)
    now = datetime.now(UTC)
    verified = verify_target(ARN, "web-1", NEW_SERIAL, (now - timedelta(seconds=1)).isoformat(), P.root_pem,
                             settings=VerifySettings(inventory_table="inv"), now=now, inventory=w.inventory,
                             probe=w.probe)
    assert verified.state == "VERIFIED" and w.probe.handshakes() == 1 + probes
    record = record_outcome(iteration(verified.model_dump(mode="json")),
                            settings=RecordSettings(inventory_table="inv", rollout_table="rollouts"),
                            inventory=w.inventory, records=w.records, probe=w.probe)
    assert (record.outcome.value, record.servedSerialAfter) == ("VERIFIED", NEW_SERIAL)
    assert w.probe.handshakes() == 1 + probes  # nothing probed after


def test_after_a_rollback_the_outcome_probes_once_what_is_served_again() -> None:
    w = world()
    w.inventory.add(target("web-1"))
    old = pki("RSA_2048", label="old").served
    w.probe.script("127.0.0.1", 8443, old)
    verify = {"state": "NOT_SERVING", "since": "2026-11-28T06:01:41Z", "pollIntervalSeconds": 5,
              "servedSerial": NEW_SERIAL, "reason": "chain-invalid", "detail": "leaf only"}
    record = record_outcome(iteration(verify, rollbackCommand={"state": "SUCCEEDED", "filesChanged": "yes"}),
                            settings=RecordSettings(inventory_table="inv", rollout_table="rollouts"),
                            inventory=w.inventory, records=w.records, probe=w.probe)
    assert (record.outcome.value, record.reason) == ("ROLLED_BACK", "chain-invalid")
    assert record.servedSerialAfter == canonical_serial(old[0].serial_number) and w.probe.handshakes() == 1


def test_only_the_observe_module_calls_the_probe_port() -> None:
    callers = sorted(p.name for p in LOGIC.glob("*.py") if re.search(r"\.served_certificate\(", p.read_text()))
    assert callers == ["observe.py"]
