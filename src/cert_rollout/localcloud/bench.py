"""Benchmark: one rollout on the local cloud at several target counts, measured.

``cert-rollout bench --sizes 1,10,100,1000`` (``make bench``) runs, for each size N, a fresh
local cloud (in its own child process, so memory figures belong to that size only) with N
embedded targets served by ONE target_server process (one listener per target), renews the
certificate, delivers the Health event through the rule and waits for the execution. Per size:

- wall time (setup, rollout = event delivered -> execution ended, total)
- state transitions: history events of type ``*StateEntered`` (outside / inside the Map)
- Lambda invocations and Lambda-seconds (``cloud.runtime.stats``), GB-seconds at each
  function's MemorySize
- the largest state input / output in bytes (``stateEnteredEventDetails.input`` /
  ``stateExitedEventDetails.output``), the execution input / output
- API calls the functions and nodes made (counted at the local endpoint, by service/action)
- peak memory: RSS of the process + all descendants sampled from /proc every ~0.5 s (peak of
  the sum), and the process's own ru_maxrss
- outcomes: every target VERIFIED?
- the estimated AWS price of the rollout at list prices (PRICES below)

Results are merged by size into bench/results.json; BENCHMARKS.md is regenerated from them,
keeping the hand-written reading between the READING markers.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from cert_rollout.paths import BENCH_DOC as DOC
from cert_rollout.paths import BENCH_RESULTS as RESULTS
from cert_rollout.paths import PROJECT_ROOT

READING_START = "<!-- READING:START (hand-written; `cert-rollout bench` keeps this section) -->"
READING_END = "<!-- READING:END -->"

DEFAULT_PARAMETERS = {"MaxConcurrency": "40", "MaxTargetsPerRollout": "1000", "PollIntervalSeconds": "1", "VerifyTimeoutSeconds": "30",
                      "CommandTimeoutSeconds": "600", "ProbeTimeoutSeconds": "5"}

# List prices, us-east-1, USD (named in BENCHMARKS.md).
PRICES = {
    "sfn_per_transition": 0.025 / 1000,          # Step Functions Standard: $0.025 per 1,000 state transitions
    "lambda_per_gb_second": 0.0000166667,       # Lambda x86: $0.0000166667 per GB-second
    "lambda_per_request": 0.20 / 1_000_000,      # Lambda: $0.20 per 1M requests
    "dynamodb_per_write": 1.25 / 1_000_000,      # DynamoDB on-demand: $1.25 per million write request units
    "dynamodb_per_read": 0.25 / 1_000_000,       # DynamoDB on-demand: $0.25 per million read request units
    "secretsmanager_per_call": 0.05 / 10_000,    # Secrets Manager: $0.05 per 10,000 API calls
    "kms_per_request": 0.03 / 10_000,            # KMS: $0.03 per 10,000 requests (CMK behind the secret)
    "sns_per_publish": 0.50 / 1_000_000,         # SNS: $0.50 per 1M publishes (first 1M/month free)
    "ssm_run_command": 0.0,                      # SSM Run Command on managed instances: no charge
}

HISTORY_LIMIT = 25_000  # Step Functions Standard: events in one execution's history (hard quota)
DYNAMODB_WRITES = {"PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem", "TransactWriteItems"}
DYNAMODB_READS = {"GetItem", "Query", "Scan", "BatchGetItem", "TransactGetItems"}


# --------------------------------------------------------------------------- memory


def _proc_table() -> dict[int, tuple[int, int]]:
    """pid -> (ppid, rss bytes) for every process we can read."""
    page = os.sysconf("SC_PAGE_SIZE")
    out: dict[int, tuple[int, int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read().decode("ascii", "replace")
            with open(f"/proc/{entry}/statm", "rb") as f:
                rss_pages = int(f.read().split()[1])
        except (OSError, ValueError, IndexError):
            continue
        try:
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
        except (IndexError, ValueError):
            continue
        out[int(entry)] = (ppid, rss_pages * page)
    return out


def tree_rss(root: int) -> tuple[int, int]:
    """(RSS bytes of ``root`` and all its descendants, number of processes)."""
    table = _proc_table()
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    total, count, stack = 0, 0, [root]
    while stack:
        pid = stack.pop()
        if pid in table:
            total += table[pid][1]
            count += 1
        stack.extend(children.get(pid, []))
    return total, count


class MemorySampler:
    """Samples tree_rss(this process) every ``interval`` seconds on a thread; keeps the peak."""

    def __init__(self, interval: float = 0.5) -> None:
        self.interval = interval
        self.peak_bytes = 0
        self.peak_processes = 0
        self.max_processes = 0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True, name="bench-memory")

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval)

    def sample(self) -> None:
        rss, n = tree_rss(os.getpid())
        self.samples += 1
        self.max_processes = max(self.max_processes, n)
        if rss > self.peak_bytes:
            self.peak_bytes, self.peak_processes = rss, n

    def start(self) -> MemorySampler:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.sample()


# --------------------------------------------------------------------------- API call counting


_ACTIVE_COUNTER: ApiCounter | None = None
#: The product part of the installer's User-Agent (installer/install_bundle.py USER_AGENT,
#: tied by tests/unit/test_installer_fetch.py).
NODE_USER_AGENT = "acm-cert-rollout-installer/"


class ApiCounter:
    """Counts requests reaching the local endpoint by (origin, service, action). Origin from the
    User-Agent: "lambda" (boto3 in a function: exec-env/AWS_Lambda_*), "node" (the installer on a
    managed node: its own User-Agent, NODE_USER_AGENT, on the standard-library and botocore fetch
    paths, or the AWS CLI's), "other" (the Step Functions interpreter, this driver)."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}
        self._lock = threading.Lock()
        self.enabled = False

    def install(self) -> ApiCounter:
        """Wrap moto's WSGI dispatcher (once per process); this counter becomes the active one."""
        import io

        from moto.moto_server.werkzeug_app import DomainDispatcherApplication

        global _ACTIVE_COUNTER
        _ACTIVE_COUNTER = self
        if not getattr(DomainDispatcherApplication.__call__, "_bench_counting", False):
            original = DomainDispatcherApplication.__call__

            def counting(self: DomainDispatcherApplication, environ: dict[str, Any], start_response: Any) -> Any:
                active = _ACTIVE_COUNTER
                if active is not None and active.enabled:
                    try:
                        active._count(environ, io)
                    except Exception:  # counting never breaks a request
                        pass
                return original(self, environ, start_response)

            counting._bench_counting = True  # type: ignore[attr-defined]
            DomainDispatcherApplication.__call__ = counting  # type: ignore[method-assign]
        return self

    def _count(self, environ: dict[str, Any], io: Any) -> None:
        ua = environ.get("HTTP_USER_AGENT", "")
        origin = "other"
        if "exec-env/AWS_Lambda" in ua:
            origin = "lambda"
        elif ua.startswith("aws-cli") or NODE_USER_AGENT in ua:
            origin = "node"
        auth = environ.get("HTTP_AUTHORIZATION", "")
        service = "?"
        if "Credential=" in auth:
            scope = auth.split("Credential=", 1)[1].split(",", 1)[0].split("/")
            if len(scope) >= 4:
                service = scope[3]
        action = environ.get("HTTP_X_AMZ_TARGET", "").rsplit(".", 1)[-1]
        if not action and "x-www-form-urlencoded" in environ.get("CONTENT_TYPE", ""):
            length = int(environ.get("CONTENT_LENGTH") or 0)
            body = environ["wsgi.input"].read(length) if length else b""
            environ["wsgi.input"] = io.BytesIO(body)
            from urllib.parse import parse_qs

            action = parse_qs(body.decode("utf-8", "replace")).get("Action", [""])[0]
        if not action:
            path = environ.get("PATH_INFO", "")
            action = "Invoke" if service == "lambda" and path.endswith("/invocations") else \
                f"{environ.get('REQUEST_METHOD', '')} {path.split('/')[1] if '/' in path else path}"
        key = f"{origin}:{service}:{action}"
        with self._lock:
            self.counts[key] = self.counts.get(key, 0) + 1

    def reset(self) -> None:
        with self._lock:
            self.counts = {}


# --------------------------------------------------------------------------- one size


def _asl_inner_states(definition: dict[str, Any]) -> set[str]:
    inner: set[str] = set()

    def walk(states: dict[str, Any], in_map: bool) -> None:
        for name, state in states.items():
            if in_map:
                inner.add(name)
            if state.get("Type") == "Map":
                proc = state.get("ItemProcessor") or state.get("Iterator") or {}
                walk(proc.get("States", {}), True)
            if state.get("Type") == "Parallel":
                for branch in state.get("Branches", []):
                    walk(branch.get("States", {}), in_map)

    walk(definition.get("States", {}), False)
    return inner


def history_metrics(history: list[dict[str, Any]], inner_states: set[str]) -> dict[str, Any]:
    """Transitions and payload sizes from an execution history."""
    entered = [e for e in history if e["type"].endswith("StateEntered")]
    by_state: dict[str, int] = {}
    for e in entered:
        name = e.get("stateEnteredEventDetails", {}).get("name", "?")
        by_state[name] = by_state.get(name, 0) + 1
    inside = sum(c for n, c in by_state.items() if n in inner_states)

    def biggest(kind: str, field: str) -> dict[str, Any]:
        best: dict[str, Any] = {"bytes": 0, "state": None}
        for e in history:
            details = e.get(kind)
            if details and details.get(field) is not None:
                size = len(details[field].encode("utf-8"))
                if size > best["bytes"]:
                    best = {"bytes": size, "state": details.get("name")}
        return best

    def execution(kind: str, field: str) -> int:
        for e in history:
            details = e.get(kind)
            if details and details.get(field) is not None:
                return len(details[field].encode("utf-8"))
        return 0

    largest_in = biggest("stateEnteredEventDetails", "input")
    largest_out = biggest("stateExitedEventDetails", "output")
    task_params = 0
    for e in history:
        details = e.get("taskScheduledEventDetails")
        if details and details.get("parameters"):
            task_params = max(task_params, len(details["parameters"].encode("utf-8")))
    exec_in = execution("executionStartedEventDetails", "input")
    exec_out = max(execution("executionSucceededEventDetails", "output"), 0)
    types: dict[str, int] = {}
    for e in history:
        types[e["type"]] = types.get(e["type"], 0) + 1
    return {
        "history_events": len(history),
        "transitions": len(entered),
        "transitions_outside_map": len(entered) - inside,
        "transitions_inside_map": inside,
        "transitions_by_state": dict(sorted(by_state.items())),
        "event_types": dict(sorted(types.items())),
        "largest_state_input": largest_in,
        "largest_state_output": largest_out,
        "largest_task_parameters_bytes": task_params,
        "execution_input_bytes": exec_in,
        "execution_output_bytes": exec_out,
        "largest_payload_bytes": max(largest_in["bytes"], largest_out["bytes"], exec_in, exec_out),
    }


def price(result: dict[str, Any]) -> dict[str, float]:
    """Estimated AWS price (USD) of the measured rollout at PRICES."""
    calls = result.get("api_calls", {})

    def n(origins: tuple[str, ...], service: str, actions: set[str] | None = None) -> int:
        total = 0
        for key, count in calls.items():
            origin, svc, action = key.split(":", 2)
            if origin in origins and svc == service and (actions is None or action in actions):
                total += count
        return total

    ours = ("lambda", "node")
    lam = result["lambda"]
    sm_calls = n(ours, "secretsmanager")
    out = {
        "step_functions": result["transitions"] * PRICES["sfn_per_transition"],
        "lambda_requests": lam["invocations"] * PRICES["lambda_per_request"],
        "lambda_compute": lam["gb_seconds"] * PRICES["lambda_per_gb_second"],
        "dynamodb": (n(ours, "dynamodb", DYNAMODB_WRITES) * PRICES["dynamodb_per_write"]
                     + n(ours, "dynamodb", DYNAMODB_READS) * PRICES["dynamodb_per_read"]),
        "secrets_manager": sm_calls * PRICES["secretsmanager_per_call"],
        "kms": (n(ours, "kms") + sm_calls) * PRICES["kms_per_request"],
        "sns": n(ours, "sns", {"Publish"}) * PRICES["sns_per_publish"],
        "ssm_run_command": 0.0,
    }
    out["total"] = sum(out.values())
    return {k: round(v, 8) for k, v in out.items()}


def run_size(size: int, *, parameters: dict[str, str] | None = None, lambda_workers: int = 8,
             timeout: float = 3600, workdir: Path | None = None, log: Any = None,
             key_algorithm: str = "RSA_2048", leak_check: bool = False) -> dict[str, Any]:
    """One rollout to ``size`` targets on a fresh local cloud, measured (see module docstring)."""
    from boto3.dynamodb.types import TypeDeserializer
    from rollout_core.domain.serials import canonical_serial, parse_serial

    from cert_rollout.localcloud.cloud import LocalCloud
    from cert_rollout.localcloud.scenario import fill_placeholders
    from cert_rollout.localcloud.targets import LocalTargets

    say = log or (lambda m: print(f"[bench {size}] {m}", file=sys.stderr, flush=True))
    params = {**DEFAULT_PARAMETERS, **(parameters or {})}
    workdir = workdir or Path(tempfile.mkdtemp(prefix=f"cert-rollout-bench-{size}-"))
    sampler = MemorySampler().start()
    counter = ApiCounter().install()
    started = time.time()
    cloud = LocalCloud(parameters=params, lambda_workers=lambda_workers)
    targets: LocalTargets | None = None
    try:
        cloud.start()
        say(f"local cloud up in {time.time() - started:.1f} s")
        pca = cloud.private_ca()
        sni = "web.internal.example"
        arn = pca.request_certificate(sni, ["api.internal.example"], key_algorithm)
        targets = LocalTargets(cloud, workdir)
        t = time.time()
        targets.add_embedded_shared([(f"t-{i:04d}", arn, sni) for i in range(1, size + 1)])
        say(f"{size} targets (one target_server process) up and registered in {time.time() - t:.1f} s")
        pca.renew(arn)
        acm = cloud.client("acm")
        raw_serial = acm.describe_certificate(CertificateArn=arn)["Certificate"]["Serial"]
        expected = canonical_serial(parse_serial(raw_serial))
        assert cloud.runtime is not None
        before = {name: (s.count, s.billed_seconds) for name, s in cloud.runtime.stats.items()}
        counter.reset()
        counter.enabled = True
        values = {"Region": cloud.region, "AccountId": cloud.account_id, "CertificateArn": arn}
        event = json.loads(fill_placeholders(
            (PROJECT_ROOT / "events/eventbridge/health-renewal-completed.json").read_text(), values))
        setup_seconds = time.time() - started
        t0 = time.time()
        arns = cloud.deliver_event(event)
        if not arns:
            raise RuntimeError("the Health event started no execution")
        execution_arn = arns[-1]
        description = cloud.wait_for_execution(execution_arn, timeout=timeout)
        rollout_seconds = time.time() - t0
        say(f"execution {description['status']} in {rollout_seconds:.1f} s")
        time.sleep(1.0)  # late asynchronous invocations (command callbacks) land in the stats
        counter.enabled = False
        functions: dict[str, Any] = {}
        invocations, seconds, gb_seconds, errors = 0, 0.0, 0.0, 0
        for name, stats in cloud.runtime.stats.items():
            spec = cloud.runtime.specs[name]
            count = stats.count - before.get(name, (0, 0.0))[0]
            billed = stats.billed_seconds - before.get(name, (0, 0.0))[1]
            functions[spec.logical_id] = {"invocations": count, "seconds": round(billed, 3),
                                          "memory_mb": spec.memory_mb, "errors": stats.errors,
                                          "cold_starts": stats.cold_starts}
            invocations += count
            seconds += billed
            gb_seconds += billed * spec.memory_mb / 1024
            errors += stats.errors
        history = cloud.history(execution_arn)
        definition = json.loads(cloud.client("stepfunctions").describe_state_machine(
            stateMachineArn=cloud.state_machine_arn)["definition"])
        metrics = history_metrics(history, _asl_inner_states(definition))
        des = TypeDeserializer()
        table = cloud.deployment.physical["RolloutTable"] if cloud.deployment else ""
        rollout_id = execution_arn.rsplit(":", 1)[-1]
        records: list[dict[str, Any]] = []
        kwargs: dict[str, Any] = {"TableName": table, "KeyConditionExpression": "rolloutId = :r",
                                  "ExpressionAttributeValues": {":r": {"S": rollout_id}}}
        ddb = cloud.client("dynamodb")
        while True:
            page = ddb.query(**kwargs)
            records.extend({k: des.deserialize(v) for k, v in i.items()} for i in page["Items"])
            if "LastEvaluatedKey" not in page:
                break
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        outcomes: dict[str, int] = {}
        for r in records:
            outcomes[str(r.get("outcome"))] = outcomes.get(str(r.get("outcome")), 0) + 1
        not_verified = sorted((r["targetId"], r.get("outcome"), r.get("reason")) for r in records
                              if r.get("outcome") != "VERIFIED")[:10]
        notification: dict[str, Any] = {}
        for e in reversed(history):
            d = e.get("stateExitedEventDetails")
            if d and d.get("name") == "Notify":
                notification = json.loads(d.get("output") or "{}").get("notification", {})
                break
        sampler.stop()
        self_maxrss_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        children_maxrss_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        result: dict[str, Any] = {
            "size": size,
            "status": description["status"],
            "outcome": notification.get("outcome"),
            "expected_serial": expected,
            "targets_recorded": len(records),
            "targets_verified": outcomes.get("VERIFIED", 0),
            "all_verified": outcomes.get("VERIFIED", 0) == size and len(records) == size,
            "outcomes": outcomes,
            "not_verified_sample": not_verified,
            "wall_seconds": {"setup": round(setup_seconds, 2), "rollout": round(rollout_seconds, 2),
                             "total": round(time.time() - started, 2)},
            **metrics,
            "lambda": {"invocations": invocations, "seconds": round(seconds, 3),
                       "gb_seconds": round(gb_seconds, 3), "errors": errors, "functions": functions},
            "api_calls": dict(sorted(counter.counts.items())),
            "memory": {"peak_tree_rss_mib": round(sampler.peak_bytes / 2**20, 1),
                       "peak_tree_processes": sampler.peak_processes,
                       "max_tree_processes": sampler.max_processes,
                       "samples": sampler.samples, "interval_seconds": sampler.interval,
                       "self_ru_maxrss_mib": round(self_maxrss_kib / 1024, 1),
                       "largest_child_ru_maxrss_mib": round(children_maxrss_kib / 1024, 1)},
            "parameters": params, "lambda_workers": lambda_workers,
            "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        result["price_usd"] = price(result)
        result["key_algorithm"] = key_algorithm
        if leak_check:
            from cert_rollout.localcloud.leaks import collect_surfaces, scan

            result["leak_findings"] = [f.as_dict() for f in scan(collect_surfaces(cloud, [execution_arn]), cloud.secrets)]
        return result
    finally:
        sampler.stop()
        counter.enabled = False
        if targets is not None:
            targets.stop()
        cloud.stop()


# --------------------------------------------------------------------------- driver, results, document


def machine() -> dict[str, Any]:
    mem_kib = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kib = int(line.split()[1])
    except OSError:
        pass
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        nproc = len(os.sched_getaffinity(0))
    except AttributeError:
        nproc = os.cpu_count() or 0
    return {"nproc": nproc, "memory_gib": round(mem_kib / 2**20, 1), "python": platform.python_version(),
            "machine": platform.machine(), "kernel": platform.release(), "cpu": cpu,
            "ulimit_nofile": resource.getrlimit(resource.RLIMIT_NOFILE)[0]}


def run_in_child(size: int, parameters: dict[str, str], lambda_workers: int,
                 timeout: float) -> dict[str, Any]:
    """run_size in a fresh interpreter (memory, moto state and ru_maxrss belong to this size)."""
    with tempfile.TemporaryDirectory(prefix="cert-rollout-bench-") as tmp:
        out = Path(tmp) / "result.json"
        cmd = [sys.executable, "-m", "cert_rollout.localcloud.bench", "--size", str(size), "--out", str(out),
               "--lambda-workers", str(lambda_workers), "--timeout", str(timeout),
               "--parameters", json.dumps(parameters)]
        proc = subprocess.run(cmd, cwd=str(PROJECT_ROOT), stdin=subprocess.DEVNULL)
        if proc.returncode != 0 or not out.exists():
            return {"size": size, "error": f"bench child exited with code {proc.returncode}",
                    "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        return json.loads(out.read_text())


def load_results(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
        if isinstance(data, dict) and isinstance(data.get("runs"), list):
            return data
    except (OSError, json.JSONDecodeError):
        pass
    return {"runs": []}


def merge(existing: dict[str, Any], new_runs: list[dict[str, Any]], info: dict[str, Any]) -> dict[str, Any]:
    by_size = {r["size"]: r for r in existing.get("runs", [])}
    for r in new_runs:
        by_size[r["size"]] = r
    return {"machine": info, "prices_usd": PRICES, "runs": [by_size[s] for s in sorted(by_size)]}


def _fmt_bytes(n: int) -> str:
    return f"{n:,} B" if n < 10_240 else f"{n / 1024:,.1f} KiB"


def render_markdown(results: dict[str, Any], reading: str | None) -> str:
    runs = [r for r in results["runs"] if "error" not in r]
    failed = [r for r in results["runs"] if "error" in r]
    m = results.get("machine", {})
    lines = [
        "# Benchmarks: one rollout on the local cloud, 1 to 1,000 targets",
        "",
        "<!-- Generated by `cert-rollout bench` from bench/results.json; edit only the reading section. -->",
        "",
        f"Machine: {m.get('nproc')} CPUs ({m.get('cpu') or 'unknown CPU'}), "
        f"{m.get('memory_gib')} GiB memory, "
        f"Python {m.get('python')}, `uname -m` {m.get('machine')}, kernel {m.get('kernel')}, "
        f"ulimit -n {m.get('ulimit_nofile')}.",
        "",
        "Command: `make bench`, i.e. `.venv/bin/cert-rollout bench --sizes 1,10,100,1000` (each size runs in "
        "its own child process on a fresh local cloud; results merge into bench/results.json by size).",
        "",
    ]
    if runs:
        p = runs[-1]["parameters"]
        lines += [f"Parameters: {', '.join(f'{k}={v}' for k, v in sorted(p.items()))}; "
                  f"{runs[-1]['lambda_workers']} warm workers per function. All N targets are listeners "
                  "of ONE target_server process; every target has its own local SSM node (one shell + "
                  "python installer per install, fetching with its standard-library client).", ""]
    lines += [
        "| targets | status | verified | wall rollout s (setup s) | transitions (outside + inside Map) | "
        "transitions / target | Lambda invocations (/target) | Lambda-s (GB-s) | "
        "largest state input / output | "
        "execution input / output | peak RSS tree (procs) | ru_maxrss self | est. AWS price |",
        "|---:|---|---:|---:|---|---:|---:|---:|---|---|---:|---:|---:|",
    ]
    for r in runs:
        n = r["size"]
        lam = r["lambda"]
        lines.append(
            f"| {n:,} | {r['status']} | {r['targets_verified']:,}/{n:,} | "
            f"{r['wall_seconds']['rollout']:,.1f} "
            f"({r['wall_seconds']['setup']:,.1f}) | {r['transitions']:,} ({r['transitions_outside_map']} + "
            f"{r['transitions_inside_map']:,}) | {r['transitions_inside_map'] / n:.2f} | "
            f"{lam['invocations']:,} ({(lam['invocations'] - _outside_invocations(r)) / n:.2f}) | "
            f"{lam['seconds']:,.1f} ({lam['gb_seconds']:,.1f}) | "
            f"{_fmt_bytes(r['largest_state_input']['bytes'])} ({r['largest_state_input']['state']}) / "
            f"{_fmt_bytes(r['largest_state_output']['bytes'])} ({r['largest_state_output']['state']}) | "
            f"{_fmt_bytes(r['execution_input_bytes'])} / {_fmt_bytes(r['execution_output_bytes'])} | "
            f"{r['memory']['peak_tree_rss_mib']:,.0f} MiB ({r['memory']['peak_tree_processes']}) | "
            f"{r['memory']['self_ru_maxrss_mib']:,.0f} MiB | ${r['price_usd']['total']:.4f} |")
    for r in failed:
        lines.append(f"| {r['size']:,} | {r['error']} | | | | | | | | | | | |")
    lines += ["", "Transitions = history events of type `*StateEntered` (what Step Functions Standard "
              "bills); transitions / target = transitions inside the Map / N; Lambda invocations / target "
              "excludes the per-rollout functions (ValidateEvent, ExportCertificate, Notify). Lambda-s = "
              "handler wall time on "
              "this 2-CPU machine under load (an upper bound of AWS billed duration).", ""]
    if runs:
        lines += ["## Design goals", "", "| goal | result |", "|---|---|"]
        big = max(runs, key=lambda r: r["size"])
        lines.append(f"| largest state payload < 64 KiB at the largest size ({big['size']:,} targets) | "
                     f"{'PASS' if big['largest_payload_bytes'] < 65536 else 'FAIL'}: "
                     f"{_fmt_bytes(big['largest_payload_bytes'])} |")
        all_ok = all(r["all_verified"] for r in runs)
        lines.append(f"| every target VERIFIED at every size | {'PASS' if all_ok else 'FAIL'}: " + ", ".join(
            f"{r['targets_verified']:,}/{r['size']:,}" for r in runs) + " |")
        multi = [r for r in runs if r["size"] >= 10]
        per = [r["transitions_inside_map"] / r["size"] for r in multi]
        outside = sorted({r["transitions_outside_map"] for r in runs})
        constant = bool(per) and max(per) - min(per) < 0.05 * max(per)
        lines.append(f"| transitions per target constant from 10 up | {'PASS' if constant else 'FAIL'}: "
                     + ", ".join(f"N={r['size']:,}: {r['transitions_inside_map'] / r['size']:.2f}"
                                 for r in multi)
                     + f"; fixed overhead outside the Map: {', '.join(map(str, outside))} |")
        base = next((r for r in runs if r["size"] == 1), None)
        if base:
            lines.append("| marginal transitions per target, (T(N) - T(1)) / (N - 1) | " + ", ".join(
                f"N={r['size']:,}: {(r['transitions'] - base['transitions']) / (r['size'] - 1):.2f}"
                for r in runs if r["size"] > 1) + " |")
            if big["size"] > 1:
                per_event = (big["history_events"] - base["history_events"]) / (big["size"] - 1)
                fixed = base["history_events"] - per_event
                ceiling = int((HISTORY_LIMIT - fixed) // per_event) if per_event > 0 else 0
                lines.append(
                    f"| history events under the {HISTORY_LIMIT:,}-event quota of a Standard execution | "
                    f"{'PASS' if big['history_events'] < HISTORY_LIMIT else 'FAIL'} "
                    f"({big['history_events'] / HISTORY_LIMIT:.0%} of the quota at {big['size']:,}): "
                    + ", ".join(f"N={r['size']:,}: {r['history_events']:,}" for r in runs)
                    + f"; {per_event:.1f} events per target + {fixed:.0f} fixed: the happy path reaches "
                    f"the quota at about {ceiling:,} targets (fewer with retries, reload waits or rollbacks) |")
        lines += ["", "## Estimated AWS price of one rollout (USD, list prices, us-east-1)", "",
                  "| targets | Step Functions | Lambda requests | Lambda compute | DynamoDB | "
                  "Secrets Manager | KMS | "
                  "SNS | SSM Run Command | total | per target |",
                  "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for r in runs:
            c = r["price_usd"]
            lines.append(f"| {r['size']:,} | {c['step_functions']:.5f} | {c['lambda_requests']:.6f} | "
                         f"{c['lambda_compute']:.5f} | {c['dynamodb']:.6f} | {c['secrets_manager']:.6f} | "
                         f"{c['kms']:.6f} | {c['sns']:.7f} | 0 | **{c['total']:.5f}** | "
                         f"{c['total'] / r['size']:.6f} |")
        lines += ["", "Prices used: Step Functions Standard $0.025 per 1,000 state transitions; Lambda "
                  "(x86) $0.0000166667 per GB-second + $0.20 per 1M requests, each function at its template "
                  "MemorySize (256 MB); DynamoDB on-demand $1.25 per million write request units and $0.25 "
                  "per million read request units (one unit per counted call: items are < 1 KB, reads "
                  "< 4 KB); Secrets Manager $0.05 per 10,000 API calls (plus $0.40 per secret-month, "
                  "prorated, not included); KMS $0.03 per 10,000 requests (one per Secrets Manager "
                  "read/write through the customer-managed key, plus direct KMS calls); SNS $0.50 per 1M "
                  "publishes (the first 1M a month are free; email delivery $2.00 per 100,000 not included); "
                  "SSM Run Command: no charge on managed instances. API calls are those the functions and "
                  "the nodes made, counted at the local endpoint (bench/results.json "
                  "`api_calls`). Free tiers are ignored.", ""]
    lines += ["## Reading", "", READING_START, (reading or DEFAULT_READING).strip("\n"), READING_END, ""]
    return "\n".join(lines)


def _outside_invocations(r: dict[str, Any]) -> int:
    per_rollout = ("ValidateEventFunction", "ExportCertificateFunction", "NotifyFunction")
    return sum(f["invocations"] for lid, f in r["lambda"]["functions"].items() if lid in per_rollout)


DEFAULT_READING = "(Write the reading here: per-target cost, what limits the size, what it costs.)"


def existing_reading(doc: Path) -> str | None:
    try:
        text = doc.read_text()
    except OSError:
        return None
    if READING_START in text and READING_END in text:
        return text.split(READING_START, 1)[1].split(READING_END, 1)[0]
    return None


def write_outputs(results: dict[str, Any], results_path: Path, doc_path: Path) -> None:
    results_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = results_path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(results, indent=2, default=str) + "\n")
    tmp.replace(results_path)
    doc_path.write_text(render_markdown(results, existing_reading(doc_path)))


def bench(sizes: list[int], *, results_path: Path = RESULTS, doc_path: Path = DOC,
          parameters: dict[str, str] | None = None, lambda_workers: int = 8, timeout: float = 3600,
          fresh: bool = False, in_process: bool = False, on_result: Any = None) -> dict[str, Any]:
    """Run every size, merge into results_path, regenerate doc_path. Returns the results."""
    params = {**DEFAULT_PARAMETERS, **(parameters or {})}
    results = {"runs": []} if fresh else load_results(results_path)
    info = machine()
    for size in sizes:
        if in_process:
            run = run_size(size, parameters=params, lambda_workers=lambda_workers, timeout=timeout)
        else:
            run = run_in_child(size, params, lambda_workers, timeout)
        run["command"] = " ".join(["cert-rollout", *sys.argv[1:]]) if sys.argv[1:] else "cert-rollout bench"
        results = merge(results, [run], info)
        write_outputs(results, results_path, doc_path)  # after every size: a long run keeps what it measured
        if on_result:
            on_result(run)
    return results


def _child_main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cert_rollout.localcloud.bench")
    parser.add_argument("--size", type=int, required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--lambda-workers", type=int, default=8)
    parser.add_argument("--timeout", type=float, default=3600)
    parser.add_argument("--parameters", default="{}")
    args = parser.parse_args(argv)
    result = run_size(args.size, parameters=json.loads(args.parameters), lambda_workers=args.lambda_workers,
                      timeout=args.timeout)
    Path(args.out).write_text(json.dumps(result, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(_child_main())
