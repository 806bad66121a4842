"""cert_rollout.render: phases in words tied to the ASL's states, execution facts, one-line output."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from cert_rollout.render import (
    EXECUTION_PHASES,
    OUTCOME_STATE,
    TARGET_PHASES,
    PhaseGroups,
    PhaseLines,
    execution_facts,
    facts_lines,
    one_line,
    phase_of,
    trigger_of,
)

ROOT = Path(__file__).resolve().parents[2]
ASL_FILES = sorted((ROOT / "statemachine").glob("*.asl.json"))
EVENTS = ROOT / "events" / "eventbridge"
SILENT_TYPES = {"Choice", "Succeed", "Fail"}


def _maps(states: dict) -> list[dict]:
    """Every Map state's ItemProcessor (or Iterator) states, nested ones too."""
    found = []
    for state in states.values():
        if state["Type"] == "Map":
            inner = (state.get("ItemProcessor") or state.get("Iterator"))["States"]
            found += [inner, *_maps(inner)]
    return found


def _asl(path: Path) -> dict:
    return json.loads(path.read_text())


@pytest.mark.parametrize("asl", ASL_FILES, ids=lambda p: p.name)
def test_every_per_target_state_has_a_phase_word(asl: Path) -> None:
    for states in _maps(_asl(asl)["States"]):
        for name, state in states.items():
            assert name in TARGET_PHASES, f"{asl.name}: ItemProcessor state {name!r} has no word in render.TARGET_PHASES"
            if TARGET_PHASES[name] is None:  # its exit, or the state it leads to, shows the phase
                assert state["Type"] in SILENT_TYPES or name == OUTCOME_STATE, f"{name} must show a phase"


@pytest.mark.parametrize("asl", ASL_FILES, ids=lambda p: p.name)
def test_every_execution_state_has_a_phase_word(asl: Path) -> None:
    for name, state in _asl(asl)["States"].items():
        assert name in EXECUTION_PHASES, f"{asl.name}: state {name!r} has no entry in render.EXECUTION_PHASES"
        if EXECUTION_PHASES[name] is None:  # the Map: its targets' phases show
            assert state["Type"] in {*SILENT_TYPES, "Map"}, f"{name} must show a phase"


def test_no_phase_word_for_a_state_the_asl_no_longer_has() -> None:
    per_target = {n for asl in ASL_FILES for states in _maps(_asl(asl)["States"]) for n in states}
    top = {n for asl in ASL_FILES for n in _asl(asl)["States"]}
    assert set(TARGET_PHASES) - per_target == set(), "stale names in render.TARGET_PHASES"
    assert set(EXECUTION_PHASES) - top == set(), "stale names in render.EXECUTION_PHASES"


def _entered(eid: int, name: str, target: str | None, second: int) -> dict:
    data = {"targetId": target} if target else {"rollout": {}}
    return {"id": eid, "type": "TaskStateEntered", "timestamp": datetime(2026, 12, 2, 10, 0, second, tzinfo=UTC),
            "stateEnteredEventDetails": {"name": name, "input": json.dumps(data)}}


def _outcome(eid: int, target: str, outcome: str, reason: str | None, second: int) -> dict:
    return {"id": eid, "type": "TaskStateExited", "timestamp": datetime(2026, 12, 2, 10, 0, second, tzinfo=UTC),
            "stateExitedEventDetails": {"name": "RecordTargetOutcome", "output": json.dumps(
                {"targetId": target, "outcome": outcome, "reason": reason})}}


def test_progress_shows_words_once_per_change_and_never_the_choice_name() -> None:
    events = [_entered(1, "ValidateEvent", None, 0),
              _entered(2, "InstallOnTarget", "web-1", 1), _entered(3, "InstallFinished", "web-1", 2),
              _entered(4, "BeginVerification", "web-1", 3), _entered(5, "VerifyTarget", "web-1", 3),
              _entered(6, "Verified", "web-1", 4), _entered(7, "WaitForReload", "web-1", 4),
              _entered(8, "VerifyTarget", "web-1", 5), _entered(9, "Verified", "web-1", 6),
              _entered(10, "RollbackTarget", "web-1", 6), _entered(11, "RecordTargetOutcome", "web-1", 7),
              _outcome(12, "web-1", "ROLLED_BACK", "not-serving-new-serial", 8),
              {"id": 13, "type": "ExecutionSucceeded", "timestamp": datetime(2026, 12, 2, 10, 0, 9, tzinfo=UTC)}]
    lines = PhaseLines()
    shown = [line for e in events if (line := lines(e))]
    words = [line.split(None, 2)[2] for line in shown]
    assert words == ["validating the event", "installing", "verifying", "waiting for reload", "verifying",
                     "rolling back", "done: ROLLED_BACK (not-serving-new-serial)", "succeeded"]
    assert not any("Verified" in line or "InstallFinished" in line for line in shown)
    assert shown[1].startswith("10:00:01 web-1")


