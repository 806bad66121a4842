"""scripts/check_async_dlq.py: what the global CKV_AWS_116 skip of .checkov.yaml gives up is kept:
every asynchronously invoked function of template.yaml has an encrypted, alarmed dead-letter queue,
and its EventBridge rules dead-letter undeliverable events to one too."""

import copy
import importlib.util
import sys
from pathlib import Path
from typing import Any

import pytest
from samtranslator.yaml_helper import yaml_parse

ROOT = Path(__file__).resolve().parents[2]


def _load():
    spec = importlib.util.spec_from_file_location("_script_check_async_dlq", ROOT / "scripts" / "check_async_dlq.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


check = _load()


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return yaml_parse((ROOT / "template.yaml").read_text())


def test_the_projects_template_passes(template):
    assert check.problems_of(template) == []
    assert check.main([str(ROOT / "template.yaml")]) == 0


def test_both_async_functions_share_the_one_queue(template):
    resources = template["Resources"]
    for lid, event in (("CommandCallbackFunction", "CommandStatusChange"),
                       ("NotifyAbnormalEndFunction", "ExecutionAbnormalEnd")):
        props = resources[lid]["Properties"]
        assert check._queue_logical_id(props["DeadLetterQueue"]["TargetArn"]) == "AsyncDeadLetterQueue"
        arn = props["Events"][event]["Properties"]["DeadLetterConfig"]["Arn"]
        assert check._queue_logical_id(arn) == "AsyncDeadLetterQueue"


def test_a_function_without_dead_letter_queue_fails(template):
    broken = copy.deepcopy(template)
    del broken["Resources"]["CommandCallbackFunction"]["Properties"]["DeadLetterQueue"]
    problems = check.problems_of(broken)
    assert len(problems) == 1 and problems[0].startswith("CommandCallbackFunction: invoked asynchronously")


def test_a_new_async_event_source_on_a_synchronous_function_fails(template):
    broken = copy.deepcopy(template)
    broken["Resources"]["VerifyTargetFunction"]["Properties"]["Events"] = {
        "Nightly": {"Type": "Schedule", "Properties": {"Schedule": "rate(1 day)"}}}
    problems = check.problems_of(broken)
    assert any(p.startswith("VerifyTargetFunction: invoked asynchronously (Nightly)") for p in problems), problems
    assert any("VerifyTargetFunction event Nightly: EventBridge rule without DeadLetterConfig" in p
               for p in problems), problems


def test_a_rule_without_dead_letter_config_fails(template):
    broken = copy.deepcopy(template)
    del broken["Resources"]["NotifyAbnormalEndFunction"]["Properties"]["Events"]["ExecutionAbnormalEnd"][
        "Properties"]["DeadLetterConfig"]
    assert check.problems_of(broken) == [
        "NotifyAbnormalEndFunction event ExecutionAbnormalEnd: EventBridge rule without DeadLetterConfig"]


def test_an_unencrypted_or_unwatched_queue_fails(template):
    broken = copy.deepcopy(template)
    del broken["Resources"]["AsyncDeadLetterQueue"]["Properties"]["KmsMasterKeyId"]
    del broken["Resources"]["AsyncDeadLetterAlarm"]
    problems = check.problems_of(broken)
    assert "CommandCallbackFunction DeadLetterQueue: dead-letter queue AsyncDeadLetterQueue has no KmsMasterKeyId" \
        in problems
    assert "NotifyAbnormalEndFunction DeadLetterQueue: no AWS::CloudWatch::Alarm watches dead-letter queue " \
        "AsyncDeadLetterQueue" in problems
    assert len(problems) == 8  # 2 functions x (DeadLetterQueue, rule DeadLetterConfig) x 2 problems


def test_main_prints_and_fails(tmp_path, capsys):
    path = tmp_path / "t.yaml"
    path.write_text("Resources:\n  F:\n    Type: AWS::Serverless::Function\n    Properties:\n"
                    "      Events:\n        Topic: {Type: SNS, Properties: {Topic: arn:aws:sns:eu-west-1:1:t}}\n")
    assert check.main([str(path)]) == 1
    assert "F: invoked asynchronously (Topic) without DeadLetterQueue" in capsys.readouterr().out
