"""Lambda invocation for the local cloud (stands in for the Lambda service's invoke path).

moto's Lambda without Docker echoes the input instead of running code. Here every function
deployed from template.yaml runs its real handler in worker processes that carry that
function's own environment (the template's variables, its handler, code and layer paths),
its timeout and a pool of warm execution environments. Errors come back as Lambda returns
them: the error payload {errorType, errorMessage, stackTrace} with the function-error flag,
so Step Functions' Retry and Catch match on the exception's class name as in AWS.
A timeout kills the environment and answers errorType "Sandbox.Timedout".
Each invocation's output lands in CloudWatch Logs (/aws/lambda/<name>) with Lambda's
START/END/REPORT lines.
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass
class FunctionSpec:
    """One function as deployed: what the template says about it."""

    name: str
    logical_id: str
    arn: str
    handler: str
    code_dir: str
    layer_dirs: list[str]
    environment: dict[str, str]
    timeout: int
    memory_mb: int
    role_arn: str = ""
    # The execution role's session credentials (AWS_ACCESS_KEY_ID, ...), set by the local cloud.
    credentials: dict[str, str] = field(default_factory=dict)


@dataclass
class InvocationStats:
    count: int = 0
    errors: int = 0
    cold_starts: int = 0
    billed_seconds: float = 0.0
    durations: list[float] = field(default_factory=list)


class _Worker:
    def __init__(self, spec: FunctionSpec, base_env: dict[str, str]) -> None:
        self.stream = f"{time.strftime('%Y/%m/%d')}/[$LATEST]{uuid.uuid4().hex}"
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "LANG": "C.UTF-8",
            "PYTHONPATH": os.pathsep.join([spec.code_dir, *spec.layer_dirs]),
            "PYTHONDONTWRITEBYTECODE": "1",
            "_HANDLER": spec.handler,
            "LAMBDA_TASK_ROOT": spec.code_dir,
            "AWS_LAMBDA_FUNCTION_NAME": spec.name,
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(spec.memory_mb),
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{spec.name}",
            "AWS_LAMBDA_LOG_STREAM_NAME": self.stream,
            "AWS_EXECUTION_ENV": "AWS_Lambda_python3.12",
            **base_env,
            **spec.credentials,
            **spec.environment,
        }
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "cert_rollout.localcloud.lambda_worker"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
            cwd=spec.code_dir, bufsize=1,
        )
        self.fresh = True
        self.stderr_lines: list[str] = []
        self._answers: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read_stdout, daemon=True).start()
        threading.Thread(target=self._read_stderr, daemon=True).start()

    def _read_stdout(self) -> None:
        assert self.proc.stdout
        for line in self.proc.stdout:
            self._answers.put(line)
        self._answers.put(None)

    def _read_stderr(self) -> None:
        assert self.proc.stderr
        for line in self.proc.stderr:
            if line.strip():
                self.stderr_lines.append(line.rstrip("\n"))

    def call(self, request: dict[str, Any], timeout: float) -> dict[str, Any] | None:
        """Send one request; the answer, or None on timeout or a dead process."""
        assert self.proc.stdin
        try:
            self.proc.stdin.write(json.dumps(request) + "\n")
            self.proc.stdin.flush()
            line = self._answers.get(timeout=timeout)
        except (BrokenPipeError, queue.Empty, OSError):
            return None
        return json.loads(line) if line else None

    def take_stderr(self) -> list[str]:
        lines, self.stderr_lines = self.stderr_lines, []
        return lines

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass


class LambdaRuntime:
    """Runs the deployed functions' real handlers; one pool of warm workers per function."""

    def __init__(self, base_env: dict[str, str], log_sink: Callable[[str, str, list[str]], None],
                 max_workers_per_function: int = 4) -> None:
        self.base_env = base_env
        self.log_sink = log_sink
        self.max_workers = max_workers_per_function
        self.specs: dict[str, FunctionSpec] = {}
        self.stats: dict[str, InvocationStats] = {}
        self._idle: dict[str, list[_Worker]] = {}
        self._slots: dict[str, threading.BoundedSemaphore] = {}
        self._lock = threading.Lock()
        self._all: list[_Worker] = []

    def register(self, spec: FunctionSpec) -> None:
        self.specs[spec.name] = spec
        self.stats[spec.name] = InvocationStats()
        self._idle[spec.name] = []
        self._slots[spec.name] = threading.BoundedSemaphore(self.max_workers)

    def knows(self, name: str) -> bool:
        return name in self.specs

    def _acquire(self, name: str) -> _Worker:
        with self._lock:
            while self._idle[name]:
                worker = self._idle[name].pop()
                if worker.proc.poll() is None:
                    return worker
        worker = _Worker(self.specs[name], self.base_env)
        with self._lock:
            self._all.append(worker)
        return worker

    def invoke(self, name: str, payload: bytes | str | None) -> tuple[bytes, str | None]:
        """Invoke function ``name`` with a raw JSON payload.

        Returns (response payload bytes, function error or None); the function error is
        "Unhandled" as Lambda sets X-Amz-Function-Error for an exception or a timeout.
        """
        spec = self.specs[name]
        text = payload.decode() if isinstance(payload, bytes) else (payload or "{}")
        request_id = str(uuid.uuid4())
        with self._slots[name]:
            worker = self._acquire(name)
            cold = worker.fresh
            worker.fresh = False
            started = time.time()
            answer = worker.call({"requestId": request_id, "payload": text, "functionArn": spec.arn,
                                  "deadline": started + spec.timeout}, timeout=spec.timeout)
            duration = time.time() - started
            logs = [f"START RequestId: {request_id} Version: $LATEST"]
            error: str | None
            if answer is None:
                worker.kill()
                logs += worker.take_stderr()
                message = f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())} {request_id} Task timed out after {spec.timeout:.2f} seconds"
                logs.append(message)
                body, error = json.dumps({"errorType": "Sandbox.Timedout",
                                          "errorMessage": f"Task timed out after {spec.timeout:.2f} seconds"}), "Unhandled"
            else:
                logs += answer.get("logs", []) + worker.take_stderr()
                body, error = answer["payload"], (None if answer["ok"] else "Unhandled")
                if answer.get("initError"):
                    worker.kill()
                else:
                    with self._lock:
                        self._idle[name].append(worker)
            logs.append(f"END RequestId: {request_id}")
            logs.append(f"REPORT RequestId: {request_id}\tDuration: {duration * 1000:.2f} ms\t"
                        f"Memory Size: {spec.memory_mb} MB" + ("\tInit Duration: (cold start)" if cold else ""))
        stats = self.stats[name]
        with self._lock:
            stats.count += 1
            stats.errors += error is not None
            stats.cold_starts += cold
            stats.billed_seconds += duration
            stats.durations.append(duration)
        self.log_sink(name, worker.stream, logs)
        return body.encode(), error

    def shutdown(self) -> None:
        with self._lock:
            workers, self._all = self._all, []
            for name in self._idle:
                self._idle[name] = []
        for worker in workers:
            try:
                if worker.proc.stdin:
                    worker.proc.stdin.close()
            except OSError:
                pass
            worker.kill()
