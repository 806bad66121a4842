"""events/: every function's sample event is what the state machine sends that function and
what its handler's input model accepts; every EventBridge sample parses as the kind
cases/README.md expects and is routed by the template's own rules."""

from __future__ import annotations

import importlib
import json
import sys
from datetime import datetime
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from moto.events.models import EventPattern
from pydantic import BaseModel
from rollout_core import contracts
from rollout_core.domain.events import RequestKind, parse_event
from rollout_core.domain.serials import canonical_serial
from rollout_core.logic.callback import CommandEvent
from samtranslator.yaml_helper import yaml_parse

ROOT = Path(__file__).resolve().parents[2]
EVENTS = ROOT / "events"
REGION = "eu-west-1"
ACCOUNT = "123456789012"
ARN = f"arn:aws:acm:{REGION}:{ACCOUNT}:certificate/6f1e2d3c-4b5a-4987-8c6d-5e4f3a2b1c0d"

# What each handler reads from its environment at import (template values stand-ins).
FUNCTION_ENV = {
    "AWS_REGION": REGION,
    "AWS_DEFAULT_REGION": REGION,
    "POWERTOOLS_TRACE_DISABLED": "true",
    "POWERTOOLS_SERVICE_NAME": "cert-rollout",
    "POWERTOOLS_METRICS_NAMESPACE": "CertRollout",
    "INVENTORY_TABLE": "cert-rollout-InventoryTable",
    "ROLLOUT_TABLE": "cert-rollout-RolloutTable",
    "IDEMPOTENCY_TABLE": "cert-rollout-IdempotencyTable",
    "STATE_MACHINE_ARN": "arn:aws:states:eu-west-1:123456789012:stateMachine:RolloutStateMachine-ABCDEF123456",
    "SECRET_PREFIX": "cert-rollout",
    "KMS_KEY_ID": f"arn:aws:kms:{REGION}:{ACCOUNT}:key/0d9c8b7a-6f5e-4d3c-2b1a-0f9e8d7c6b5a",
    "INSTALL_DOCUMENT": "cert-rollout-InstallBundleDocument",
    "INSTALLER_LAYER_ARN": f"arn:aws:lambda:{REGION}:{ACCOUNT}:layer:InstallerLayer:1",
    "TOPIC_ARN": f"arn:aws:sns:{REGION}:{ACCOUNT}:t",
}

# cases/README.md, "Events": file -> the kind parse_event must give it.
EXPECTED_KINDS = {
    "health-renewal-completed.json": RequestKind.RENEWAL_COMPLETED,
    "acm-certificate-available-renewal.json": RequestKind.RENEWAL_COMPLETED,
    "health-renewal-failure.json": RequestKind.RENEWAL_FAILED,
    "acm-renewal-action-required.json": RequestKind.RENEWAL_ACTION_REQUIRED,
    "manual-redeploy.json": RequestKind.MANUAL_REDEPLOY,
    # issue 15, item 5: AWS_ACM_RENEWAL_STATE_CHANGE also announces expiry; not a renewal
    "health-due-to-expire.json": RequestKind.EXPIRY_NOTICE,
    "health-expired.json": RequestKind.EXPIRY_NOTICE,
}
# ValidateEvent payloads (sam local invoke ValidateEventFunction -e events/<name>) beside validate_event.json.
EXPIRY_INVOKE_SAMPLES = ("health-due-to-expire.json", "health-expired.json")


def substitute(text: str) -> str:
    for placeholder, value in (("${CertificateArn}", ARN), ("${Region}", REGION), ("${AccountId}", ACCOUNT)):
        text = text.replace(placeholder, value)
    return text


def load_json(path: Path) -> Any:
    return json.loads(path.read_text())


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return yaml_parse((ROOT / "template.yaml").read_text())


@pytest.fixture(scope="module")
def asl() -> dict[str, Any]:
    return load_json(ROOT / "statemachine" / "rollout.asl.json")


def function_dirs(template: dict[str, Any]) -> dict[str, str]:
    """{template logical id: functions/<dir> name} of every function."""
    found = {}
    for logical_id, resource in template["Resources"].items():
        if resource["Type"] == "AWS::Serverless::Function":
            found[logical_id] = Path(resource["Properties"]["CodeUri"]).name
    return found


