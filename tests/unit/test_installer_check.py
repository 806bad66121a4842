"""The installer's read-only preflight, ROLLOUT_ACTION=check (installer/install_bundle.py, section
"check"; `cert-rollout nodes check` sends it): every prerequisite reported by name, exit 0 only
when all pass, and no file under the test's directory created, changed or removed, whichever
prerequisite is missing. The bundle fetch runs the standard-library client against a loopback
Secrets Manager (tests/unit/test_installer_fetch.py FakeSecretsManager)."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.unit.test_installer import FAIL_CMD, Node, files_for, node, py  # noqa: F401 - node: the fixture
from tests.unit.test_installer_fetch import KEY_ID, SECRET_KEY, FakeSecretsManager

PROBE_ARN = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:cert-rollout/staged/preflight/0123456789abcdef"
NOT_FOUND = (400, {"__type": "ResourceNotFoundException", "message": "Secrets Manager can't find the specified secret."})
DENIED = (400, {"__type": "AccessDeniedException", "message": "not authorized to perform secretsmanager:GetSecretValue"})
OK_CMD = "import sys; sys.exit(0)"


def tree(root: Path) -> dict[str, tuple[Any, ...]]:
    """Every path under ``root``: (kind, mode, size, sha256, mtime_ns) - a change of any shows.
    The node policy file is left out: Node.run writes it afresh for every command."""
    out: dict[str, tuple[Any, ...]] = {}
    for path in sorted(root.rglob("*")):
        if path.name == "node-policy.json":
            continue
        st = path.lstat()
        digest = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None
        out[str(path.relative_to(root))] = (path.is_dir(), st.st_mode, st.st_size, digest, st.st_mtime_ns)
    return out


@pytest.fixture
def sm() -> Iterator[FakeSecretsManager]:
    fake = FakeSecretsManager()
    fake.answers = [NOT_FOUND]
    yield fake
    fake.httpd.shutdown()


def check(node: Node, target: dict[str, Any], sm: FakeSecretsManager, **env: str) -> tuple[int, dict[str, Any]]:
    """Run the check with the node's environment credentials against ``sm``; the tree under the
    node's directory must be the same after as before."""
    (node.ssl / "fullchain.pem").write_text("old chain\n")
    (node.ssl / "privkey.pem").write_text("old key\n")
    (node.ssl / "privkey.pem").chmod(0o600)
    before = tree(node.tmp)
    extra = {"CERT_ROLLOUT_FETCH": "stdlib", "AWS_ACCESS_KEY_ID": KEY_ID, "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
             "AWS_ENDPOINT_URL_SECRETS_MANAGER": sm.url, "AWS_EC2_METADATA_DISABLED": "true",
             "ROLLOUT_SECRET_ARN": PROBE_ARN, "ROLLOUT_COMMAND_TIMEOUT": "10", **env}
    code, result = node.run("check", target, extra_env=extra)
    assert tree(node.tmp) == before, "the check changed something under the node's directory"
    assert not node.state.exists(), "the check created the state directory"
    assert result["action"] == "check" and result["stage"] == "check"
    return code, result


def by_name(result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["check"]: c for c in result["checks"]}


def test_healthy_node_passes_every_check_and_proves_the_fetch(node: Node, sm: FakeSecretsManager) -> None:
    target = node.target(files_for(node), test=py(OK_CMD), reload=py(OK_CMD))
    code, result = check(node, target, sm)
    assert (code, result["status"]) == (0, "ok"), result
    checks = by_name(result)
    assert list(checks) == ["python", "node-policy", "files-writable", "state-dir", "openssl", "test-command",
                            "reload-command", "bundle-fetch"]
    assert all(c["ok"] for c in checks.values()), checks
    assert result["python"] == ".".join(map(str, sys.version_info[:3]))
    assert "ResourceNotFoundException" in checks["bundle-fetch"]["detail"]
    assert "not checked: a rollout's own secret policy" in checks["bundle-fetch"]["detail"]
    [request] = sm.requests
    assert request["valid"] and request["body"] == {"SecretId": PROBE_ARN}  # no version id, the probe name


@pytest.mark.parametrize("case", ["no-credentials", "access-denied", "endpoint-unreachable"])
def test_bundle_fetch_problems_are_named(node: Node, sm: FakeSecretsManager, case: str) -> None:
    target = node.target(files_for(node), test=py(OK_CMD))
    env: dict[str, str] = {}
    if case == "no-credentials":
        env = {"AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": ""}
    elif case == "access-denied":
        sm.answers = [DENIED]
    else:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        env = {"AWS_ENDPOINT_URL_SECRETS_MANAGER": f"http://127.0.0.1:{port}"}
    code, result = check(node, target, sm, **env)
    reason = {"no-credentials": "bundle-credentials-missing", "access-denied": "bundle-access-denied",
              "endpoint-unreachable": "bundle-endpoint-unreachable"}[case]
    assert (code, result["status"], result["reason"]) == (13, "failed", reason), result
    failed = [c["check"] for c in result["checks"] if not c["ok"]]
    assert failed == ["bundle-fetch"]
    assert result["error"] == f"check failed: bundle-fetch: {reason}"


