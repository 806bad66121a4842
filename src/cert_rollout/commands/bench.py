"""`cert-rollout bench`: one rollout at several target counts on the local cloud, measured
(cert_rollout.localcloud.bench; needs the [local] extra). Writes bench/results.json and
BENCHMARKS.md."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from cert_rollout.commands.common import require_local
from cert_rollout.paths import BENCH_DOC, BENCH_RESULTS


def bench_command(
    sizes: str = typer.Option("1,10,100,1000", "--sizes", help="Comma-separated target counts."),
    results: str = typer.Option(str(BENCH_RESULTS), "--results", help="Results JSON (merged by size)."),
    doc: str = typer.Option(str(BENCH_DOC), "--doc", help="Markdown regenerated from the results."),
    max_concurrency: int = typer.Option(40, "--max-concurrency", help="Map MaxConcurrency parameter."),
    lambda_workers: int = typer.Option(8, "--lambda-workers", help="Warm workers per function."),
    timeout: float = typer.Option(3600, "--timeout", help="Seconds to wait for one execution."),
    fresh: bool = typer.Option(False, "--fresh", help="Drop earlier results instead of merging."),
) -> None:
    """Measure one rollout at several target counts on the local cloud (wall time, state
    transitions, Lambda invocations and seconds, payload sizes, peak memory, price)."""
    require_local("bench")
    try:
        wanted = [int(s) for s in sizes.split(",") if s.strip()]
    except ValueError:
        raise typer.BadParameter("--sizes takes integers, e.g. 1,10,100") from None
    if not wanted or min(wanted) < 1:
        raise typer.BadParameter("--sizes needs at least one size >= 1")
    from cert_rollout.localcloud.bench import bench

    def show(r: dict[str, Any]) -> None:
        if "error" in r:
            print(f"size {r['size']}: {r['error']}", flush=True)
            return
        print(f"size {r['size']}: {r['status']} {r['targets_verified']}/{r['size']} verified, "
              f"rollout {r['wall_seconds']['rollout']} s, {r['transitions']} transitions, "
              f"{r['lambda']['invocations']} invocations, {r['lambda']['seconds']} Lambda-s, "
              "largest payload "
              f"{r['largest_payload_bytes']} B, peak RSS {r['memory']['peak_tree_rss_mib']} MiB, "
              f"~${r['price_usd']['total']:.4f}", flush=True)

    out = bench(wanted, results_path=Path(results), doc_path=Path(doc),
                parameters={"MaxConcurrency": str(max_concurrency)},
                lambda_workers=lambda_workers, timeout=timeout, fresh=fresh, on_result=show)
    print(f"results: {results}  document: {doc}")
    done = {r["size"]: r for r in out["runs"]}
    ok = all("error" not in done[s] and done[s]["all_verified"] for s in wanted)
    raise typer.Exit(0 if ok else 1)


def register(app: typer.Typer) -> None:
    """Add ``bench`` to the cert-rollout app."""
    app.command("bench")(bench_command)
