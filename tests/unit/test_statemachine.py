"""The state machine, its state contracts and the template agree.

statemachine/rollout.asl.json is the source (edited by hand or in Workflow Studio). These tests
hold it to the rules the code relies on: every transition lands on a state, every Lambda task
has its ARN substituted, the project's Retry policy and a Catch that keeps the target's outcome;
every JSONPath a state reads from a task's result names a field of the pydantic model that task
returns (rollout_core.contracts, one table below); the README's diagram is drawn from this file;
IAM is resource-scoped on secrets and keys. The ASL features
used are the ones moto's interpreter runs (DESIGN.md "Local cloud"): JSONPath only, no
ToleratedFailure*, an inline Map with a Catch per task."""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from pydantic import BaseModel, create_model
from rollout_core.contracts import (
    CommandResult,
    ExportInput,
    ExportResult,
    IterationState,
    LeaseInput,
    LeaseReleaseResult,
    LeaseResult,
    NotifyInput,
    NotifyResult,
    OutcomeSummary,
    ReconcileInput,
    RecordInput,
    RolloutState,
    ServedEvidence,
    StateError,
    TargetCommandInput,
    TargetItem,
    ValidateInput,
    ValidateResult,
    VerificationStart,
    VerifyInput,
    VerifyResult,
)
from samtranslator.yaml_helper import yaml_parse

ROOT = Path(__file__).resolve().parents[2]
ASL_PATH = ROOT / "statemachine" / "rollout.asl.json"
TEMPLATE_PATH = ROOT / "template.yaml"
README_PATH = ROOT / "README.md"
# The Resource of a Lambda task, in the deployment's partition (the Partition substitution:
# tests/unit/test_partitions.py).
LAMBDA_INVOKE = "arn:${Partition}:states:::lambda:invoke"
PARTITION_SUBSTITUTION = "Partition"

# The project's Retry policy, named once: every Task state carries exactly this. Lambda's own
# transient errors, then the transient AWS errors our adapters raise by name
# (rollout_core.adapters.errors: ThrottlingException, RequestInProgressException, 5xx ...).
# Permanent errors (AccessDenied, NotFound ...) are not retried.
RETRY_TRANSIENT = [
    {"ErrorEquals": ["Lambda.ServiceException", "Lambda.AWSLambdaException", "Lambda.SdkClientException",
                     "Lambda.TooManyRequestsException"],
     "IntervalSeconds": 1, "MaxAttempts": 3, "BackoffRate": 2.0, "MaxDelaySeconds": 10, "JitterStrategy": "FULL"},
    {"ErrorEquals": ["AwsThrottled", "AwsRequestInProgress", "AwsServiceUnavailable"],
     "IntervalSeconds": 2, "MaxAttempts": 5, "BackoffRate": 2.0, "MaxDelaySeconds": 30, "JitterStrategy": "FULL"},
]


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


def function_substitutions(state_machine: dict[str, Any]) -> dict[str, Any]:
    """The DefinitionSubstitutions that name a function (all but the Partition one)."""
    return {k: v for k, v in state_machine["DefinitionSubstitutions"].items() if k != PARTITION_SUBSTITUTION}


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


# --- the ASL file is the source -------------------------------------------------------


def test_readme_diagram_is_drawn_from_the_asl_file() -> None:
    diagram = load_script("asl_diagram")
    text = README_PATH.read_text()
    assert diagram.update(text) == text, (
        "README.md's state machine diagram differs from statemachine/rollout.asl.json: "
        "run .venv/bin/python scripts/asl_diagram.py (make asl)")


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
    functions = set(substitutions) - {PARTITION_SUBSTITUTION}
    assert used == functions, f"unused DefinitionSubstitutions: {functions - used}"


def test_every_substituted_function_is_a_function_of_the_template(template: dict[str, Any],
                                                                 state_machine: dict[str, Any]) -> None:
    resources = template["Resources"]
    for key, value in function_substitutions(state_machine).items():
        logical_id, attribute = get_att(value)
        assert resources[logical_id]["Type"] == "AWS::Serverless::Function", key
        assert attribute == "Arn", key


