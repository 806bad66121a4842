"""Local managed nodes (stands in for SSM Agent on the target hosts).

moto's SSM marks every command Success at once without running anything. Here a node
registered with the local cloud really runs the document's aws:runShellScript steps on this
machine, with SSM's parameter substitution ({{Name}}) and validation (allowedValues,
allowedPattern), the step's timeoutSeconds, status transitions Pending -> InProgress ->
Success / Failed / TimedOut, and stdout/stderr captured (SSM keeps 24,000 / 8,000 chars).
The node's own identity (the environment it runs with) is what reads Secrets Manager.
A node marked offline never picks a command up (Pending until cancelled); an instance id
that is not a managed node is refused by SendCommand with InvalidInstanceId. A node with
``lose_status_events`` > 0 has that many of its final status-change events dropped on the way
to EventBridge (the fault ``status-event-lost``: AWS delivers these events best effort); the
invocation itself still ends normally and GetCommandInvocation reports it.
Each node has its owner's node policy (installer/install_bundle.py, README "The node policy"):
a file in its own work directory, named by CERT_ROLLOUT_NODE_POLICY in its environment, that
allows nothing until the local cloud allows the temporary directory of the node's target and
exactly that target's test and reload commands (LocalNode.allow, called when the target is set up).
A node with ``fault_once`` (scenario fault crash-mid-swap) passes it to the installer of its
next install command only (CERT_ROLLOUT_FAULT, honoured by the installer's test hook); every
later command on that node runs normally.
"""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

LOG = logging.getLogger(__name__)
STDOUT_LIMIT = 24000
STDERR_LIMIT = 8000


class InvalidParameters(Exception):
    """A parameter value breaks the document's allowedValues / allowedPattern."""


@dataclass
class LocalNode:
    instance_id: str
    env: dict[str, str]
    online: bool = True
    lose_status_events: int = 0  # final status events still to drop (fault status-event-lost)
    workdir: str = field(default_factory=lambda: tempfile.mkdtemp(prefix="node-"))
    commands_run: int = 0
    fault_once: str | None = None  # e.g. "crash-after-rename-1": the next install is killed there
    faults_used: list[str] = field(default_factory=list)

    @property
    def policy_path(self) -> Path:
        """The node owner's policy file (the node's CERT_ROLLOUT_NODE_POLICY)."""
        return Path(self.workdir) / "node-policy.json"

    def allow(self, directories: list[str], commands: list[list[str]]) -> None:
        """Add ``directories`` (files may be written below them) and ``commands`` (exact argv
        lists that may run as test or reload) to the node's policy file, written 0644 by this
        user (the installer refuses a policy file others can write)."""
        policy = self.policy()
        policy["writeDirectories"] += [d for d in directories if d not in policy["writeDirectories"]]
        policy["commands"] += [c for c in commands if c not in policy["commands"]]
        tmp = self.policy_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(policy, indent=2) + "\n")
        tmp.chmod(0o644)
        os.replace(tmp, self.policy_path)

    def policy(self) -> dict[str, Any]:
        """The node policy now in force on this node (an empty one before anything is allowed)."""
        if self.policy_path.exists():
            return dict(json.loads(self.policy_path.read_text()))
        return {"writeDirectories": [], "commands": []}

    def command_env(self, action: str | None) -> dict[str, str]:
        """The environment of one command: the node's own, plus a pending fault for an install."""
        if self.fault_once and action == "install":
            fault, self.fault_once = self.fault_once, None
            self.faults_used.append(fault)
            return {**self.env, "CERT_ROLLOUT_FAULT": fault}
        return dict(self.env)


