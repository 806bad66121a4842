"""The rollout's staged bundle on the fakes (logic/staging.py, logic/export.py, logic/notify.py,
functions/notify_abnormal_end): created without a value, then its resource policy naming exactly
the rollout's target nodes, then the value; keystore passwords staged by the export role; deleted
when the rollout ends (Notify, abnormal end) and swept when its rollout has ended (issue 11)."""

from __future__ import annotations

import json

import pytest
from rollout_core.adapters.errors import AwsPermanentError, AwsThrottled
from rollout_core.contracts import RolloutState
from rollout_core.domain.staging import EC2_SOURCE_KEY, EXECUTION_TAG, SSM_SOURCE_KEY, staged_secret_name
from rollout_core.logic.export import export_certificate
from rollout_core.logic.notify import notify
from rollout_core.logic.staging import sweep_ended_rollouts
from rollout_core.settings import ExportSettings

from tests.fakes.world import ARN, EXECUTION_ARN, ROLLOUT_ID, World, target, world
from tests.unit.pki_fixtures import pki

PREFIX = "acm-cert-rollout"
SETTINGS = ExportSettings(secret_prefix=PREFIX, kms_key_id="alias/cert-rollout", inventory_table="inv")
NAME = staged_secret_name(PREFIX, ARN, ROLLOUT_ID)
OTHER_ARN = "arn:aws:acm:eu-west-1:123456789012:certificate/0b1c2d3e-aaaa-bbbb-cccc-123456789012"
KEYSTORE = f"{PREFIX}/keystores/web"


def export(w: World, target_ids: list[str], execution_arn: str = EXECUTION_ARN, certificate_arn: str = ARN):
    return export_certificate(certificate_arn, None, execution_arn, target_ids, settings=SETTINGS,
                              certificates=w.certificates, staging=w.staging, inventory=w.inventory,
                              passwords=w.passwords, executions=w.executions)


def keystore_target(target_id: str, secret: str = KEYSTORE, **changes):
    return target(target_id, server="java", files=[
        {"path": f"/opt/tomcat/conf/{target_id}.p12", "content": "pkcs12", "passwordSecret": secret}],
        testCommand=None, reloadCommand=None, **changes)


@pytest.fixture
def w() -> World:
    w = world()
    w.inventory.add(target("web-1", instanceId="i-0123456789abcdef0"))
    w.inventory.add(target("web-2", instanceId="mi-0123456789abcdef1"))
    w.inventory.add(target("web-3", instanceId="i-0fedcba9876543210"))  # not in this rollout
    return w


def test_the_secret_is_created_without_a_value_then_the_policy_then_the_value(w: World) -> None:
    result = export(w, ["web-1", "web-2"])
    staging = [(op, args) for op, args in w.staging.calls if op != "list_staged"]
    assert [op for op, _ in staging] == ["create_empty", "put_policy", "put_value"]
    assert all(args["name"] == NAME for _, args in staging)
    create = staging[0][1]
    assert "secret_string" not in create and create["tags"][EXECUTION_TAG] == EXECUTION_ARN
    assert result.secretArn.split(":secret:")[1].startswith(NAME)


def test_the_policy_names_exactly_the_rollouts_target_nodes(w: World) -> None:
    export(w, ["web-1", "web-2"])
    (statement,) = w.staging.policies[NAME]["Statement"]
    assert (statement["Effect"], statement["Principal"], statement["Action"]) == (
        "Deny", "*", "secretsmanager:GetSecretValue")
    assert statement["Condition"]["ArnNotEquals"] == {
        EC2_SOURCE_KEY: ["arn:aws:ec2:eu-west-1:123456789012:instance/i-0123456789abcdef0"],
        SSM_SOURCE_KEY: ["arn:aws:ssm:eu-west-1:123456789012:managed-instance/mi-0123456789abcdef1"],
    }  # web-3's node is not in the rollout: denied


def test_an_invalid_inventory_item_is_not_a_reader_and_does_not_stop_the_export(w: World) -> None:
    w.inventory.items[(ARN, "web-2")]["port"] = "443"  # fails the Target model: its iteration fails later
    export(w, ["web-1", "web-2"])
    condition = w.staging.policies[NAME]["Statement"][0]["Condition"]["ArnNotEquals"]
    assert condition == {EC2_SOURCE_KEY: ["arn:aws:ec2:eu-west-1:123456789012:instance/i-0123456789abcdef0"]}