def test_the_state_machine_may_invoke_every_function_it_calls(template: dict[str, Any],
                                                             state_machine: dict[str, Any]) -> None:
    invokable = {p["LambdaInvokePolicy"]["FunctionName"]["Ref"]
                 for p in state_machine["Policies"] if isinstance(p, dict) and "LambdaInvokePolicy" in p}
    called = {get_att_target(value) for value in function_substitutions(state_machine).values()}
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
    assert {n for _, n, _ in waiting} == {"InstallOnTarget", "RollbackTarget", "ProbeOnProbeNode"}
    for _, name, state in waiting:
        assert state.get("TimeoutSecondsPath") or state.get("TimeoutSeconds"), f"{name}: unbounded wait"
        assert state["Parameters"]["Payload"]["taskToken.$"] == "$$.Task.Token"
        timeout_catch = [c for c in state["Catch"] if c["ErrorEquals"] == ["States.Timeout"]]
        assert timeout_catch, f"{name}: no Catch for States.Timeout"
        assert timeout_catch[0]["Next"] in asl["States"]["InstallTargets"]["ItemProcessor"]["States"]


def test_every_task_has_the_projects_retry_policy(asl: dict[str, Any]) -> None:
    tasks = [(w, n, s) for w, n, s in all_states(asl) if s["Type"] == "Task"]
    assert tasks
    problems = [f"{where} {name}: Retry is {json.dumps(state.get('Retry'))}"
                for where, name, state in tasks if state.get("Retry") != RETRY_TRANSIENT]
    assert not problems, "every Task retries transient errors with RETRY_TRANSIENT:\n" + "\n".join(problems)


def catch_chain_end(states: dict[str, Any], start: str) -> str:
    """The first state after ``start`` that is not a Pass (Pass states only reshape the
    state), or the last Pass when it ends the scope."""
    name = start
    for _ in range(len(states)):
        state = states[name]
        if state["Type"] != "Pass" or state.get("End"):
            return name
        name = state["Next"]
    raise AssertionError(f"Pass states loop from {start}")


def test_every_task_catches_every_error_into_its_own_field(asl: dict[str, Any]) -> None:
    """The last Catch is States.ALL, and every Catch writes a StateError beside the state, never
    over it: $.error, or inside the Map a StateError field of IterationState named after the step
    ($.installTimeout, $.verifyError ...), so RecordTargetOutcome knows which step failed."""
    iteration = set(asl["States"]["InstallTargets"]["ItemProcessor"]["States"])
    error_fields = {name for name, info in IterationState.model_fields.items()
                    if StateError in getattr(info.annotation, "__args__", (info.annotation,))}
    problems = []
    for where, name, state in all_states(asl):
        if state["Type"] != "Task":
            continue
        catches = state.get("Catch", [])
        if not catches or catches[-1]["ErrorEquals"] != ["States.ALL"]:
            problems.append(f"{where} {name}: the last Catch must be States.ALL")
        allowed = {f"$.{f}" for f in error_fields} if name in iteration else {"$.error"}
        problems += [f"{where} {name}: Catch {c['ErrorEquals']} writes ResultPath {c.get('ResultPath')!r}, "
                     f"not one of {sorted(allowed)} (it would replace the state)"
                     for c in catches if c.get("ResultPath") not in allowed]
    assert not problems, "\n".join(problems)


def ends_before(states: dict[str, Any], start: str, recorder: str) -> list[str]:
    """The end states reachable from ``start`` without passing ``recorder`` (none: every way on
    from ``start`` records)."""
    seen, todo, ends = set(), [start], []
    while todo:
        name = todo.pop()
        if name in seen or name == recorder:
            continue
        seen.add(name)
        state = states[name]
        nexts = [state[k] for k in ("Next", "Default") if k in state]
        nexts += [c["Next"] for c in state.get("Choices", []) + state.get("Catch", [])]
        if not nexts:
            ends.append(name)
        todo += nexts
    return sorted(ends)