class NodeFleet:
    """The managed nodes of the local cloud, and the commands they run."""

    def __init__(self) -> None:
        # emit(command_id, instance_id, document_name, status): SSM's status-change event to
        # EventBridge ("EC2 Command Invocation Status-change Notification").
        self.emit: Any = None
        self.nodes: dict[str, LocalNode] = {}
        self._lock = threading.Lock()
        self._cancelled: set[tuple[str, str]] = set()
        self._procs: dict[tuple[str, str], subprocess.Popen[str]] = {}

    def register(self, node: LocalNode) -> None:
        self.nodes[node.instance_id] = node

    @staticmethod
    def validate_parameters(document: dict[str, Any], parameters: dict[str, list[str]]) -> dict[str, str]:
        """SSM's check of SendCommand parameters against the document; returns name -> value."""
        declared = document.get("parameters", {})
        values: dict[str, str] = {}
        for name, spec in declared.items():
            given = parameters.get(name)
            if given is None:
                if "default" not in spec:
                    raise InvalidParameters(f"missing required parameter {name}")
                value = str(spec["default"])
            else:
                value = given[0] if isinstance(given, list) else str(given)
            if "allowedValues" in spec and value not in spec["allowedValues"]:
                raise InvalidParameters(f"parameter {name} must be one of {spec['allowedValues']}")
            if "allowedPattern" in spec and not re.fullmatch(spec["allowedPattern"], value):
                raise InvalidParameters(f"parameter {name} does not match {spec['allowedPattern']}")
            values[name] = value
        extra = set(parameters) - set(declared)
        if extra:
            raise InvalidParameters(f"unknown parameters {sorted(extra)}")
        return values

    def _status(self, command_id: str, instance_id: str, invocation: dict[str, Any], status: str) -> None:
        node = self.nodes.get(instance_id)
        if node is not None and node.lose_status_events > 0 and status not in ("Pending", "InProgress", "Delayed"):
            with self._lock:
                node.lose_status_events -= 1
            LOG.warning("status event %s of command %s on %s dropped (fault: status-event-lost)",
                        status, command_id, instance_id)
            return
        if self.emit is not None:
            self.emit(command_id, instance_id, invocation.get("DocumentName", ""), status)

    def start(self, command_id: str, instance_id: str, document: dict[str, Any], values: dict[str, str],
              invocation: dict[str, Any], delivery_timeout: float = 3600) -> None:
        """Begin running ``document`` for one invocation (``invocation`` is moto's dict, updated in place).

        A node that is offline never picks the command up: after ``delivery_timeout`` seconds
        (SendCommand's TimeoutSeconds) SSM gives up with TimedOut / DeliveryTimedOut."""
        node = self.nodes[instance_id]
        with self._lock:
            invocation.update(Status="Pending", StatusDetails="Pending", ResponseCode=-1,
                              StandardOutputContent="", StandardErrorContent="",
                              ExecutionStartDateTime="", ExecutionEndDateTime="", ExecutionElapsedTime="")
        self._status(command_id, instance_id, invocation, "Pending")
        if not node.online:
            timer = threading.Timer(delivery_timeout, self._delivery_timed_out, args=(command_id, instance_id, invocation))
            timer.daemon = True
            timer.start()
            return
        threading.Thread(target=self._run, args=(command_id, node, document, values, invocation), daemon=True).start()

    def _delivery_timed_out(self, command_id: str, instance_id: str, invocation: dict[str, Any]) -> None:
        with self._lock:
            if invocation.get("Status") != "Pending":
                return
            invocation.update(Status="TimedOut", StatusDetails="DeliveryTimedOut")
        self._status(command_id, instance_id, invocation, "TimedOut")

    def cancel(self, command_id: str, instance_id: str, invocation: dict[str, Any]) -> None:
        with self._lock:
            self._cancelled.add((command_id, instance_id))
            cancelled = invocation.get("Status") in ("Pending", "InProgress", "Delayed")
            if cancelled:
                invocation.update(Status="Cancelled", StatusDetails="Cancelled")
            proc = self._procs.get((command_id, instance_id))
        if proc and proc.poll() is None:
            proc.kill()
        if cancelled:
            self._status(command_id, instance_id, invocation, "Cancelled")

    def stop(self) -> None:
        """Kill every command still running on a node (the local cloud is stopping)."""
        with self._lock:
            procs = list(self._procs.values())
        for proc in procs:
            if proc.poll() is None:
                proc.kill()

    def _run(self, command_id: str, node: LocalNode, document: dict[str, Any], values: dict[str, str],
             invocation: dict[str, Any]) -> None:
        key = (command_id, node.instance_id)
        started = time.time()
        with self._lock:
            if key in self._cancelled:
                return
            invocation.update(Status="InProgress", StatusDetails="InProgress",
                              ExecutionStartDateTime=datetime.now(UTC).isoformat())
        self._status(command_id, node.instance_id, invocation, "InProgress")
        node.commands_run += 1
        env = node.command_env(values.get("Action"))
        out, err, code, status = "", "", 0, "Success"
        for step in document.get("mainSteps", []):
            if step.get("action") != "aws:runShellScript":
                err += f"unsupported action {step.get('action')} in the local node\n"
                code, status = 1, "Failed"
                break
            inputs = step.get("inputs", {})
            lines = inputs.get("runCommand", [])
            script = "\n".join(_substitute(line, values) for line in lines) + "\n"
            timeout = int(_substitute(str(inputs.get("timeoutSeconds", 3600)), values))
            with tempfile.NamedTemporaryFile("w", suffix=".sh", dir=node.workdir, delete=False) as f:
                f.write(script)
                path = f.name
            proc = subprocess.Popen(["/bin/sh", path], cwd=node.workdir, env=env, text=True,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            with self._lock:
                self._procs[key] = proc
            try:
                step_out, step_err = proc.communicate(timeout=timeout)
                code = proc.returncode
            except subprocess.TimeoutExpired:
                proc.kill()
                step_out, step_err = proc.communicate()
                code, status = 124, "TimedOut"
            finally:
                os.unlink(path)
            out += step_out
            err += step_err
            if status == "TimedOut":
                break
            if code != 0:
                status = "Failed"
                break
        with self._lock:
            self._procs.pop(key, None)
            if key in self._cancelled:
                return
            invocation.update(
                Status=status, StatusDetails={"TimedOut": "ExecutionTimedOut"}.get(status, status),
                ResponseCode=code if status != "TimedOut" else -1,
                StandardOutputContent=out[:STDOUT_LIMIT], StandardErrorContent=err[:STDERR_LIMIT],
                ExecutionEndDateTime=datetime.now(UTC).isoformat(),
                ExecutionElapsedTime=f"PT{time.time() - started:.3f}S",
            )
        self._status(command_id, node.instance_id, invocation, status)


def _substitute(line: str, values: dict[str, str]) -> str:
    return re.sub(r"\{\{\s*([A-Za-z0-9_.-]+)\s*\}\}", lambda m: values.get(m.group(1), m.group(0)), line)


def document_content(raw: str) -> dict[str, Any]:
    return json.loads(raw)