def test_a_retried_export_keeps_the_secret_and_puts_the_policy_before_the_new_value(w: World) -> None:
    w.staging.errors["put_value"] = [AwsThrottled("PutSecretValue", "ThrottlingException", "slow down")]
    with pytest.raises(AwsThrottled):
        export(w, ["web-1"])
    assert w.staging.secrets[NAME] == []  # created, policy on, no value: nothing to read
    assert NAME in w.staging.policies
    export(w, ["web-1"])  # the state machine's retry
    ops = [op for op, _ in w.staging.calls if op != "list_staged"]
    assert ops == ["create_empty", "put_policy", "put_value", "create_empty", "put_policy", "put_value"]
    assert len(w.staging.secrets[NAME]) == 1


def test_keystore_passwords_are_staged_for_the_targets_that_name_them(w: World) -> None:
    w.inventory.add(keystore_target("java-1", instanceId="i-00000000000000aa1"))
    w.inventory.add(keystore_target("java-2", f"{PREFIX}/keystores/gone", instanceId="i-00000000000000aa2"))
    w.inventory.add(keystore_target("java-3", "other/keystores/web", instanceId="i-00000000000000aa3"))
    w.inventory.add(keystore_target("java-4", f"{PREFIX}/keystores/not-this-rollout"))
    w.passwords.passwords = {KEYSTORE: "Kx9-secret+Store/Pass", f"{PREFIX}/keystores/not-this-rollout": "no"}
    export(w, ["java-1", "java-2", "java-3"])
    staged = w.staging.latest(NAME)
    assert staged["passwords"] == {KEYSTORE: "Kx9-secret+Store/Pass"}
    assert staged["passwordErrors"] == {
        f"{PREFIX}/keystores/gone": "ExportCertificate could not read it: ResourceNotFoundException",
        "other/keystores/web": (f"passwordSecret 'other/keystores/web' is not under {PREFIX}/keystores/: "
                                "ExportCertificate reads keystore passwords only there")}
    assert [a["secret_id"] for op, a in w.passwords.calls] == [f"{PREFIX}/keystores/gone", KEYSTORE]


def test_a_throttled_password_read_fails_the_export_for_a_retry(w: World) -> None:
    w.inventory.add(keystore_target("java-1"))
    w.passwords.errors[KEYSTORE] = AwsThrottled("GetSecretValue", "ThrottlingException", "slow down")
    with pytest.raises(AwsThrottled):
        export(w, ["java-1"])
    assert w.staging.operations() == []


def rollout_state(decision: str = "ROLLOUT", **changes) -> RolloutState:
    return RolloutState.model_validate({"decision": decision, "certificateArn": ARN, "rolloutId": ROLLOUT_ID,
                                        "targetIds": ["web-1"], **changes})


@pytest.mark.parametrize("decision", ["ROLLOUT", "EXPORT_FAILED", "LEASE_FAILED"])
def test_notify_deletes_the_staged_bundle_before_publishing(w: World, decision: str) -> None:
    export(w, ["web-1"])
    order: list[str] = []
    w.staging.delete = (lambda f: lambda name: order.append("delete") or f(name))(w.staging.delete)  # type: ignore[method-assign]
    w.notifications.publish = (lambda f: lambda *a: order.append("publish") or f(*a))(w.notifications.publish)  # type: ignore[method-assign]
    notify(rollout_state(decision), records=w.records, notifications=w.notifications, staging=w.staging,
           secret_prefix=PREFIX)
    assert order == ["delete", "publish"] and w.staging.secrets == {}


def test_notify_of_a_rejected_event_deletes_nothing(w: World) -> None:
    notify(RolloutState.model_validate({"decision": "REJECTED", "rolloutId": ROLLOUT_ID}), records=w.records,
           notifications=w.notifications, staging=w.staging, secret_prefix=PREFIX)
    assert w.staging.operations() == [] and len(w.notifications.messages) == 1


