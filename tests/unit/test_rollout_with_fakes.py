"""One rollout of one target through every step's logic on the fakes, the way the state
machine chains them, then a scan for key material (DESIGN.md hard rules): the key and the
passphrase appear in the staging store and in ACM's export call only: never in a step's
output, a command, a record, a task output, the notification or the logs."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from rollout_core.contracts import IterationState, RolloutState
from rollout_core.domain.staging import staged_secret_name
from rollout_core.logic.callback import CommandEvent, complete_waiting_task
from rollout_core.logic.commands import send_target_command
from rollout_core.logic.export import export_certificate
from rollout_core.logic.notify import notify
from rollout_core.logic.outcome import record_outcome
from rollout_core.logic.validate import validate_event
from rollout_core.logic.verify import verify_target
from rollout_core.models import RolloutOutcome
from rollout_core.settings import (
    ExportSettings,
    InstallSettings,
    RecordSettings,
    ValidateSettings,
    VerifySettings,
)

from tests.fakes import recorded_text
from tests.fakes.world import ARN, EXECUTION_ARN, target, world
from tests.unit.pki_fixtures import pki


def log_text(caplog: pytest.LogCaptureFixture) -> str:
    """Every log record with its extra fields (Powertools puts them on the record)."""
    assert caplog.records, "no log records captured: the scan would prove nothing"
    return "\n".join(json.dumps(vars(r), default=repr) for r in caplog.records)


def test_one_target_rollout_keeps_key_material_in_the_staging_store_only(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("INFO")
    w = world("EC_prime256v1")
    w.inventory.add(target("web-1"))
    new = pki("EC_prime256v1").served  # leaf and intermediate
    w.probe.script("127.0.0.1", 8443, pki("RSA_2048", label="old").leaf_cert)
    outputs: list[str] = []

    decided = validate_event({"certificateArn": ARN, "force": True}, EXECUTION_ARN, region="eu-west-1",
                             account_id="123456789012",
                             settings=ValidateSettings(inventory_table="inv", rollout_table="rollouts", idempotency_table="idem"),
                             certificates=w.certificates, inventory=w.inventory, claims=w.claims,
                             executions=w.executions, records=w.records)
    outputs.append(decided.model_dump_json())
    exported = export_certificate(ARN, decided.serial, EXECUTION_ARN, decided.targetIds,
                                  settings=ExportSettings(secret_prefix="acm-cert-rollout", kms_key_id="alias/k",
                                                          inventory_table="inv"),
                                  certificates=w.certificates, staging=w.staging, inventory=w.inventory,
                                  passwords=w.passwords, executions=w.executions)
    staged = w.staging.latest(staged_secret_name("acm-cert-rollout", ARN, decided.rolloutId))
    outputs.append(exported.model_dump_json())
    ref = send_target_command("install", ARN, "web-1", decided.rolloutId, exported.serial, exported.secretArn,
                              exported.secretVersionId,
                              settings=InstallSettings(inventory_table="inv", rollout_table="rollouts",
                                                       install_document="CertInstall",
                                                       installer_layer_arn="arn:aws:lambda:eu-west-1:123456789012:layer:InstallerLayer:1"),
                              inventory=w.inventory, commands=w.commands, waiting_tasks=w.waiting_tasks,
                              probe=w.probe, installer=w.installer, task_token="token-1")
    outputs.append(ref.model_dump_json())
    w.commands.finish(ref.commandId, "Success", stdout='ROLLOUT_RESULT {"status": "installed"}\n')
    complete_waiting_task(CommandEvent.model_validate(
                              {"source": "aws.ssm", "detail-type": "EC2 Command Invocation Status-change Notification",
                               "detail": {"command-id": ref.commandId, "instance-id": ref.instanceId,
                                          "status": "Success"}}),
                          commands=w.commands, waiting_tasks=w.waiting_tasks, callbacks=w.callbacks)
    install_output = w.callbacks.succeeded[0][1]
    w.probe.script("127.0.0.1", 8443, new)  # the node reloaded with the new files
    since = datetime.now(UTC) - timedelta(seconds=1)
    verified = verify_target(ARN, "web-1", exported.serial, since.isoformat(), exported.trustAnchor,
                             settings=VerifySettings(inventory_table="inv"), now=datetime.now(UTC),
                             inventory=w.inventory, probe=w.probe)
    outputs.append(verified.model_dump_json())
    recorded = record_outcome(IterationState.model_validate(
                                  {"targetId": "web-1", "certificateArn": ARN, "rolloutId": decided.rolloutId,
                                   "expectedSerial": exported.serial, "secretArn": exported.secretArn,
                                   "secretVersionId": exported.secretVersionId, "trustAnchor": exported.trustAnchor,
                                   "taskTimeoutSeconds": decided.taskTimeoutSeconds, "installCommand": install_output,
                                   "verify": verified.model_dump(mode="json")}),
                              settings=RecordSettings(inventory_table="inv", rollout_table="rollouts"),
                              inventory=w.inventory, records=w.records, probe=w.probe)
    outputs.append(recorded.model_dump_json())
    notified = notify(RolloutState.model_validate(decided.model_dump(mode="json")), records=w.records,
                      notifications=w.notifications, staging=w.staging, secret_prefix="acm-cert-rollout")
    outputs.append(notified.model_dump_json())

    assert (verified.state, recorded.outcome.value, notified.outcome) == ("VERIFIED", "VERIFIED",
                                                                           RolloutOutcome.ROLLED_OUT)
    assert w.inventory.items[(ARN, "web-1")]["lastDeployedSerial"] == exported.serial

    assert w.staging.secrets == {}  # Notify deleted the rollout's staged bundle
    [passphrase] = w.certificates.passphrases()
    secrets = [passphrase.decode(), *staged["privateKey"].splitlines()[1:-1]]
    everything_else = "\n".join(outputs) + recorded_text(
        *(f for f in w.fakes() if f not in (w.staging, w.certificates))) + log_text(caplog)
    assert json.loads(recorded_text(w.certificates))  # ACM's fake holds the passphrase: it was called with it
    assert "PRIVATE KEY" not in everything_else
    leaked = [s for s in secrets if s in everything_else]
    assert not leaked, f"key material outside the staging store: {leaked[:1]}"