def test_missing_reload_command_is_named(node: Node, sm: FakeSecretsManager) -> None:
    target = node.target(files_for(node), test=py(OK_CMD), reload=["no-such-reload-program", "graceful"])
    code, result = check(node, target, sm)
    checks = by_name(result)
    assert (code, result["reason"]) == (22, "command-missing"), result
    assert not checks["reload-command"]["ok"] and "'no-such-reload-program'" in checks["reload-command"]["detail"]
    assert checks["bundle-fetch"]["ok"] and checks["test-command"]["ok"]  # the others still ran


def test_missing_test_command_is_not_run_and_named(node: Node, sm: FakeSecretsManager) -> None:
    target = node.target(files_for(node), test=["/nonexistent-dir/nginx", "-t"])
    code, result = check(node, target, sm)
    assert (code, by_name(result)["test-command"]["reason"]) == (22, "command-missing"), result


def test_failing_test_command_is_named_with_its_output(node: Node, sm: FakeSecretsManager) -> None:
    target = node.target(files_for(node), test=py(FAIL_CMD.format(msg="emerg: bad ssl_certificate", code=1)))
    code, result = check(node, target, sm)
    test = by_name(result)["test-command"]
    assert (code, test["reason"]) == (10, "test-failed"), result
    assert "bad ssl_certificate" in test["detail"]


def test_openssl_missing_for_a_keystore_is_named(node: Node, sm: FakeSecretsManager) -> None:
    files = [{"path": str(node.ssl / "fullchain.pem"), "content": "fullchain"},
             {"path": str(node.ssl / "web.p12"), "content": "pkcs12", "passwordFile": str(node.ssl / "web.p12.pass")}]
    target = node.target(files)
    code, result = check(node, target, sm, PATH=str(node.bin))  # no openssl (nor anything else) on PATH
    assert (code, result["reason"]) == (22, "openssl-missing"), result
    assert by_name(result)["openssl"]["ok"] is False


def test_node_policy_denial_is_named_and_the_test_command_not_run(node: Node, sm: FakeSecretsManager,
                                                                   tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    target = node.target(files_for(node), test=py(f"open({str(marker)!r}, 'w')"))
    (tmp_path / "elsewhere").mkdir()
    policy = tmp_path / "narrow-policy.json"
    policy.write_text(json.dumps({"writeDirectories": [str(tmp_path / "elsewhere")], "commands": []}))
    code, result = check(node, target, sm, CERT_ROLLOUT_NODE_POLICY=str(policy))
    checks = by_name(result)
    assert (code, result["reason"]) == (19, "node-policy-denied"), result
    assert checks["test-command"]["ok"] is False and "not run" in checks["test-command"]["detail"]
    assert not marker.exists()


def test_missing_directory_is_named(node: Node, sm: FakeSecretsManager) -> None:
    files = [{"path": str(node.tmp / "not-there" / "fullchain.pem"), "content": "fullchain"}]
    code, result = check(node, node.target(files), sm)
    assert (code, result["reason"]) == (12, "files-not-writable"), result
    assert "does not exist" in by_name(result)["files-writable"]["detail"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes any directory")
def test_unwritable_directory_is_named(node: Node, sm: FakeSecretsManager) -> None:
    node.ssl.chmod(0o555)
    try:
        code, result = check(node, node.target(files_for(node)), sm)
    finally:
        node.ssl.chmod(0o755)
    assert (code, result["reason"]) == (12, "files-not-writable"), result


def test_unsafe_state_dir_is_named(node: Node, sm: FakeSecretsManager) -> None:
    node.state.mkdir(mode=0o777)
    node.state.chmod(0o777)
    try:
        code, result = node.run("check", node.target(files_for(node)), extra_env={
            "CERT_ROLLOUT_FETCH": "stdlib", "AWS_ACCESS_KEY_ID": KEY_ID, "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
            "AWS_ENDPOINT_URL_SECRETS_MANAGER": sm.url, "ROLLOUT_SECRET_ARN": PROBE_ARN})
    finally:
        node.state.chmod(0o700)
    assert (code, result["reason"]) == (18, "state-dir-unsafe"), result
    assert list(node.state.iterdir()) == []  # no per-target directory, no lock


def test_node_without_targets_checks_python_policy_state_and_fetch(node: Node, sm: FakeSecretsManager) -> None:
    code, result = check(node, {"files": []}, sm)
    assert code == 0, result
    assert [c["check"] for c in result["checks"]] == ["python", "node-policy", "state-dir", "bundle-fetch"]
