"""The state machine and the template agree: the ASL file is what scripts/gen_asl.py renders,
every transition lands on a state, every Lambda task has its ARN substituted, retried and
(inside the Map) caught; IAM is resource-scoped on secrets and keys. The ASL features used
are the ones moto's interpreter runs (DESIGN.md "Local cloud"): JSONPath only, no
ToleratedFailure*, an inline Map with a Catch per task."""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from samtranslator.yaml_helper import yaml_parse

ROOT = Path(__file__).resolve().parents[2]
ASL_PATH = ROOT / "statemachine" / "rollout.asl.json"
TEMPLATE_PATH = ROOT / "template.yaml"
LAMBDA_INVOKE = "arn:aws:states:::lambda:invoke"
LAMBDA_SERVICE_ERRORS = {"Lambda.ServiceException", "Lambda.AWSLambdaException", "Lambda.SdkClientException"}


def load_script(name: str) -> ModuleType:
    """Import scripts/<name>.py from its path (scripts/ is not a package)."""
    spec = importlib.util.spec_from_file_location(f"_script_{name}", ROOT / "scripts" / f"{name}.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def asl() -> dict[str, Any]:
    return json.loads(ASL_PATH.read_text())


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return yaml_parse(TEMPLATE_PATH.read_text())


@pytest.fixture(scope="module")
def state_machine(template: dict[str, Any]) -> dict[str, Any]:
    machines = [r for r in template["Resources"].values() if r["Type"] == "AWS::Serverless::StateMachine"]
    assert len(machines) == 1
    return machines[0]["Properties"]


def state_sets(definition: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """(where, {"StartAt", "States"}) of the top level and of every nested Map / Parallel."""
    yield path or "<top>", definition
    for name, state in definition["States"].items():
        for key in ("ItemProcessor", "Iterator"):
            if key in state:
                yield from state_sets(state[key], f"{path}{name}.{key}/")
        for index, branch in enumerate(state.get("Branches", [])):
            yield from state_sets(branch, f"{path}{name}.Branches[{index}]/")


def all_states(definition: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for where, states in state_sets(definition):
        for name, state in states["States"].items():
            yield where, name, state


def lambda_tasks(definition: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(w, n, s) for w, n, s in all_states(definition)
            if s["Type"] == "Task" and s.get("Resource", "").startswith(LAMBDA_INVOKE)]


def get_att(value: dict[str, Any]) -> tuple[str, str]:
    """(logical id, attribute) of a {"Fn::GetAtt": ...} in list or dotted form."""
    target = value["Fn::GetAtt"]
    logical_id, attribute = target if isinstance(target, list) else target.split(".", 1)
    return logical_id, attribute


def get_att_target(value: dict[str, Any]) -> str:
    return get_att(value)[0]


def walk(value: Any, path: str = "$") -> Iterator[tuple[str, Any, Any]]:
    """(path, key, value) of every key in a JSON document."""
    if isinstance(value, dict):
        for key, child in value.items():
            yield path, key, child
            yield from walk(child, f"{path}.{key}")
    elif isinstance(value, list):
        for index, child in enumerate(value):
            yield from walk(child, f"{path}[{index}]")


# --- the ASL file is generated ---------------------------------------------------------


def test_asl_file_is_what_gen_asl_renders() -> None:
    gen_asl = load_script("gen_asl")
    assert ASL_PATH.read_text() == gen_asl.render(), (
        "statemachine/rollout.asl.json is stale: run .venv/bin/python scripts/gen_asl.py")


def test_template_deploys_the_asl_file(state_machine: dict[str, Any]) -> None:
    assert state_machine["DefinitionUri"] == "statemachine/rollout.asl.json"
    assert state_machine["Type"] == "STANDARD", "the execution history is the audit trail"


# --- transitions -----------------------------------------------------------------------


def test_every_transition_names_an_existing_state(asl: dict[str, Any]) -> None:
    problems = []
    for where, states in state_sets(asl):
        names = set(states["States"])
        targets = [("StartAt", states["StartAt"])]
        for name, state in states["States"].items():
            targets += [(f"{name}.Next", state["Next"])] if "Next" in state else []
            targets += [(f"{name}.Default", state["Default"])] if "Default" in state else []
            choices = state.get("Choices", [])
            targets += [(f"{name}.Choices[{i}].Next", c["Next"]) for i, c in enumerate(choices)]
            targets += [(f"{name}.Catch[{i}].Next", c["Next"]) for i, c in enumerate(state.get("Catch", []))]
        problems += [f"{where} {field} -> {target!r}" for field, target in targets if target not in names]
    assert not problems, "transitions to states that do not exist in their scope:\n" + "\n".join(problems)


def test_every_state_is_terminal_or_moves_on(asl: dict[str, Any]) -> None:
    problems = [f"{where} {name}" for where, name, state in all_states(asl)
                if state["Type"] not in ("Choice", "Succeed", "Fail")
                and ("Next" in state) == bool(state.get("End"))]
    assert not problems, "states need exactly one of Next / End: true:\n" + "\n".join(problems)


def test_every_state_is_reachable(asl: dict[str, Any]) -> None:
    problems = []
    for where, states in state_sets(asl):
        seen, todo = set(), [states["StartAt"]]
        while todo:
            name = todo.pop()
            if name in seen or name not in states["States"]:
                continue
            seen.add(name)
            state = states["States"][name]
            todo += [state[k] for k in ("Next", "Default") if k in state]
            todo += [c["Next"] for c in state.get("Choices", []) + state.get("Catch", [])]
        problems += [f"{where} {name}" for name in set(states["States"]) - seen]
    assert not problems, "unreachable states:\n" + "\n".join(sorted(problems))


# --- what moto's interpreter runs ------------------------------------------------------


def test_jsonpath_only(asl: dict[str, Any]) -> None:
    jsonata = [f"{path}.{key}" for path, key, value in walk(asl)
               if (key == "QueryLanguage" and value != "JSONPath")
               or (isinstance(value, str) and value.lstrip().startswith("{%"))]
    assert not jsonata, f"JSONata is not run by moto's interpreter: {jsonata}"


def test_no_tolerated_failure_fields(asl: dict[str, Any]) -> None:
    found = [f"{path}.{key}" for path, key, _ in walk(asl) if key.startswith("ToleratedFailure")]
    assert not found, f"ToleratedFailure* is not supported by moto's interpreter: {found}"


def test_the_map_is_inline(asl: dict[str, Any]) -> None:
    maps = [(w, n, s) for w, n, s in all_states(asl) if s["Type"] == "Map"]
    assert maps
    for where, name, state in maps:
        processor = state.get("ItemProcessor") or state.get("Iterator")
        mode = processor.get("ProcessorConfig", {}).get("Mode", "INLINE")
        assert mode == "INLINE", f"{where} {name}: a Distributed Map's failure semantics differ locally"


# --- Lambda tasks ----------------------------------------------------------------------


def test_every_lambda_task_function_is_a_definition_substitution(asl: dict[str, Any],
                                                                state_machine: dict[str, Any]) -> None:
    substitutions = state_machine["DefinitionSubstitutions"]
    used = set()
    for where, name, state in lambda_tasks(asl):
        function = state["Parameters"]["FunctionName"]
        assert function.startswith("${") and function.endswith("}"), f"{where} {name}: literal FunctionName"
        key = function[2:-1]
        assert key in substitutions, f"{where} {name}: {function} has no DefinitionSubstitutions entry"
        used.add(key)
    assert used == set(substitutions), f"unused DefinitionSubstitutions: {set(substitutions) - used}"


def test_every_substituted_function_is_a_function_of_the_template(template: dict[str, Any],
                                                                 state_machine: dict[str, Any]) -> None:
    resources = template["Resources"]
    for key, value in state_machine["DefinitionSubstitutions"].items():
        logical_id, attribute = get_att(value)
        assert resources[logical_id]["Type"] == "AWS::Serverless::Function", key
        assert attribute == "Arn", key


def test_the_state_machine_may_invoke_every_function_it_calls(template: dict[str, Any],
                                                             state_machine: dict[str, Any]) -> None:
    invokable = {p["LambdaInvokePolicy"]["FunctionName"]["Ref"]
                 for p in state_machine["Policies"] if isinstance(p, dict) and "LambdaInvokePolicy" in p}
    called = {get_att_target(value) for value in state_machine["DefinitionSubstitutions"].values()}
    assert called <= invokable, f"no LambdaInvokePolicy for {called - invokable}"


def test_no_lambda_task_passes_the_whole_lambda_response(asl: dict[str, Any]) -> None:
    # A ResultSelector keeps only named Payload fields: no StatusCode/headers in the history,
    # and the state stays small (D2: 100 targets, far from 256 KiB).
    # A waitForTaskToken task's result is what CommandCallback sends (small, named fields), not
    # the Lambda response, so it needs no ResultSelector.
    missing = [f"{w} {n}" for w, n, s in lambda_tasks(asl)
               if not s.get("ResultSelector") and not s["Resource"].endswith(".waitForTaskToken")]
    assert not missing, f"Lambda tasks without ResultSelector: {missing}"


def test_waiting_tasks_are_bounded_and_handle_their_timeout(asl: dict[str, Any]) -> None:
    waiting = [(w, n, s) for w, n, s in lambda_tasks(asl) if s["Resource"].endswith(".waitForTaskToken")]
    assert {n for _, n, _ in waiting} == {"InstallOnTarget", "RollbackTarget"}
    for _, name, state in waiting:
        assert state.get("TimeoutSecondsPath") or state.get("TimeoutSeconds"), f"{name}: unbounded wait"
        assert state["Parameters"]["Payload"]["taskToken.$"] == "$$.Task.Token"
        timeout_catch = [c for c in state["Catch"] if c["ErrorEquals"] == ["States.Timeout"]]
        assert timeout_catch, f"{name}: no Catch for States.Timeout"
        assert timeout_catch[0]["Next"] in asl["States"]["InstallTargets"]["ItemProcessor"]["States"]


def test_every_lambda_task_retries_lambda_service_errors(asl: dict[str, Any]) -> None:
    problems = []
    for where, name, state in lambda_tasks(asl):
        retried = {error for rule in state.get("Retry", []) for error in rule["ErrorEquals"]}
        if not state.get("Retry"):
            problems.append(f"{where} {name}: no Retry")
        elif not LAMBDA_SERVICE_ERRORS <= retried:
            problems.append(f"{where} {name}: Retry misses {sorted(LAMBDA_SERVICE_ERRORS - retried)}")
        for rule in state.get("Retry", []):
            if "States.ALL" in rule["ErrorEquals"] and rule is not state["Retry"][-1]:
                problems.append(f"{where} {name}: States.ALL must be the last retrier")
    assert not problems, "\n".join(problems)


def test_every_task_inside_the_map_catches_its_failure(asl: dict[str, Any]) -> None:
    problems = []
    maps = [(n, s) for _, n, s in all_states(asl) if s["Type"] == "Map"]
    assert maps
    for map_name, map_state in maps:
        processor = map_state.get("ItemProcessor") or map_state["Iterator"]
        for where, name, state in all_states(processor):
            if state["Type"] != "Task":
                continue
            caught = {e for rule in state.get("Catch", []) for e in rule["ErrorEquals"]}
            if "States.ALL" not in caught:
                problems.append(f"{map_name}/{where} {name}: no Catch on States.ALL")
    assert not problems, "one target's failure must never stop the others (D4):\n" + "\n".join(problems)


# --- IAM -------------------------------------------------------------------------------


def inline_statements(template: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(where, statement) of every inline IAM statement, except the KMS key's own key policy."""
    for logical_id, resource in template["Resources"].items():
        kind, props = resource["Type"], resource.get("Properties", {})
        documents: list[tuple[str, Any]] = []
        if kind in ("AWS::Serverless::Function", "AWS::Serverless::StateMachine"):
            policies = props.get("Policies", [])
            policies = policies if isinstance(policies, list) else [policies]
            documents += [(f"{logical_id}.Policies[{i}]", p) for i, p in enumerate(policies)
                          if isinstance(p, dict) and "Statement" in p]
        elif kind in ("AWS::IAM::ManagedPolicy", "AWS::IAM::Policy"):
            documents.append((f"{logical_id}.PolicyDocument", props["PolicyDocument"]))
        elif kind == "AWS::IAM::Role":
            documents += [(f"{logical_id}.Policies[{i}]", p["PolicyDocument"])
                          for i, p in enumerate(props.get("Policies", []))]
        for where, document in documents:
            statements = document["Statement"]
            for index, statement in enumerate(statements if isinstance(statements, list) else [statements]):
                yield f"{where}.Statement[{index}]", statement


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def test_inline_policies_scope_secrets_and_keys(template: dict[str, Any]) -> None:
    problems = []
    checked = 0
    for where, statement in inline_statements(template):
        actions = [a for a in as_list(statement.get("Action", [])) if isinstance(a, str)]
        sensitive = [a for a in actions if a.lower().startswith(("secretsmanager:", "kms:")) or a == "*"]
        if not sensitive or statement.get("Effect") != "Allow":
            continue
        checked += 1
        if "NotResource" in statement or any(r == "*" for r in as_list(statement.get("Resource"))):
            problems.append(f"{where}: {sensitive} on Resource '*'")
    assert checked, "expected inline statements on secretsmanager:/kms: actions"
    assert not problems, "no '*' on secrets or keys (DESIGN.md, Hard rules):\n" + "\n".join(problems)


def test_the_key_policy_lets_secrets_manager_use_the_key_only(template: dict[str, Any]) -> None:
    keys = [r for r in template["Resources"].values() if r["Type"] == "AWS::KMS::Key"]
    assert keys
    for key in keys:
        for statement in key["Properties"]["KeyPolicy"]["Statement"]:
            uses = set(as_list(statement["Action"])) & {"kms:Decrypt", "kms:GenerateDataKey"}
            if uses:
                assert "kms:ViaService" in json.dumps(statement.get("Condition", {})), statement.get("Sid")
