"""Scenario vocabulary of issue 10: the dies-after-reload and status-event-lost faults and the
restart step are accepted, and a restart of a target that does not exist (or is not an
embedded server) is refused with the step's number."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from cert_rollout.localcloud.scenario import Scenario


def scenario(targets: list[dict[str, Any]], steps: list[dict[str, Any]]) -> Scenario:
    return Scenario.model_validate({"certificates": {"web": {"domain": "web.internal.example"}},
                                    "targets": targets, "steps": steps})


def test_new_faults_and_restart_step_are_accepted() -> None:
    s = scenario([{"id": "dies-1", "certificate": "web", "fault": "dies-after-reload"},
                  {"id": "lost-1", "certificate": "web", "fault": "status-event-lost"}],
                 [{"renew": "web"}, {"restart": "dies-1"}])
    assert s.steps[1].restart == "dies-1"


@pytest.mark.parametrize(("targets", "why"), [
    ([{"id": "web-1", "certificate": "web"}], "step 2: restart of unknown target 'dies-1'"),
    ([{"id": "dies-1", "certificate": "web", "server": "nginx"}],
     "step 2: restart: only embedded targets can be restarted"),
])
def test_restart_of_a_target_that_cannot_be_restarted_is_refused(targets: list[dict[str, Any]], why: str) -> None:
    with pytest.raises(ValidationError, match=why):
        scenario(targets, [{"renew": "web"}, {"restart": "dies-1"}])


def test_restart_is_one_action_of_its_own() -> None:
    with pytest.raises(ValidationError, match="exactly one of"):
        scenario([{"id": "dies-1", "certificate": "web"}], [{"renew": "web", "restart": "dies-1"}])
