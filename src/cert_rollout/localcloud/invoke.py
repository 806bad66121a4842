"""`cert-rollout invoke`: run one function of template.yaml on a sample event, the way
`sam local invoke` does, without Docker.

The function runs its real handler (its own template environment, handler, code and layer)
in a worker process of the embedded local cloud (LocalCloud: moto server in this process,
template.yaml deployed into it). Before the call the local cloud is seeded with what the
event names: every ACM certificate ARN in it becomes a real private certificate under that
ARN (issued by the local private CA), and every targetId / targetIds entry becomes an
embedded TLS target serving that certificate, registered in the inventory. So the samples in
events/ do real work (validate decides, export stages, install sends a command, verify
probes). Resources the event only references (a secret version, an SSM command id) are not
created: a function that needs them answers with its named error, as it would in AWS.
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
        targets = seed(cloud, payload)
        try:
            return _invoke_on(cloud, logical_id, payload)
        finally:
            if targets is not None:
                targets.stop()


def _strings(value: Any, key: str = "") -> list[tuple[str, str]]:
    """Every (key, string) pair in a JSON value, nested ones included."""
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in _strings(v, k)]
    if isinstance(value, list):
        return [p for v in value for p in _strings(v, key)]
    return [(key, value)] if isinstance(value, str) else []


def seed(cloud: Any, payload: bytes) -> Any:
    """Create what the event names (see the module docstring); returns the LocalTargets to stop."""
    import re
    import tempfile
    from pathlib import Path

    from rollout_core.domain.arns import build_arn, partition_for_region

    from cert_rollout.localcloud.targets import LocalTargets

    try:
        event = json.loads(payload or b"{}")
    except json.JSONDecodeError:
        return None  # the handler reports the bad payload itself
    pairs = _strings(event)
    prefix = build_arn(partition_for_region(cloud.region), "acm", cloud.region, cloud.account_id, "certificate/")
    arns = sorted({m for _, v in pairs for m in re.findall(re.escape(prefix) + r"[A-Za-z0-9-]+", v)})
    target_ids = sorted({v for k, v in pairs if k in ("targetId", "targetIds")
                         and re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", v)})
    if not arns:
        return None
    pca = cloud.private_ca()
    targets = LocalTargets(cloud, Path(tempfile.mkdtemp(prefix="cert-rollout-invoke-")))
    for arn in arns:
        issued = pca.request_certificate("web.internal.example", ["api.internal.example"], "EC_prime256v1")
        pca.adopt_arn(issued, arn)
        for target_id in target_ids:
            targets.add_embedded(target_id, arn, "web.internal.example")
    return targets
