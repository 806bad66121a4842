"""What `make demo` prints for 3 targets, rendered from a recorded run (tests/unit/data/
demo_3_targets.json) through the demo's own printers (commands.local.print_step, Progress,
localcloud.report.render): at most 40 lines, every serial whole on one line, in a 100-column
terminal and through a pipe; the history table only when asked; errors on one line."""

from __future__ import annotations

import io
import json
import re
from datetime import datetime
from pathlib import Path

import pytest
from rich.console import Console

from cert_rollout.commands.local import Progress, print_step
from cert_rollout.localcloud import report as reporting
from cert_rollout.render import PIPE_WIDTH, console_for

RECORDED = json.loads((Path(__file__).parent / "data" / "demo_3_targets.json").read_text())
SERIAL = re.compile(r"(?:[0-9a-f]{2}:){7,}[0-9a-f]{2}")
BUDGET = 40


def _history() -> list[dict]:
    return [{**e, "timestamp": datetime.fromisoformat(e["timestamp"])} for e in RECORDED["history"]]


def _serials() -> set[str]:
    entry = RECORDED["report"]["events"][0]
    found = {entry["expected_serial"]}
    for t in entry["targets"]:
        found |= {t["served_serial_before"], t["served_serial_after"]}
    return found


def _demo_output(out: Console, report: dict | None = None, show_history: bool = False) -> list[str]:
    """The demo's stdout as ``out`` renders it: step lines, live progress, the report."""
    for message in RECORDED["steps"]:
        print_step(out, message)
    progress = Progress(out)
    for event in _history():
        progress("arn", event)
    progress.flush()
    reporting.render(report or RECORDED["report"], out, show_history=show_history, written_to=Path("reports/demo.json"))
    text = out.file.getvalue()  # type: ignore[attr-defined]
    return text.splitlines()


def _consoles() -> list[tuple[str, Console]]:
    return [("terminal of 100 columns", Console(file=io.StringIO(), width=100, emoji=False, force_terminal=True,
                                                color_system=None)),
            ("pipe", console_for(io.StringIO()))]


@pytest.fixture(autouse=True)
def _no_columns(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("COLUMNS", raising=False)


@pytest.mark.parametrize("where", ["terminal of 100 columns", "pipe"])
def test_demo_fits_the_line_budget_with_every_serial_whole(where: str) -> None:
    out = dict(_consoles())[where]
    lines = _demo_output(out)
    assert len(lines) <= BUDGET, f"{where}: {len(lines)} lines:\n" + "\n".join(lines)
    # and as a terminal of that width shows them (a longer line takes more than one)
    shown = sum(max(1, -(-len(line) // out.width)) for line in lines)
    assert shown <= BUDGET, f"{where}: {shown} lines on screen"
    assert max(len(line) for line in lines if SERIAL.search(line)) <= out.width
    for serial in _serials():
        assert any(serial in line for line in lines), f"{serial} not shown whole"
        head = serial[:11]
        broken = [line for line in lines if head in line and serial not in line]
        assert not broken, f"{where}: serial {serial} broken across lines: {broken}"
    # every serial-looking run of hex on a line is a whole serial of the run
    for line in lines:
        for match in SERIAL.findall(line):
            assert match in _serials(), f"{where}: partial serial {match!r} in {line!r}"


def test_pipe_width_is_fixed() -> None:
    assert console_for(io.StringIO()).width == PIPE_WIDTH


def test_progress_shows_phases_in_words_not_state_names() -> None:
    lines = _demo_output(Console(file=io.StringIO(), width=100, emoji=False))
    progress = [line for line in lines if re.match(r"\s+\d\d:\d\d:\d\d ", line)]
    text = "\n".join(progress)
    for word in ("installing", "verifying", "done: VERIFIED"):
        assert word in text
    for state in ("Verified", "InstallOnTarget", "VerifyTarget", "BeginVerification", "RecordTargetOutcome"):
        assert state not in text
    # the three targets reach each phase together: one line per phase, not per target
    assert sum("done: VERIFIED" in line for line in progress) <= 2


def test_history_table_only_when_asked() -> None:
    report = json.loads(json.dumps(RECORDED["report"]))
    report["events"][0]["history"] = RECORDED["history"]
    plain = _demo_output(Console(file=io.StringIO(), width=100, emoji=False), report)
    assert not any("Execution history" in line for line in plain)
    asked = _demo_output(Console(file=io.StringIO(), width=100, emoji=False), report, show_history=True)
    assert any("Execution history" in line for line in asked) and len(asked) > len(plain) + len(RECORDED["history"])


def test_an_error_is_one_line_whatever_the_width_and_a_detail_keeps_its_serials_whole() -> None:
    report = json.loads(json.dumps(RECORDED["report"]))
    entry = report["events"][0]
    entry["outcome"] = "FAILED"
    entry["error"] = {"error": "States.TaskFailed", "cause": "first line\nsecond line " + "x" * 600}
    entry["targets"][0].update(outcome="ROLLED_BACK", reason="not-serving-new-serial",
                               detail=f"expected serial {entry['expected_serial']}, served "
                                      f"{entry['targets'][0]['served_serial_before']}\n(SNI web.internal.example)")
    for _, out in _consoles():
        lines = _demo_output(out, report)
        [error] = [line for line in lines if "States.TaskFailed" in line]
        assert "first line second line" in error and error.rstrip().endswith("...")
        assert any(line.startswith("web-1: expected serial") for line in lines)
        for serial in (entry["expected_serial"], entry["targets"][0]["served_serial_before"]):
            assert not [line for line in lines if serial[:11] in line and serial not in line]


class _RecordedSfn:
    """DescribeExecution / GetExecutionHistory answering the recorded run (already ended)."""

    def describe_execution(self, executionArn: str) -> dict:
        return {"executionArn": executionArn, "status": "SUCCEEDED"}

    def get_execution_history(self, **kwargs: object) -> dict:
        return {"events": _history()}


def test_renew_follow_shows_the_same_phases_in_words() -> None:
    from cert_rollout.commands.renew import follow_execution

    lines: list[str] = []
    desc = follow_execution(_RecordedSfn(), "arn", 5, None, lines.append)
    assert desc["status"] == "SUCCEEDED"
    words = [line.split(None, 2)[2] for line in lines]
    assert any(line.endswith(" installing") and line.count("web-") == 3 for line in lines), lines
    assert words[-1].endswith("succeeded") and not any("Verified" in line for line in lines)
    assert sum(line.endswith("done: VERIFIED") for line in lines) == 1  # the three targets on one line
