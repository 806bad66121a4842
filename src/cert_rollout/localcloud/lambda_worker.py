"""One Lambda execution environment of the local cloud: a process with the function's own
environment variables that imports the handler once (cold start) and then serves invocations
(warm starts), as the Lambda Python runtime does.

Protocol (parent <-> worker): one JSON line per request on stdin
  {"requestId", "payload" (raw JSON text), "functionArn", "deadline" (epoch seconds)}
and one JSON line per answer on the original stdout
  {"ok": bool, "payload": raw JSON text, "logs": [str], "initError": bool}
Everything the handler prints (Powertools logs, EMF metrics) is captured as log lines.
An exception becomes Lambda's error payload {"errorType": class name, "errorMessage", "stackTrace"}.
"""

from __future__ import annotations

import importlib
import io
import json
import os
import sys
import threading
import time
import traceback
from typing import Any


class _Capture(io.TextIOBase):
    """sys.stdout replacement: collects what the function writes, per invocation."""

    def __init__(self) -> None:
        self._buf: list[str] = []
        self._lock = threading.Lock()

    def write(self, s: str) -> int:
        with self._lock:
            self._buf.append(s)
        return len(s)

    def flush(self) -> None:
        pass

    def take(self) -> list[str]:
        with self._lock:
            text, self._buf = "".join(self._buf), []
        return [line for line in text.splitlines() if line.strip()]


class _Context:
    """The LambdaContext fields handlers and Powertools read."""

    def __init__(self, request_id: str, function_arn: str, deadline: float) -> None:
        self.aws_request_id = request_id
        self.invoked_function_arn = function_arn
        self.function_name = os.environ.get("AWS_LAMBDA_FUNCTION_NAME", "")
        self.function_version = os.environ.get("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        self.memory_limit_in_mb = int(os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128"))
        self.log_group_name = os.environ.get("AWS_LAMBDA_LOG_GROUP_NAME", "")
        self.log_stream_name = os.environ.get("AWS_LAMBDA_LOG_STREAM_NAME", "")
        self._deadline = deadline
        self.identity = None
        self.client_context = None

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.time()) * 1000))


def _error(e: BaseException) -> str:
    return json.dumps({
        "errorType": type(e).__name__,
        "errorMessage": str(e),
        "stackTrace": traceback.format_tb(e.__traceback__)[-10:],
    })


def main() -> None:
    proto_out = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # anything written to fd 1 below Python goes to stderr, never into the protocol
    capture = _Capture()
    sys.stdout = capture
    module_name, _, function_name = os.environ["_HANDLER"].rpartition(".")
    handler: Any = None
    init_error: str | None = None
    try:
        handler = getattr(importlib.import_module(module_name), function_name)
    except Exception as e:  # an init error is returned on every invocation, as Lambda does
        init_error = _error(e)
    for line in sys.stdin:
        request = json.loads(line)
        answer: dict[str, Any] = {"initError": init_error is not None}
        if init_error is not None:
            answer.update(ok=False, payload=init_error)
        else:
            context = _Context(request["requestId"], request["functionArn"], request["deadline"])
            try:
                event = json.loads(request["payload"]) if request["payload"] else {}
                result = handler(event, context)
                answer.update(ok=True, payload=json.dumps(result))
            except Exception as e:
                traceback.print_exc(file=capture)
                answer.update(ok=False, payload=_error(e))
        answer["logs"] = capture.take()
        proto_out.write(json.dumps(answer) + "\n")


if __name__ == "__main__":
    main()