def test_a_caught_target_failure_still_records_the_targets_outcome(asl: dict[str, Any]) -> None:
    """One target's failure never stops the others (D4), and every target ends with an
    outcome: inside the Map each Catch leads (through Pass states) to RecordTargetOutcome, or,
    from RecordTargetOutcome itself, to an end state that writes an OutcomeSummary."""
    iteration = asl["States"]["InstallTargets"]["ItemProcessor"]["States"]
    recorder = [n for n in iteration if n in CONTRACTS and CONTRACTS[n][1] is OutcomeSummary]
    assert recorder == ["RecordTargetOutcome"]
    problems = []
    for name, state in iteration.items():
        for catch in state.get("Catch", []):
            end = catch_chain_end(iteration, catch["Next"])
            if name == "RecordTargetOutcome":
                fields = payload_fields(iteration[end].get("Parameters", {}))
                ok = iteration[end].get("End") and {"targetId", "outcome"} <= fields <= set(OutcomeSummary.model_fields)
            else:  # through Pass, Choice and restore states: every way on reaches the recorder
                end = ", ".join(ends_before(iteration, catch["Next"], "RecordTargetOutcome")) or end
                ok = not ends_before(iteration, catch["Next"], "RecordTargetOutcome")
            if not ok:
                problems.append(f"InstallTargets/{name}: Catch {catch['ErrorEquals']} ends at {end}, "
                                "which records no outcome for the target")
    assert not problems, "\n".join(problems)


# --- every path after the files may have changed ends in a restore attempt --------------

# The only ways from the install to RecordTargetOutcome that skip RollbackTarget, each with
# what proves that nothing needs restoring. An edge is (state, how it leaves: "Catch <errors>" or
# the Choice rule without its Next, as JSON).
NO_RESTORE_NEEDED = {
    ("InstallOnTarget", "Catch States.ALL"):
        "the InstallTarget function raised: it sends the command last, so no command was sent",
    ("InstallFinished", json.dumps({"Variable": "$.installCommand.filesChanged", "StringEquals": "no"},
                                   sort_keys=True)):
        "the command ended before the swap or never ran (logic/commands.py files_changed)",
    ("InstallFinished", json.dumps({"Variable": "$.installCommand.filesChanged", "StringEquals": "restored"},
                                   sort_keys=True)):
        "the installer put the previous files back itself and said so",
    ("Verified", json.dumps({"Variable": "$.verify.state", "StringEquals": "VERIFIED"}, sort_keys=True)):
        "the target serves the new serial",
    ("Verified", json.dumps({"And": [{"Variable": "$.verify.state", "StringEquals": "UNREACHABLE"},
                                     {"Or": [{"Variable": "$.installCommand.servedSerialBefore", "IsPresent": False},
                                             {"Variable": "$.installCommand.servedSerialBefore", "IsNull": True}]}]},
                            sort_keys=True)):
        "unreachable before the install too: nothing proves the new files are at fault",
}


