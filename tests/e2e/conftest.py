"""End-to-end helpers: run a scenario on the embedded local cloud, always close it, and
always require a clean leak check (DESIGN.md hard rules: no key material on any surface).

Only one LocalCloud can run per process (moto backends are process-global), so e2e tests
run sequentially; each scenario costs a cloud start (~5 s) plus its rollouts (~10 s each).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rollout_core.probe import probe_served_certificate

from cert_rollout.localcloud import report as report_module
from cert_rollout.localcloud.scenario import Scenario, ScenarioRunner

SCENARIOS = Path(__file__).resolve().parent / "scenarios"
ROOT = Path(__file__).resolve().parents[2]
EVENTS = ROOT / "events" / "eventbridge"


def probe_serial(port: int, sni: str, timeout: float = 2.0) -> str | None:
    """The serial (canonical colon hex) the target serves now, or None when unreachable."""
    try:
        return probe_served_certificate("127.0.0.1", port, sni, timeout=timeout).serial_hex
    except Exception:  # noqa: BLE001 - unreachable / handshake failure: nothing served
        return None


def run_scenario(spec: dict[str, Any] | str | Path,
                 while_running: Callable[[ScenarioRunner, dict[str, Any]], Any] | None = None,
                 *, template: Path | None = None, expect_leaks: bool = False) -> tuple[dict[str, Any], dict[str, Any]]:
    """Run a scenario (dict, or YAML path / name under scenarios/) on a fresh local cloud.

    Returns (report, data). ``data`` is a snapshot taken before the cloud stops:
      ssm_commands, sns_messages, dynamodb_items, function_logs,
      certificate_arns {name: arn}, wall_seconds (whole run incl. cloud start),
      targets {id: {port, sni, instance_id, directory, fault,
                    fullchain_initial (content when the target was created),
                    fullchain_final, served_serial_final (our own TLS probe, None if unreachable)}},
      while_running: what ``while_running(runner, report)`` returned (called with the cloud up).
    ``template``: a variant of template.yaml to deploy (tests/e2e/iam_variants.py), else the project's.
    The runner is always closed; the leak check of the report must have no finding, unless
    ``expect_leaks`` (a test that plants a leak through a fault asserts the findings itself).
    """
    if isinstance(spec, dict):
        scenario = Scenario.model_validate(spec)
    else:
        path = Path(spec)
        if not path.is_absolute() and not path.exists():
            path = SCENARIOS / path
        scenario = Scenario.load(path)

    initial: dict[str, str] = {}
    runner: ScenarioRunner

    def on_step(_message: str) -> None:
        # Snapshot each target's files right after it is created (the operator's pre-run state).
        targets = getattr(runner, "targets", None)
        if targets is not None:
            for tid, t in targets.targets.items():
                if tid not in initial:
                    initial[tid] = (t.directory / "fullchain.pem").read_text()

    runner = ScenarioRunner(scenario, on_step=on_step, template=template)
    data: dict[str, Any] = {}
    started = time.monotonic()
    try:
        report = runner.run(keep_running=True)
        data["wall_seconds"] = time.monotonic() - started
        report_module.finalize(report, runner.cloud)
        cloud = runner.cloud
        assert cloud is not None and runner.targets is not None
        data["certificate_arns"] = dict(runner.certificate_arns)
        data["ssm_commands"] = cloud.ssm_commands()
        data["sns_messages"] = cloud.sns_messages()
        data["dynamodb_items"] = cloud.dynamodb_items()
        data["function_logs"] = cloud.function_logs()
        data["targets"] = {
            tid: {"port": t.port, "sni": t.sni, "instance_id": t.instance_id, "directory": t.directory,
                  "fault": t.fault, "fullchain_initial": initial.get(tid),
                  "fullchain_final": (t.directory / "fullchain.pem").read_text(),
                  "served_serial_final": probe_serial(t.port, t.sni)}
            for tid, t in runner.targets.targets.items()}
        if while_running is not None:
            data["while_running"] = while_running(runner, report)
    finally:
        runner.close()
    if not expect_leaks:
        assert report["leak_check"]["findings"] == [], f"leak check findings: {report['leak_check']['findings']}"
    return report, data


# ----------------------------------------------------------------------------- small readers

def state_entered(history: list[dict[str, Any]], name: str) -> list[int]:
    """Indexes of the history events where state ``name`` was entered."""
    return [i for i, e in enumerate(history)
            if e["type"].endswith("StateEntered") and e.get("stateEnteredEventDetails", {}).get("name") == name]


def event_index(history: list[dict[str, Any]], event_type: str) -> int:
    for i, e in enumerate(history):
        if e["type"] == event_type:
            return i
    raise AssertionError(f"no {event_type} in history: {[e['type'] for e in history]}")


def task_failures_of(history: list[dict[str, Any]], state: str) -> list[dict[str, Any]]:
    """taskFailedEventDetails of the tasks scheduled by ``state`` (matched by previousEventId chain)."""
    by_id = {e["id"]: e for e in history}
    out = []
    for e in history:
        if e["type"] != "TaskFailed":
            continue
        cur = e
        while cur is not None:
            entered = cur.get("stateEnteredEventDetails")
            if entered:
                if entered.get("name") == state:
                    out.append(e["taskFailedEventDetails"])
                break
            cur = by_id.get(cur.get("previousEventId"))
    return out


def target_by_id(entry: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {t["id"]: t for t in entry["targets"]}


def commands_on(data: dict[str, Any], target_id: str) -> list[dict[str, Any]]:
    """SSM commands sent to the target's managed node."""
    instance = data["targets"][target_id]["instance_id"]
    return [c for c in data["ssm_commands"] if any(i.get("InstanceId") == instance for i in c["Invocations"])]


def install_commands_on(data: dict[str, Any], target_id: str) -> list[dict[str, Any]]:
    """The install (not rollback) commands sent to the target's node."""
    return [c for c in commands_on(data, target_id) if c["Parameters"].get("Action") in (["install"], "install")]


def explain(entry: dict[str, Any]) -> str:
    """One event in a few lines, for assertion messages."""
    lines = [f"step {entry.get('step')} {entry.get('event') or entry.get('input')}: status {entry.get('status')}, "
             f"outcome {entry.get('outcome')}, decision {entry.get('decision')}, error {entry.get('error')}"]
    for t in entry.get("targets") or []:
        lines.append(f"  {t['id']} {t['outcome']} {t['reason']} {str(t['detail'] or '')[:300]}")
    return "\n".join(lines)
