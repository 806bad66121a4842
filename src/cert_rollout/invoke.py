"""`cert-rollout invoke`: run one function of template.yaml on a sample event, the way
`sam local invoke` does, without Docker.

The function runs its real handler (its own template environment, handler, code and layer)
in a worker process of the embedded local cloud (LocalCloud: moto server in this process,
template.yaml deployed into it). The function talks to that local cloud, whose resources
are empty unless the event refers to ones created by it: e.g. ValidateEventFunction on
events/validate_event.json answers with a named error (CertificateNotFound). That is the
expected result of a Docker-free smoke run, not a failure of the tool.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass, field
from typing import Any


class InvokeError(Exception):
    """The invocation could not take place (unknown function, bad parameter override)."""


@dataclass
class InvokeResult:
    logical_id: str
    function_name: str
    payload: Any
    raw_payload: str
    function_error: str | None
    logs: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"function": self.logical_id, "functionName": self.function_name, "payload": self.payload,
                "functionError": self.function_error, "logs": self.logs}


def parse_overrides(values: list[str] | None) -> dict[str, str]:
    """`K=V` items; each item may also hold several space-separated pairs as SAM accepts
    (`--parameter-overrides "A=1 B=2"`) or SAM's `ParameterKey=A,ParameterValue=1` form."""
    out: dict[str, str] = {}
    for value in values or []:
        for token in shlex.split(value):
            if token.startswith("ParameterKey="):
                parts = dict(p.split("=", 1) for p in token.split(",") if "=" in p)
                if "ParameterValue" not in parts:
                    raise InvokeError(f"parameter override {token!r}: missing ParameterValue")
                out[parts["ParameterKey"]] = parts["ParameterValue"]
                continue
            key, sep, val = token.partition("=")
            if not sep or not key:
                raise InvokeError(f"parameter override {token!r} is not KEY=VALUE")
            out[key] = val
    return out


def _invoke_on(cloud: Any, logical_id: str, payload: bytes) -> InvokeResult:
    assert cloud.deployment is not None
    known = sorted(spec.logical_id for spec in cloud.deployment.functions.values())
    if logical_id not in known:
        raise InvokeError(f"no function {logical_id!r} in the template; functions: {', '.join(known)}")
    name = cloud.function_name(logical_id)
    group = f"/aws/lambda/{name}"
    before = len(cloud.function_logs().get(group, []))
    body, error = cloud.runtime.invoke(name, payload)
    text = body.decode("utf-8", "replace")
    try:
        parsed: Any = json.loads(text) if text else None
    except json.JSONDecodeError:
        parsed = text
    logs = cloud.function_logs().get(group, [])[before:]
    return InvokeResult(logical_id, name, parsed, text, error, logs)


def invoke_function(logical_id: str, payload: bytes, parameters: dict[str, str] | None = None,
                    region: str | None = None) -> InvokeResult:
    """Start a LocalCloud (unless one already runs in this process and no parameter override
    is asked for: then that one is used), invoke ``logical_id`` with ``payload``."""
    from cert_rollout.localcloud import patches
    from cert_rollout.localcloud.cloud import LocalCloud

    active = patches.ACTIVE.get("cloud")
    if active is not None:
        if parameters:
            raise InvokeError("a local cloud already runs in this process; parameter overrides cannot apply to it")
        return _invoke_on(active, logical_id, payload)
    kwargs: dict[str, Any] = {"parameters": parameters or {}, "lambda_workers": 1}
    if region:
        kwargs["region"] = region
    with LocalCloud(**kwargs) as cloud:
        return _invoke_on(cloud, logical_id, payload)