FUNCTION_DIRS = sorted(p.parent.name for p in (ROOT / "functions").glob("*/app.py"))


def import_handler(name: str, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """Import functions.<name>.app with its environment set (settings are read at import)."""
    for key, value in FUNCTION_ENV.items():
        monkeypatch.setenv(key, value)
    module_name = f"functions.{name}.app"
    monkeypatch.delitem(sys.modules, module_name, raising=False)
    return importlib.import_module(module_name)


# What each handler parses its event with (rollout_core.contracts; CommandCallback's is the
# EventBridge event model of logic.callback).
FUNCTION_INPUTS: dict[str, type[BaseModel]] = {
    "validate_event": contracts.ValidateInput,
    "export_certificate": contracts.ExportInput,
    "install_target": contracts.TargetCommandInput,
    "command_callback": CommandEvent,
    "verify_target": contracts.VerifyInput,
    "record_outcome": contracts.RecordInput,
    "notify": contracts.NotifyInput,
    "lease": contracts.LeaseInput,
    "notify_abnormal_end": contracts.ExecutionStatusChange,
}


def input_model(name: str, module: ModuleType) -> type[BaseModel]:
    """The handler's input model: the contract it imports; it defines no model of its own."""
    own = [v.__name__ for v in vars(module).values()
           if isinstance(v, type) and issubclass(v, BaseModel) and v.__module__ == module.__name__]
    assert not own, f"{module.__name__} defines {own}: state shapes belong in rollout_core.contracts"
    model = FUNCTION_INPUTS[name]
    assert vars(module).get(model.__name__) is model, f"{module.__name__} does not parse with {model.__name__}"
    return model


def payload_tasks(asl: dict[str, Any], function_logical_id: str) -> list[tuple[str, dict[str, Any]]]:
    """(state name, Parameters.Payload) of every Task invoking that function, nested Map included."""
    found = []

    def visit(states: dict[str, Any]) -> None:
        for name, state in states.items():
            params = state.get("Parameters") or {}
            if state["Type"] == "Task" and params.get("FunctionName") == "${" + function_logical_id + "Arn}":
                found.append((name, params["Payload"]))
            if "ItemProcessor" in state:
                visit(state["ItemProcessor"]["States"])

    visit(asl["States"])
    return found


def payload_keys(payload: dict[str, Any]) -> set[str]:
    return {key.removesuffix(".$") for key in payload}


# --- one sample per function -----------------------------------------------------------


def test_every_function_has_a_sample_event(template: dict[str, Any]) -> None:
    assert sorted(function_dirs(template).values()) == FUNCTION_DIRS
    assert sorted(FUNCTION_INPUTS) == FUNCTION_DIRS
    missing = [name for name in FUNCTION_DIRS if not (EVENTS / f"{name}.json").is_file()]
    assert not missing, f"events/<function>.json missing for {missing}"


# Functions started by an EventBridge rule, not by a Task of the state machine.
EVENT_DRIVEN = {"command_callback", "notify_abnormal_end"}
TASK_FUNCTIONS = [name for name in FUNCTION_DIRS if name not in EVENT_DRIVEN]


def test_command_callback_sample_is_an_ssm_status_change_routed_by_its_rule(template: dict[str, Any]) -> None:
    from moto.events.models import EventPattern

    event = load_json(EVENTS / "command_callback.json")
    rule = template["Resources"]["CommandCallbackFunction"]["Properties"]["Events"]["CommandStatusChange"]
    pattern = json.loads(json.dumps(rule["Properties"]["Pattern"]))
    pattern["detail"]["document-name"] = [event["detail"]["document-name"]]  # !Ref resolved at deploy
    assert EventPattern.load(json.dumps(pattern)).matches_event(event)


def test_notify_abnormal_end_sample_is_a_status_change_routed_by_its_rule(template: dict[str, Any]) -> None:
    from moto.events.models import EventPattern

    event = load_json(EVENTS / "notify_abnormal_end.json")
    rule = template["Resources"]["NotifyAbnormalEndFunction"]["Properties"]["Events"]["ExecutionAbnormalEnd"]
    pattern = json.loads(json.dumps(rule["Properties"]["Pattern"]))
    pattern["detail"]["stateMachineArn"] = [event["detail"]["stateMachineArn"]]  # !Ref resolved at deploy
    assert EventPattern.load(json.dumps(pattern)).matches_event(event)
    for status in ("SUCCEEDED", "RUNNING"):  # only abnormal ends reach the function
        assert not EventPattern.load(json.dumps(pattern)).matches_event(
            {**event, "detail": {**event["detail"], "status": status}})


@pytest.mark.parametrize("name", FUNCTION_DIRS)
def test_sample_event_validates_against_the_handler_input_model(name: str,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    event = load_json(EVENTS / f"{name}.json")
    model = input_model(name, import_handler(name, monkeypatch))
    parsed = model.model_validate(event)
    if name in EVENT_DRIVEN:
        return  # an EventBridge event: the model reads what it needs, aliases differ
    assert parsed.model_dump(mode="json").keys() == event.keys(), f"{name}: fields the model does not read"


@pytest.mark.parametrize("name", TASK_FUNCTIONS)
def test_sample_event_is_shaped_as_the_state_machine_sends_it(name: str, template: dict[str, Any],
                                                               asl: dict[str, Any]) -> None:
    logical_id = {d: lid for lid, d in function_dirs(template).items()}[name]
    tasks = payload_tasks(asl, logical_id)
    assert tasks, f"no Task invokes {logical_id}"
    event = load_json(EVENTS / f"{name}.json")
    for state_name, payload in tasks:
        assert set(event) == payload_keys(payload), f"{name}.json vs {state_name}'s Payload"
    # Constant fields ("action": "install") equal those of at least one of the sending states.
    senders = [state_name for state_name, payload in tasks
               if all(event[k] == v for k, v in payload.items() if not k.endswith(".$"))]
    assert senders, f"{name}.json: constant fields match no Task of {[t for t, _ in tasks]}"


def test_serials_in_samples_are_canonical() -> None:
    def serials(value: Any, key: str = "") -> list[str]:
        if isinstance(value, dict):
            return [s for k, v in value.items() for s in serials(v, k)]
        if isinstance(value, list):
            return [s for v in value for s in serials(v, key)]
        return [value] if isinstance(value, str) and "serial" in key.lower() else []

    found = [s for name in FUNCTION_DIRS for s in serials(load_json(EVENTS / f"{name}.json"))]
    assert found
    assert all(canonical_serial(s) == s for s in found), found


def test_validate_event_sample_carries_a_health_renewal_and_an_execution_arn() -> None:
    sample = load_json(EVENTS / "validate_event.json")
    request = parse_event(sample["event"], region=REGION, account_id=ACCOUNT)
    assert request.kind is RequestKind.RENEWAL_COMPLETED
    assert request.certificate_arn == ARN
    assert sample["executionArn"].startswith(f"arn:aws:states:{REGION}:{ACCOUNT}:execution:")
    assert sample["event"] == load_json(EVENTS / "statemachine" / "health-renewal-completed.json")


@pytest.mark.parametrize("name", EXPIRY_INVOKE_SAMPLES)
def test_expiry_invoke_sample_is_a_validate_event_payload_of_the_statemachine_sample(
        name: str, monkeypatch: pytest.MonkeyPatch, asl: dict[str, Any]) -> None:
    sample = load_json(EVENTS / name)
    model = input_model("validate_event", import_handler("validate_event", monkeypatch))
    assert model.model_validate(sample).model_dump(mode="json").keys() == sample.keys()
    [(_, payload)] = payload_tasks(asl, "ValidateEventFunction")
    assert set(sample) == payload_keys(payload)
    assert sample["event"] == load_json(EVENTS / "statemachine" / name)
    assert sample["executionArn"].startswith(f"arn:aws:states:{REGION}:{ACCOUNT}:execution:")
    assert parse_event(sample["event"], region=REGION, account_id=ACCOUNT).kind is RequestKind.EXPIRY_NOTICE


def test_samples_describe_one_rollout() -> None:
    rollout_id = load_json(EVENTS / "validate_event.json")["executionArn"].rsplit(":", 1)[-1]
    for name in ("export_certificate", "install_target", "verify_target"):
        sample = load_json(EVENTS / f"{name}.json")
        assert sample["rolloutId"] == rollout_id, name
        assert sample["certificateArn"] == ARN, name
    assert load_json(EVENTS / "record_outcome.json")["target"]["rolloutId"] == rollout_id
    assert load_json(EVENTS / "notify.json")["rollout"]["rolloutId"] == rollout_id


def test_verify_target_since_is_an_entered_time() -> None:
    since = load_json(EVENTS / "verify_target.json")["since"]
    assert datetime.fromisoformat(since.replace("Z", "+00:00")).tzinfo is not None


def test_record_outcome_sample_is_a_whole_iteration_state(asl: dict[str, Any]) -> None:
    from rollout_core.logic.outcome import classify
    from rollout_core.models import TargetOutcome

    target = load_json(EVENTS / "record_outcome.json")["target"]
    parsed = contracts.IterationState.model_validate(target)
    iteration = asl["States"]["InstallTargets"]
    possible = payload_keys(iteration["ItemSelector"]) | {
        state["ResultPath"].removeprefix("$.") for state in iteration["ItemProcessor"]["States"].values()
        if state.get("ResultPath")}
    assert payload_keys(iteration["ItemSelector"]) <= set(target)
    assert set(target) <= possible, f"keys the iteration state never has: {set(target) - possible}"
    assert classify(parsed)[0] is TargetOutcome.VERIFIED


def test_notify_sample_is_validate_events_rollout(asl: dict[str, Any]) -> None:
    rollout = load_json(EVENTS / "notify.json")["rollout"]
    assert set(rollout) == payload_keys(asl["States"]["ValidateEvent"]["ResultSelector"])
    assert rollout["decision"] == "ROLLOUT"


# --- EventBridge samples ---------------------------------------------------------------


def test_eventbridge_samples_are_the_cases() -> None:
    assert sorted(p.name for p in (EVENTS / "eventbridge").glob("*.json")) == sorted(EXPECTED_KINDS)
    assert sorted(p.name for p in (EVENTS / "statemachine").glob("*.json")) == sorted(EXPECTED_KINDS)


@pytest.mark.parametrize("name", sorted(EXPECTED_KINDS))
def test_eventbridge_sample_keeps_placeholders_and_parses_once_substituted(name: str) -> None:
    text = (EVENTS / "eventbridge" / name).read_text()
    assert "${CertificateArn}" in text
    request = parse_event(json.loads(substitute(text)), region=REGION, account_id=ACCOUNT)
    assert request.kind is EXPECTED_KINDS[name]
    assert request.certificate_arn == ARN


@pytest.mark.parametrize("name", sorted(EXPECTED_KINDS))
def test_statemachine_sample_is_the_substituted_eventbridge_sample(name: str) -> None:
    concrete = (EVENTS / "statemachine" / name).read_text()
    assert "${" not in concrete
    assert json.loads(concrete) == json.loads(substitute((EVENTS / "eventbridge" / name).read_text()))


def test_action_required_sample_carries_reason_and_days_to_expiry() -> None:
    request = parse_event(load_json(EVENTS / "statemachine" / "acm-renewal-action-required.json"),
                          region=REGION, account_id=ACCOUNT)
    assert (request.reason, request.days_to_expiry) == ("PCA_ACCESS_DENIED", 44)


def test_manual_sample_forces_a_redeploy() -> None:
    request = parse_event(load_json(EVENTS / "statemachine" / "manual-redeploy.json"),
                          region=REGION, account_id=ACCOUNT)
    assert request.force is True


@pytest.mark.parametrize("name", sorted(n for n in EXPECTED_KINDS if n != "manual-redeploy.json"))
def test_eventbridge_sample_is_routed_by_the_templates_rules(name: str, template: dict[str, Any]) -> None:
    machine = next(r for r in template["Resources"].values() if r["Type"] == "AWS::Serverless::StateMachine")
    patterns = {rule_name: event["Properties"]["Pattern"]
                for rule_name, event in machine["Properties"]["Events"].items()
                if event["Type"] == "EventBridgeRule"}
    event = load_json(EVENTS / "statemachine" / name)
    matched = [rule for rule, pattern in patterns.items()
               if EventPattern.load(json.dumps(pattern)).matches_event(event)]
    assert len(matched) == 1, f"{name} matched rules {matched}"
