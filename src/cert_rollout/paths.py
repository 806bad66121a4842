"""Where the project's files are, for the commands that read or write them (bench).

PROJECT_ROOT is the checkout holding template.yaml when the package is installed editable
(scripts/bootstrap.sh); the local cloud's own lookup is cert_rollout.localcloud.cloud.PROJECT_ROOT.
"""

from __future__ import annotations

from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]
BENCH_RESULTS = PROJECT_ROOT / "bench" / "results.json"
BENCH_DOC = PROJECT_ROOT / "BENCHMARKS.md"