def edges(state: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """(how, next state) of every way out of a state."""
    if "Next" in state:
        yield "Next", state["Next"]
    for rule in state.get("Choices", []):
        yield json.dumps({k: v for k, v in rule.items() if k != "Next"}, sort_keys=True), rule["Next"]
    if "Default" in state:
        yield "Default", state["Default"]
    for catch in state.get("Catch", []):
        yield f"Catch {' '.join(catch['ErrorEquals'])}", catch["Next"]


def unrestored_paths(iteration: dict[str, Any], start: str = "InstallOnTarget",
                     restore: str = "RollbackTarget", recorder: str = "RecordTargetOutcome") -> list[str]:
    """Every path from ``start`` to ``recorder`` (or to an end) that passes neither ``restore``
    nor an edge of NO_RESTORE_NEEDED, as "A -(how)-> B -> ...". Loops are followed once."""
    found: list[str] = []

    def walk_from(name: str, path: list[str], seen: frozenset[str]) -> None:
        if name == restore:
            return
        state = iteration[name]
        if name == recorder or state.get("End") or state["Type"] in ("Succeed", "Fail"):
            found.append(" -> ".join([*path, name]))
            return
        for how, target in edges(state):
            if (name, how) in NO_RESTORE_NEEDED or target in seen:
                continue
            walk_from(target, [*path, f"{name} -({how[:60]})"], seen | {target})

    walk_from(start, [], frozenset({start}))
    return found


def test_every_path_after_the_install_was_sent_ends_in_the_one_restore(asl: dict[str, Any]) -> None:
    """Issue 10 item 4: install failed or timed out after the swap, verification failed or could
    not run, unreachable after answering before: each reaches RollbackTarget before the outcome
    is recorded, or leaves through an edge whose proof is named in NO_RESTORE_NEEDED."""
    iteration = asl["States"]["InstallTargets"]["ItemProcessor"]["States"]
    rollbacks = [n for n, s in iteration.items()
                 if s["Type"] == "Task" and s.get("Parameters", {}).get("Payload", {}).get("action") == "rollback"]
    assert rollbacks == ["RollbackTarget"], "one restore state, reached from every path (no copies)"
    present = {(name, how) for name, state in iteration.items() for how, _ in edges(state)}
    assert set(NO_RESTORE_NEEDED) <= present, f"proof edges gone or changed: {set(NO_RESTORE_NEEDED) - present}"
    problems = unrestored_paths(iteration)
    assert not problems, "paths that record an outcome without a restore attempt:\n" + "\n".join(problems)
    # the restore itself always ends at the recorder
    assert {target for _, target in edges(iteration["RollbackTarget"])} <= {"RecordTargetOutcome",
                                                                            "ReconcileRollback"}


@pytest.mark.parametrize(("state", "index", "field", "value"), [
    ("VerifyTarget", 0, "Catch", "RecordTargetOutcome"),   # Lambda crash straight to the outcome
    ("InstallOnTarget", 0, "Catch", "RecordTargetOutcome"),  # timeout classified without a restore
])
def test_a_path_that_skips_the_restore_is_reported(asl: dict[str, Any], state: str, index: int, field: str,
                                                   value: str) -> None:
    broken = json.loads(json.dumps(asl))
    iteration = broken["States"]["InstallTargets"]["ItemProcessor"]["States"]
    iteration[state][field][index]["Next"] = value
    problems = unrestored_paths(iteration)
    assert any(p.startswith(state) or f"{state} -(Catch" in p for p in problems), problems


def test_a_verified_choice_with_another_condition_is_not_a_proof(asl: dict[str, Any]) -> None:
    broken = json.loads(json.dumps(asl))
    verified = broken["States"]["InstallTargets"]["ItemProcessor"]["States"]["Verified"]
    verified["Choices"][1]["StringEquals"] = "NOT_SERVING"
    problems = unrestored_paths(broken["States"]["InstallTargets"]["ItemProcessor"]["States"])
    assert any("NOT_SERVING" in p for p in problems), problems


def test_a_caught_rollout_failure_is_notified(asl: dict[str, Any]) -> None:
    """Every execution end is notified (DESIGN.md): a top-level Catch leads to Notify, and
    Notify's own Catch to a Fail state."""
    states = asl["States"]
    problems = []
    for name, state in states.items():
        for catch in state.get("Catch", []):
            end = catch_chain_end(states, catch["Next"])
            wanted = "Fail" if name == "Notify" else "Notify"
            if (states[end]["Type"] if wanted == "Fail" else end) != wanted:
                problems.append(f"{name}: Catch {catch['ErrorEquals']} ends at {end}, not at {wanted}")
    assert not problems, "\n".join(problems)


# --- state contracts -------------------------------------------------------------------

# Every Task state: (the model its handler parses its Payload with, the model of its result).
# An install/rollback task waits on its token: its result is the CommandResult CommandCallback
# sends, not its Lambda's response.
CONTRACTS: dict[str, tuple[type[BaseModel], type[BaseModel]]] = {
    "ValidateEvent": (ValidateInput, ValidateResult),
    "ExportCertificate": (ExportInput, ExportResult),
    "AcquireLease": (LeaseInput, LeaseResult),
    "ReleaseLease": (LeaseInput, LeaseReleaseResult),
    "InstallOnTarget": (TargetCommandInput, CommandResult),
    "RollbackTarget": (TargetCommandInput, CommandResult),
    "ProbeOnProbeNode": (TargetCommandInput, CommandResult),  # action probe, to the probe node
    "ReconcileInstall": (ReconcileInput, CommandResult),
    "ReconcileRollback": (ReconcileInput, CommandResult),
    "VerifyTarget": (VerifyInput, VerifyResult),
    "RecordTargetOutcome": (RecordInput, OutcomeSummary),
    "Notify": (NotifyInput, NotifyResult),
}
# Every Pass state writes in the place of a task's result: the model of what it writes.
STAND_INS: dict[str, type[BaseModel]] = {
    "EventRejected": RolloutState,
    "ExportFailed": RolloutState,
    "InstallStatusUnknown": CommandResult,
    "RollbackStatusUnknown": CommandResult,
    "LeaseFailed": RolloutState,
    "LeaseNotAcquired": RolloutState,
    "BeginVerification": VerificationStart,
    "UseProbeNodeEvidence": ServedEvidence,  # $.probeCommand.served into $.installCommand.served
    "OutcomeNotRecorded": OutcomeSummary,
}
# Fields of a state's JSON that hold one JSONPath read from the state (or from the task's raw
# result, for ResultSelector); Parameters, ItemSelector and ResultSelector hold "<key>.$" paths.
PATH_FIELDS = ("InputPath", "OutputPath", "ItemsPath", "MaxConcurrencyPath", "SecondsPath", "TimestampPath",
               "TimeoutSecondsPath", "HeartbeatSecondsPath")


def payload_fields(template: dict[str, Any]) -> set[str]:
    """The keys a Parameters / ItemSelector / ResultSelector template produces."""
    return {key.removesuffix(".$") for key in template}


def template_paths(template: Any, where: str) -> Iterator[tuple[str, str]]:
    """(where, path) of every "<key>.$" JSONPath in a Parameters-like template, nested ones too."""
    if isinstance(template, dict):
        for key, value in template.items():
            if key.endswith(".$") and isinstance(value, str):
                yield f"{where}.{key}", value
            else:
                yield from template_paths(value, f"{where}.{key}")
    elif isinstance(template, list):
        for index, value in enumerate(template):
            yield from template_paths(value, f"{where}[{index}]")


def choice_variables(rules: list[dict[str, Any]], where: str) -> Iterator[tuple[str, str]]:
    for index, rule in enumerate(rules):
        here = f"{where}[{index}]"
        if "Variable" in rule:
            yield f"{here}.Variable", rule["Variable"]
        for key in ("And", "Or"):
            yield from choice_variables(rule.get(key, []), f"{here}.{key}")
        if "Not" in rule:
            yield from choice_variables([rule["Not"]], f"{here}.Not")


def state_paths(state: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """(field, path) of every JSONPath the state reads from its input (not ResultSelector)."""
    for field in PATH_FIELDS:
        if isinstance(state.get(field), str):
            yield field, state[field]
    parameters = {k: v for k, v in state.get("Parameters", {}).items() if k != "FunctionName"}
    yield from template_paths(parameters, "Parameters")
    yield from choice_variables(state.get("Choices", []), "Choices")


def resolve(model: type[BaseModel], segments: list[str]) -> str | None:
    """Why ``segments`` is not a field path of ``model`` (None when it is)."""
    for index, segment in enumerate(segments):
        field = model.model_fields.get(segment)
        if field is None:
            return f"{model.__name__} has no field {segment!r}"
        rest = segments[index + 1:]
        if not rest:
            return None
        nested = [t for t in getattr(field.annotation, "__args__", (field.annotation,))
                  if isinstance(t, type) and issubclass(t, BaseModel)]
        if len(nested) != 1:
            return f"{model.__name__}.{segment} is not one object, cannot read .{'.'.join(rest)}"
        model = nested[0]
    return None


def split_path(path: str) -> list[str] | None:
    """The field names of a "$.a.b" path, [] for "$", None for what this checker cannot read
    (brackets, wildcards, filters, functions)."""
    if path == "$":
        return []
    if not path.startswith("$.") or any(c in path for c in "[]*?()@"):
        return None
    return path[2:].split(".")


def slots(states: dict[str, Any], contracts: dict[str, tuple[type[BaseModel], type[BaseModel]]]
          ) -> dict[str, type[BaseModel]]:
    """{field of the state: model} of one scope: each Task's ResultPath holds its result model,
    each Catch's ResultPath a StateError."""
    found: dict[str, type[BaseModel]] = {}
    for name, state in states.items():
        if state["Type"] == "Task" and isinstance(state.get("ResultPath"), str):
            # The first task that writes a field owns it (InstallOnTarget's $.installCommand; the
            # reconcile task writing the same shape is held to it by test_tasks_writing_one_field_share_a_model).
            found.setdefault(state["ResultPath"].removeprefix("$."), contracts[name][1])
        for catch in state.get("Catch", []):
            found[catch["ResultPath"].removeprefix("$.")] = StateError
    return found


def contract_problems(asl: dict[str, Any],
                      contracts: dict[str, tuple[type[BaseModel], type[BaseModel]]]) -> list[str]:
    """Every JSONPath that reads a task's result and names no field of that task's model, as
    "[<Map state>/]<state name>: <field> <path>: <why>". A scope's state holds the task results
    (slots) and, inside the Map, the item's fields (TargetItem)."""
    problems: list[str] = []

    def check(scope: str, name: str, field: str, path: str, known: dict[str, type[BaseModel]],
              item: type[BaseModel] | None) -> None:
        if path.startswith("$$."):
            return  # the context object (execution, task token, Map item), not the state
        segments = split_path(path)
        if segments is None:
            problems.append(f"{scope}{name}: {field} {path}: not a plain $.field path")
            return
        if not segments:
            return  # the whole state
        head, rest = segments[0], segments[1:]
        if head in known:
            why = resolve(known[head], rest)
        elif item is not None and head in item.model_fields:
            why = resolve(item, segments)
        else:
            why = f"no task writes ${'.' + head} in this scope"
        if why:
            problems.append(f"{scope}{name}: {field} {path}: {why}")

    def visit(scope: str, states: dict[str, Any], item: type[BaseModel] | None) -> None:
        known = slots(states, contracts)
        for name, state in states.items():
            for field, path in state_paths(state):
                check(scope, name, field, path, known, item)
            if state["Type"] == "Task" and "ResultSelector" in state:
                result = contracts[name][1]
                for key, path in template_paths(state["ResultSelector"], "ResultSelector"):
                    if not path.startswith("$.Payload."):
                        problems.append(f"{scope}{name}: {key} {path}: reads no Payload field")
                        continue
                    why = resolve(result, path.removeprefix("$.Payload.").split("."))
                    if why:
                        problems.append(f"{scope}{name}: {key} {path}: {why}")
                problems.extend(f"{scope}{name}: ResultSelector key {key!r}: {result.__name__} has no such field"
                                for key in payload_fields(state["ResultSelector"]) if key not in result.model_fields)
            if state["Type"] == "Map":
                for field, path in template_paths(state.get("ItemSelector", {}), "ItemSelector"):
                    check(scope, name, field, path, known, item)
                processor = state.get("ItemProcessor") or state["Iterator"]
                visit(f"{scope}{name}/", processor["States"], TargetItem)

    visit("", asl["States"], None)
    return problems


def test_the_contract_table_names_every_task_state(asl: dict[str, Any]) -> None:
    tasks = {name for _, name, state in all_states(asl) if state["Type"] == "Task"}
    assert tasks == set(CONTRACTS)
    passes = {name for _, name, state in all_states(asl) if state["Type"] == "Pass"}
    assert passes == set(STAND_INS)


def test_tasks_writing_one_field_share_a_model(asl: dict[str, Any]) -> None:
    writers: dict[tuple[str, str], set[type[BaseModel]]] = {}
    for where, name, state in all_states(asl):
        if state["Type"] == "Task" and isinstance(state.get("ResultPath"), str):
            writers.setdefault((where, state["ResultPath"]), set()).add(CONTRACTS[name][1])
    assert ("InstallTargets.ItemProcessor/", "$.installCommand") in writers
    mixed = {k: sorted(m.__name__ for m in v) for k, v in writers.items() if len(v) > 1}
    assert not mixed, f"tasks writing one field with different models: {mixed}"


def test_every_path_read_from_a_task_result_names_a_field_of_its_model(asl: dict[str, Any]) -> None:
    problems = contract_problems(asl, CONTRACTS)
    assert not problems, "JSONPaths that name no field of the task's model:\n" + "\n".join(problems)


def renamed(model: type[BaseModel], old: str, new: str) -> type[BaseModel]:
    """A copy of ``model`` whose field ``old`` is called ``new`` (what a careless rename does)."""
    fields: dict[str, Any] = {(new if name == old else name): (info.annotation, info)
                              for name, info in model.model_fields.items()}
    return create_model(model.__name__, **fields)


@pytest.mark.parametrize(("state", "old", "new", "readers"), [
    ("VerifyTarget", "pollIntervalSeconds", "reloadWaitSeconds", {"VerifyTarget", "WaitForReload"}),
    ("ValidateEvent", "targetIds", "targets", {"ValidateEvent", "ExportCertificate", "InstallTargets"}),
    ("InstallOnTarget", "state", "status", {"InstallFinished"}),
    ("ExportCertificate", "secretVersionId", "versionId", {"ExportCertificate", "InstallTargets"}),
])
def test_renaming_an_output_field_is_reported_at_the_asl_states_that_read_it(
        asl: dict[str, Any], monkeypatch: pytest.MonkeyPatch, state: str, old: str, new: str,
        readers: set[str]) -> None:
    input_model, output_model = CONTRACTS[state]
    monkeypatch.setitem(CONTRACTS, state, (input_model, renamed(output_model, old, new)))
    problems = contract_problems(asl, CONTRACTS)
    named = {line.split(":", 1)[0].rsplit("/", 1)[-1] for line in problems}
    assert named == readers, problems
    assert all(old in line for line in problems), problems


def test_a_path_to_a_field_no_task_writes_is_reported(asl: dict[str, Any]) -> None:
    broken = json.loads(json.dumps(asl))
    broken["States"]["Route"]["Choices"][0]["Variable"] = "$.rollout.decison"
    broken["States"]["InstallTargets"]["ItemProcessor"]["States"]["WaitForReload"]["SecondsPath"] = "$.verfy.x"
    problems = contract_problems(broken, CONTRACTS)
    assert any(p.startswith("Route: ") and "no field 'decison'" in p for p in problems), problems
    assert any(p.startswith("InstallTargets/WaitForReload: ") and "no task writes $.verfy" in p
               for p in problems), problems


def test_every_task_payload_is_its_handlers_input_model(asl: dict[str, Any]) -> None:
    problems = []
    for where, name, state in all_states(asl):
        if name not in CONTRACTS:
            continue
        model = CONTRACTS[name][0]
        sent = payload_fields(state["Parameters"]["Payload"])
        required = {f for f, info in model.model_fields.items() if info.is_required()}
        if not required <= sent <= set(model.model_fields):
            problems.append(f"{where} {name}: Payload {sorted(sent)} vs {model.__name__} fields "
                            f"{sorted(model.model_fields)} (required {sorted(required)})")
    assert not problems, "\n".join(problems)


def test_pass_states_write_what_the_task_they_stand_in_for_would(asl: dict[str, Any]) -> None:
    problems = []
    for where, name, state in all_states(asl):
        if state["Type"] != "Pass":
            continue
        model = STAND_INS[name]
        if "Result" in state:
            try:
                model.model_validate(state["Result"])
            except ValueError as e:
                problems.append(f"{where} {name}: Result is no {model.__name__}: {e}")
            continue
        written = payload_fields(state.get("Parameters", {}))
        required = {f for f, info in model.model_fields.items() if info.is_required()}
        if not required <= written <= set(model.model_fields):
            problems.append(f"{where} {name}: writes {sorted(written)}, {model.__name__} has "
                            f"{sorted(model.model_fields)} (required {sorted(required)})")
    assert not problems, "\n".join(problems)


def test_the_map_item_is_the_target_item_model(asl: dict[str, Any]) -> None:
    assert payload_fields(asl["States"]["InstallTargets"]["ItemSelector"]) == set(TargetItem.model_fields)


def test_the_iteration_state_model_is_the_item_and_every_result_before_the_outcome(asl: dict[str, Any]) -> None:
    """IterationState (what RecordTargetOutcome parses) refuses unknown fields: a new step
    writing a new field before RecordTargetOutcome needs a field here."""
    iteration = asl["States"]["InstallTargets"]["ItemProcessor"]["States"]
    written = {state["ResultPath"].removeprefix("$.").split(".")[0] for name, state in iteration.items()
               if isinstance(state.get("ResultPath"), str) and name != "RecordTargetOutcome"}
    written |= {c["ResultPath"].removeprefix("$.") for state in iteration.values() for c in state.get("Catch", [])}
    assert set(IterationState.model_fields) == set(TargetItem.model_fields) | written


def test_notify_reads_every_field_validate_event_writes() -> None:
    assert set(ValidateResult.model_fields) <= set(RolloutState.model_fields)
    full = ValidateResult(decision="ROLLOUT", certificateArn="arn:x", rolloutId="r1", targetIds=["a"])
    assert RolloutState.model_validate(full.model_dump(mode="json")).targetIds == ["a"]


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


# Actions the service authorization reference lists with no resource type: a statement must say
# Resource "*" for them. secretsmanager:ListSecrets returns names and tags, never a value (the sweep
# of ended rollouts' staged bundles, logic/staging.py).
NO_RESOURCE_TYPE = frozenset({"secretsmanager:ListSecrets"})


def test_inline_policies_scope_secrets_and_keys(template: dict[str, Any]) -> None:
    problems = []
    checked = 0
    for where, statement in inline_statements(template):
        actions = [a for a in as_list(statement.get("Action", [])) if isinstance(a, str)]
        sensitive = [a for a in actions if (a.lower().startswith(("secretsmanager:", "kms:")) or a == "*")
                     and a not in NO_RESOURCE_TYPE]
        if not sensitive or statement.get("Effect") != "Allow":
            continue
        checked += 1
        if "NotResource" in statement or any(r == "*" for r in as_list(statement.get("Resource"))):
            problems.append(f"{where}: {sensitive} on Resource '*'")
    assert checked, "expected inline statements on secretsmanager:/kms: actions"
    assert not problems, "no '*' on secrets or keys (DESIGN.md, Hard rules):\n" + "\n".join(problems)


def test_the_key_policy_lets_secrets_manager_use_the_key_only(template: dict[str, Any]) -> None:
    # The key of key material (OperationsKey, for logs, dead letters and alarms, serves other services).
    keys = [template["Resources"]["KeyMaterialKey"]]
    for key in keys:
        for statement in key["Properties"]["KeyPolicy"]["Statement"]:
            uses = set(as_list(statement["Action"])) & {"kms:Decrypt", "kms:GenerateDataKey"}
            if uses:
                assert "kms:ViaService" in json.dumps(statement.get("Condition", {})), statement.get("Sid")