def test_targets_reaching_a_phase_together_share_a_line() -> None:
    events = [_entered(1, "ValidateEvent", None, 0),
              _entered(2, "InstallOnTarget", "web-1", 3), _entered(3, "InstallOnTarget", "web-2", 3),
              _entered(4, "InstallOnTarget", "web-3", 5), _entered(5, "VerifyTarget", "web-2", 9),
              _entered(6, "VerifyTarget", "web-1", 20), _entered(7, "ReleaseLease", None, 30),
              _entered(8, "Notify", None, 30)]
    groups = PhaseGroups(width=12, window=2.0)
    lines = [line for e in events for line in groups.add(e)] + groups.flush()
    assert lines == ["10:00:00 execution    validating the event", "10:00:03 web-1, web-2, web-3 installing",
                     "10:00:09 web-2        verifying", "10:00:20 web-1        verifying",
                     "10:00:30 execution    releasing the lease, notifying"]
    many = PhaseGroups(names=20)
    for i in range(9):
        many.add(_entered(i, "InstallOnTarget", f"web-{i + 1}", 1))
    assert many.flush() == ["10:00:01 9 targets (web-1 .. web-9) installing"]


def test_a_state_missing_from_the_table_shows_its_name() -> None:
    assert phase_of(_entered(1, "SomeNewState", "web-1", 0)) == ("web-1", "SomeNewState")


@pytest.mark.parametrize(("sample", "trigger"), [("health-renewal-completed.json", "Health"),
                                                 ("acm-certificate-available-renewal.json", "ACM"),
                                                 ("manual-redeploy.json", "manual")])
def test_trigger_of_the_sample_events(sample: str, trigger: str) -> None:
    event = json.loads((EVENTS / sample).read_text())
    assert trigger_of(event)[0] == trigger


ARN = "arn:aws:acm:eu-west-1:123456789012:certificate/11111111-2222-3333-4444-555555555555"
SERIAL = "0a:" * 19 + "0b"


def test_facts_of_a_succeeded_execution_come_from_its_output() -> None:
    event = json.loads((EVENTS / "health-renewal-completed.json").read_text().replace("${CertificateArn}", ARN))
    desc = {"executionArn": "arn:aws:states:eu-west-1:123456789012:execution:sm:r-1", "status": "SUCCEEDED",
            "startDate": datetime(2026, 12, 2, 10, tzinfo=UTC), "input": json.dumps(event),
            "output": json.dumps({"outcome": "ROLLED_OUT", "certificateArn": ARN, "expectedSerial": SERIAL,
                                  "targetCount": 3, "verified": 2, "rolledBack": 0, "failed": 1, "superseded": 0})}
    facts = execution_facts(desc)
    assert facts["trigger"] == "Health" and facts["triggerDetail"] == "AWS_ACM_RENEWAL_STATE_CHANGE"
    assert (facts["certificateArn"], facts["serial"], facts["outcome"]) == (ARN, SERIAL, "ROLLED_OUT")
    assert (facts["verified"], facts["failed"], facts["targetCount"]) == (2, 1, 3)
    lines = facts_lines(facts)
    assert f"Serial {SERIAL}" in lines and any("2/3 verified, 1 failed" in line for line in lines)


def test_facts_of_a_failed_execution_come_from_its_history() -> None:
    desc = {"executionArn": "arn:aws:states:eu-west-1:123456789012:execution:sm:r-2", "status": "FAILED",
            "input": json.dumps({"certificateArn": ARN, "force": True}), "error": "RolloutFailed",
            "cause": "one\ntwo"}
    events = [{"id": 1, "type": "TaskStateExited", "stateExitedEventDetails": {"name": "ValidateEvent", "output": json.dumps(
                  {"rollout": {"decision": "ROLLOUT", "serial": SERIAL, "certificateArn": ARN}})}},
              _outcome(2, "web-1", "VERIFIED", None, 1), _outcome(3, "web-2", "ROLLED_BACK", "expired", 2)]
    facts = execution_facts(desc, events)
    assert facts["trigger"] == "manual" and facts["serial"] == SERIAL
    assert (facts["targetCount"], facts["verified"], facts["rolledBack"]) == (2, 1, 1)
    assert "Error RolloutFailed: one two" in facts_lines(facts)


def test_one_line() -> None:
    assert one_line("a\n  b\r\nc") == "a b c"
    assert len(one_line("x" * 1000, 50)) == 50