def test_a_throttled_delete_fails_notify_before_publishing_and_a_denied_one_still_publishes(w: World) -> None:
    export(w, ["web-1"])
    w.staging.errors["delete"] = [AwsThrottled("DeleteSecret", "ThrottlingException", "slow"),
                                  AwsPermanentError("DeleteSecret", "AccessDeniedException", "denied")]
    with pytest.raises(AwsThrottled):
        notify(rollout_state(), records=w.records, notifications=w.notifications, staging=w.staging,
               secret_prefix=PREFIX)
    assert w.notifications.messages == []
    notify(rollout_state(), records=w.records, notifications=w.notifications, staging=w.staging,
           secret_prefix=PREFIX)
    assert len(w.notifications.messages) == 1 and NAME in w.staging.secrets  # left to the sweep


def test_an_abnormal_end_deletes_the_staged_bundle(w: World, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {"ROLLOUT_TABLE": "rollouts", "TOPIC_ARN": "arn:aws:sns:eu-west-1:123456789012:t",
                        "STATE_MACHINE_ARN": "arn:aws:states:eu-west-1:123456789012:stateMachine:CertRollout",
                        "SECRET_PREFIX": PREFIX, "INVENTORY_TABLE": "inv", "AWS_DEFAULT_REGION": "eu-west-1"}.items():
        monkeypatch.setenv(name, value)
    from rollout_core.logic.abnormal_end import AbnormalEnd

    from functions.notify_abnormal_end import app

    export(w, ["web-1"])
    monkeypatch.setattr(app, "STAGING", w.staging)
    # another test may have imported the handler first, with its own environment
    monkeypatch.setattr(app, "SETTINGS", app.SETTINGS.model_copy(update={"secret_prefix": PREFIX}))
    end = AbnormalEnd(execution_arn=EXECUTION_ARN, rollout_id=ROLLOUT_ID, status="ABORTED", certificate_arn=ARN,
                      error=None, cause=None)
    assert app.delete_staged_bundle in app.ON_ABNORMAL_END
    app.delete_staged_bundle(end)
    app.delete_staged_bundle(end)  # idempotent: a redelivered event
    assert w.staging.secrets == {}
    assert [op for op, _ in w.staging.calls][-2:] == ["delete", "delete"]


def test_the_sweep_deletes_the_bundles_of_ended_rollouts_only(w: World) -> None:
    w.certificates.add(OTHER_ARN, pki())
    machine = EXECUTION_ARN.rsplit(":", 1)[0]
    ended = {"rollout-failed": "FAILED", "rollout-aborted": "ABORTED", "rollout-done": "SUCCEEDED",
             "rollout-gone": None, "rollout-running": "RUNNING"}
    for rollout_id, status in ended.items():
        if status is not None:
            w.executions.add(f"{machine}:{rollout_id}", status)
        export(w, ["web-1"], f"{machine}:{rollout_id}", OTHER_ARN if rollout_id == "rollout-running" else ARN)
    # every export above swept the ones before it that had ended: only the running one is left ...
    assert sorted(w.staging.secrets) == [staged_secret_name(PREFIX, OTHER_ARN, "rollout-running")]
    # ... and a crashed rollout's staging (RUNNING when it was staged, ended since) goes at the next export
    w.executions.add(f"{machine}:rollout-running", "TIMED_OUT")
    export(w, ["web-1"])
    assert sorted(w.staging.secrets) == [NAME]  # the current rollout's own bundle stays


def test_the_sweep_leaves_untagged_secrets_and_survives_errors(w: World) -> None:
    untagged = f"{PREFIX}/staged/x/rollout-9"
    w.staging.create_empty(untagged, kms_key_id="k", description="d", tags={})
    assert sweep_ended_rollouts(PREFIX, current_execution_arn=EXECUTION_ARN, staging=w.staging,
                                executions=w.executions) == []
    w.staging.errors["list_staged"] = [AwsPermanentError("ListSecrets", "AccessDeniedException", "denied")]
    assert sweep_ended_rollouts(PREFIX, current_execution_arn=EXECUTION_ARN, staging=w.staging,
                                executions=w.executions) == []
    assert untagged in w.staging.secrets


def test_the_staged_document_is_the_only_place_the_password_goes(w: World, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("INFO")
    w.inventory.add(keystore_target("java-1"))
    w.passwords.passwords = {KEYSTORE: "Kx9-secret+Store/Pass"}
    result = export(w, ["java-1"])
    logs = "\n".join(json.dumps(vars(r), default=repr) for r in caplog.records)
    assert "Kx9-secret+Store/Pass" not in logs + result.model_dump_json() + json.dumps(w.staging.calls, default=repr)
