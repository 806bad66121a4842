"""The benchmark command at small sizes (1 and 5 targets): metrics present and sane, outputs written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cert_rollout.localcloud import bench

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def measured(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path, Path]:
    out = tmp_path_factory.mktemp("bench")
    results_path, doc_path = out / "results.json", out / "BENCHMARKS.md"
    doc_path.write_text(f"old\n{bench.READING_START}\nmy hand-written reading\n{bench.READING_END}\n")
    results = bench.bench([1, 5], results_path=results_path, doc_path=doc_path, lambda_workers=2, timeout=300)
    return results, results_path, doc_path


def test_every_size_measured_and_verified(measured: tuple[dict, Path, Path]) -> None:
    results, _, _ = measured
    runs = {r["size"]: r for r in results["runs"]}
    assert sorted(runs) == [1, 5]
    for size, r in runs.items():
        assert "error" not in r, r.get("error")
        assert r["status"] == "SUCCEEDED"
        assert r["all_verified"] and r["targets_verified"] == size == r["targets_recorded"]
        assert r["transitions"] > 0 and r["transitions_outside_map"] > 0
        assert r["transitions_inside_map"] >= size  # at least one state per target
        assert r["lambda"]["invocations"] > size and r["lambda"]["seconds"] > 0
        assert r["largest_payload_bytes"] > 0
        assert r["largest_state_input"]["bytes"] > 0 and r["largest_state_output"]["bytes"] > 0
        assert 0 < r["execution_input_bytes"] < 65536 and r["execution_output_bytes"] > 0
        assert r["wall_seconds"]["rollout"] > 0
        assert r["memory"]["peak_tree_rss_mib"] > r["memory"]["self_ru_maxrss_mib"] / 2 > 0
        assert r["memory"]["samples"] > 1
        assert r["price_usd"]["total"] > r["price_usd"]["step_functions"] > 0
        # the functions' and nodes' API calls were counted (one secret fetch per target on its node)
        assert r["api_calls"].get("node:secretsmanager:GetSecretValue") == size
    # the per-target cost is the same at 1 and 5 targets, the fixed overhead too
    one, five = runs[1], runs[5]
    assert one["transitions_outside_map"] == five["transitions_outside_map"]
    assert five["transitions_inside_map"] / 5 == pytest.approx(one["transitions_inside_map"], rel=0.5)


def test_outputs_written_and_reading_kept(measured: tuple[dict, Path, Path]) -> None:
    _, results_path, doc_path = measured
    saved = json.loads(results_path.read_text())
    assert [r["size"] for r in saved["runs"]] == [1, 5]
    assert saved["machine"]["nproc"] >= 1 and saved["prices_usd"]["sfn_per_transition"] == 0.025 / 1000
    doc = doc_path.read_text()
    assert "my hand-written reading" in doc and doc.count(bench.READING_START) == 1
    assert "| 5 | SUCCEEDED | 5/5 |" in doc
    assert "$0.025 per 1,000 state transitions" in doc


def test_history_metrics_counts_entered_states_and_sizes() -> None:
    history = [
        {"type": "ExecutionStarted", "executionStartedEventDetails": {"input": "{\"a\": 1}"}},
        {"type": "TaskStateEntered", "stateEnteredEventDetails": {"name": "Outer", "input": "x" * 10}},
        {"type": "TaskStateExited", "stateExitedEventDetails": {"name": "Outer", "output": "y" * 30}},
        {"type": "MapStateEntered", "stateEnteredEventDetails": {"name": "Each", "input": "é"}},
        {"type": "PassStateEntered", "stateEnteredEventDetails": {"name": "Inner", "input": "{}"}},
        {"type": "ExecutionSucceeded", "executionSucceededEventDetails": {"output": "{}"}},
    ]
    m = bench.history_metrics(history, {"Inner"})
    assert m["transitions"] == 3 and m["transitions_inside_map"] == 1 and m["transitions_outside_map"] == 2
    assert m["largest_state_input"] == {"bytes": 10, "state": "Outer"}
    assert m["largest_state_output"] == {"bytes": 30, "state": "Outer"}
    assert m["execution_input_bytes"] == 8 and m["execution_output_bytes"] == 2
    assert m["largest_payload_bytes"] == 30
