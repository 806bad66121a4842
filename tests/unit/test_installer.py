"""installer/install_bundle.py, the script the SSM document runs on the managed node.

The bundle is fetched by a fake `aws` first on PATH (CERT_ROLLOUT_FETCH=aws-cli; prints a secret
JSON from a file); the other fetch paths are tests/unit/test_installer_fetch.py's, the real CLI
path is covered by the end-to-end tests. Everything else is real: files, modes,
commands, and (in the last tests) the embedded TLS server plus the probe.
"""

from __future__ import annotations

import base64
import json
import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import trustme
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from rollout_core.probe import format_serial_hex, probe_served_certificate

from tests.unit.test_target_server import HOST, free_ports, servers, wait_for_serial, write_config

__all__ = ["servers"]

# the node's python3 (>= 3.8); INSTALLER_PYTHON=/path/to/python3.8 runs these tests against an old one
INSTALLER_PYTHON = os.environ.get("INSTALLER_PYTHON") or sys.executable
INSTALLER = Path(__file__).resolve().parents[2] / "installer" / "install_bundle.py"
SERVER_MODULE = "cert_rollout.localcloud.target_server"
SECRET_ARN = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:rollout/web-AbCdEf"
PK = "PRIVATE KEY"
FAIL_CMD = "import sys; sys.stderr.write({msg!r}); sys.exit({code})"

FAKE_AWS = """#!{python}
import json, os, sys
with open(os.environ["FAKE_AWS_ARGS"], "a") as f:
    f.write(json.dumps(sys.argv[1:]) + "\\n")
if os.environ.get("FAKE_AWS_FAIL"):
    sys.stderr.write("An error occurred (AccessDeniedException) when calling the GetSecretValue "
                     "operation: User is not authorized to perform secretsmanager:GetSecretValue\\n")
    sys.exit(254)
sys.stdout.write(open(os.environ["FAKE_SECRET_FILE"]).read() + "\\n")
"""


# --------------------------------------------------------------------------- helpers


class Bundle:
    def __init__(self, leaf: trustme.LeafCert, root: trustme.CA, *, encrypt: bool = False) -> None:
        self.leaf_pem = leaf.cert_chain_pems[0].bytes().decode()
        self.chain_pems = [p.bytes().decode() for p in leaf.cert_chain_pems[1:]]
        self.chain_pems.append(root.cert_pem.bytes().decode())
        key = serialization.load_pem_private_key(leaf.private_key_pem.bytes(), None)
        enc = (serialization.BestAvailableEncryption(b"pass phrase") if encrypt
               else serialization.NoEncryption())
        self.key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                         enc).decode()
        self.serial = x509.load_pem_x509_certificate(self.leaf_pem.encode()).serial_number

    def secret(self) -> dict:
        # as Secrets Manager may hand it back: CRLF, blank line between chain blocks
        return {
            "certificate": self.leaf_pem.replace("\n", "\r\n"),
            "chain": "\n\n".join(self.chain_pems),
            "privateKey": self.key_pem,
            "serial": format_serial_hex(self.serial),
        }


@pytest.fixture(scope="module")
def pki() -> dict:
    root = trustme.CA()
    inter = root.create_child_ca()
    return {
        "old": Bundle(inter.issue_cert("web.internal.example"), root),
        "new": Bundle(inter.issue_cert("web.internal.example"), root),
        "encrypted": Bundle(inter.issue_cert("web.internal.example"), root, encrypt=True),
    }


class Node:
    """A managed node: a fake `aws` on PATH, a certificate directory, the installer."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.bin = tmp / "bin"
        self.bin.mkdir()
        aws = self.bin / "aws"
        aws.write_text(FAKE_AWS.format(python=sys.executable))
        aws.chmod(0o755)
        self.ssl = tmp / "etc-ssl"
        self.ssl.mkdir()
        self.secret_file = tmp / "secret.json"
        self.aws_args = tmp / "aws-args.log"
        self.state = tmp / "state"

    def backup(self, target_id: str = "web-1") -> dict[str, bytes | None]:
        """The one backup generation in the state directory: {path: content, None = absent}."""
        backup = json.loads((self.state / target_id / "backup.json").read_text())
        return {e["path"]: base64.b64decode(e["data"]) if e["data"] is not None else None
                for e in backup["preImage"]}

    def put_secret(self, bundle: Bundle | dict) -> None:
        secret = bundle.secret() if isinstance(bundle, Bundle) else bundle
        self.secret_file.write_text(json.dumps(secret))

    def target(self, files: list[dict], test: list[str] | None = None,
               reload: list[str] | None = None) -> dict:
        return {"targetId": "web-1", "server": "generic", "files": files,
                "testCommand": test, "reloadCommand": reload}

    def allow(self, target: dict) -> Path:
        """This node's policy file (the node owner's): files may be written under the test's tmp
        directory, and exactly the target's own test and reload commands may run."""
        policy = self.tmp / "node-policy.json"
        commands = [c for c in (target.get("testCommand"), target.get("reloadCommand")) if isinstance(c, list) and c]
        policy.write_text(json.dumps({"writeDirectories": [str(self.tmp)], "commands": commands}))
        return policy

    def env(self, action: str, target: dict, *, expected_serial: str = "", extra_env: dict | None = None) -> dict:
        """The installer's environment, as the document exports it (plus the fake aws's)."""
        env = {
            # the node owner's policy (tests/unit/test_node_policy.py tests the policy itself)
            "CERT_ROLLOUT_NODE_POLICY": str(self.allow(target)),
            "PATH": f"{self.bin}{os.pathsep}{os.environ.get('PATH', '')}",
            "HOME": str(self.tmp),
            # the fake aws above; the other fetch paths: tests/unit/test_installer_fetch.py
            "CERT_ROLLOUT_FETCH": "aws-cli",
            # the node-local state directory (lock, journal, backup); never /var/lib here
            "CERT_ROLLOUT_STATE_DIR": str(self.state),
            "FAKE_SECRET_FILE": str(self.secret_file),
            "FAKE_AWS_ARGS": str(self.aws_args),
            "ROLLOUT_ACTION": action,
            "ROLLOUT_SECRET_ARN": SECRET_ARN,
            "ROLLOUT_SECRET_VERSION_ID": "a1b2c3d4-5678-90ab-cdef-EXAMPLE11111",
            "ROLLOUT_TARGET": base64.b64encode(json.dumps(target).encode()).decode(),
            "ROLLOUT_EXPECTED_SERIAL": expected_serial,
        }
        env.update(extra_env or {})
        return env

    def run(self, action: str, target: dict, *, expected_serial: str = "", extra_env: dict | None = None,
            preexec_fn=None):
        env = self.env(action, target, expected_serial=expected_serial, extra_env=extra_env)
        proc = subprocess.run([INSTALLER_PYTHON, str(INSTALLER)], env=env, capture_output=True, text=True,
                              timeout=60, preexec_fn=preexec_fn)
        lines = proc.stdout.splitlines()
        assert len(lines) == 1 and lines[0].startswith("ROLLOUT_RESULT "), proc.stdout + proc.stderr
        # never any key material, in any output
        for text in (proc.stdout, proc.stderr):
            assert PK not in text
            for secret_line in _key_lines(self.secret_file):
                assert secret_line not in text
        result = json.loads(lines[0][len("ROLLOUT_RESULT "):])
        assert result["exitCode"] == proc.returncode
        return proc.returncode, result


def _key_lines(secret_file: Path) -> list[str]:
    if not secret_file.exists():
        return []
    key = json.loads(secret_file.read_text()).get("privateKey", "")
    return [ln for ln in key.splitlines() if ln and not ln.startswith("-----")]


@pytest.fixture
def node(tmp_path) -> Node:
    return Node(tmp_path)


def py(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def blocks(text: str) -> list[str]:
    return re.findall(r"-----BEGIN ([A-Z ]+)-----", text)


def files_for(node: Node) -> list[dict]:
    return [{"path": str(node.ssl / "fullchain.pem"), "content": "fullchain", "mode": "0644"},
            {"path": str(node.ssl / "privkey.pem"), "content": "key", "mode": None}]


# --------------------------------------------------------------------------- install


def test_install_writes_normalized_files_atomically_with_modes(node, pki):
    node.put_secret(pki["new"])
    code, result = node.run("install", node.target(files_for(node) + [
        {"path": str(node.ssl / "leaf.pem"), "content": "leaf"},
        {"path": str(node.ssl / "chain.pem"), "content": "chain", "mode": "0640"}]),
        expected_serial=format_serial_hex(pki["new"].serial))
    assert code == 0, result
    assert (result["status"], result["stage"], result["error"]) == ("ok", "write", None)
    assert result["action"] == "install"
    assert result["targetId"] == "web-1" and result["installedSerial"] == format_serial_hex(pki["new"].serial)
    new = pki["new"]
    fullchain = (node.ssl / "fullchain.pem").read_text()
    assert fullchain == new.leaf_pem + "".join(new.chain_pems)  # leaf, then chain; one newline apart
    assert "\r" not in fullchain and "\n\n" not in fullchain and fullchain.endswith("-----\n")
    assert (node.ssl / "privkey.pem").read_text() == new.key_pem
    assert (node.ssl / "leaf.pem").read_text() == new.leaf_pem
    assert (node.ssl / "chain.pem").read_text() == "".join(new.chain_pems)
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in node.ssl.iterdir()}
    assert modes["fullchain.pem"] == 0o644 and modes["privkey.pem"] == 0o600 and modes["chain.pem"] == 0o640
    assert sorted(p.name for p in node.ssl.iterdir()) == ["chain.pem", "fullchain.pem", "leaf.pem", "privkey.pem"]
    args = json.loads(node.aws_args.read_text().splitlines()[0])
    assert args[:2] == ["secretsmanager", "get-secret-value"]
    assert args[args.index("--secret-id") + 1] == SECRET_ARN
    assert args[args.index("--version-id") + 1] == "a1b2c3d4-5678-90ab-cdef-EXAMPLE11111"
    assert args[args.index("--query") + 1] == "SecretString" and args[args.index("--output") + 1] == "text"


def test_install_keeps_exactly_one_backup(node, pki):
    f = files_for(node)
    chain, key = str(node.ssl / "fullchain.pem"), str(node.ssl / "privkey.pem")
    (node.ssl / "fullchain.pem").write_text("ancient\n")
    (node.ssl / "privkey.pem").write_text("ancient key\n")
    node.put_secret(pki["old"])
    assert node.run("install", node.target(f))[0] == 0
    assert node.backup() == {chain: b"ancient\n", key: b"ancient key\n"}
    node.put_secret(pki["new"])
    assert node.run("install", node.target(f))[0] == 0
    assert node.backup()[chain].decode().startswith(pki["old"].leaf_pem)
    assert node.backup()[key].decode() == pki["old"].key_pem
    # the same bundle again (a retried command): the backup of the previous one stays
    assert node.run("install", node.target(f))[0] == 0
    assert node.backup()[key].decode() == pki["old"].key_pem
    # nothing beside the live files; one generation, 0600, in a 0700 state directory
    assert sorted(p.name for p in node.ssl.iterdir()) == ["fullchain.pem", "privkey.pem"]
    assert sorted(p.name for p in (node.state / "web-1").iterdir()) == ["backup.json", "lock"]
    assert stat.S_IMODE((node.state / "web-1").stat().st_mode) == 0o700
    assert stat.S_IMODE((node.state / "web-1" / "backup.json").stat().st_mode) == 0o600


def test_combined_layout_is_leaf_chain_key(node, pki):
    node.put_secret(pki["new"])
    path = node.ssl / "haproxy.pem"
    code, _ = node.run("install", node.target([{"path": str(path), "content": "combined"}]))
    assert code == 0
    text = path.read_text()
    assert blocks(text) == ["CERTIFICATE", "CERTIFICATE", "CERTIFICATE", PK]
    new = pki["new"]
    assert text == new.leaf_pem + "".join(new.chain_pems) + new.key_pem
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_test_command_failure_restores_and_exits_10(node, pki):
    f = files_for(node)
    (node.ssl / "fullchain.pem").write_text("old chain\n")
    (node.ssl / "privkey.pem").write_text("old key\n")
    node.put_secret(pki["new"])
    test = py(FAIL_CMD.format(msg='nginx: [emerg] SSL_CTX_use_PrivateKey("privkey.pem") failed\n', code=1))
    code, result = node.run("install", node.target(f, test=test, reload=py("open('RELOADED','w')")))
    assert code == 10
    assert (result["status"], result["stage"]) == ("failed", "test")
    assert "SSL_CTX_use_PrivateKey" in result["error"] and "restored" in result["error"]
    assert "SSL_CTX_use_PrivateKey" in result["serverOutput"]
    assert (node.ssl / "fullchain.pem").read_text() == "old chain\n"
    assert (node.ssl / "privkey.pem").read_text() == "old key\n"
    assert not (node.tmp / "RELOADED").exists()


def test_test_failure_removes_files_that_did_not_exist(node, pki):
    node.put_secret(pki["new"])
    code, _ = node.run("install", node.target(files_for(node), test=py(FAIL_CMD.format(msg="bad\n", code=2))))
    assert code == 10
    assert sorted(p.name for p in node.ssl.iterdir()) == []


def test_command_output_with_a_key_block_is_redacted(node, pki):
    f = files_for(node)
    node.put_secret(pki["new"])
    leak = py(f"import sys; sys.stderr.write(open({str(node.ssl / 'privkey.pem')!r}).read()); sys.exit(1)")
    code, result = node.run("install", node.target(f, test=leak))
    assert code == 10
    assert "[redacted" in result["serverOutput"]


def test_reload_failure_restores_and_reloads_again(node, pki):
    f = files_for(node)
    (node.ssl / "fullchain.pem").write_text("old chain\n")
    (node.ssl / "privkey.pem").write_text("old key\n")
    node.put_secret(pki["new"])
    count = node.tmp / "reloads"
    reload = py(f"import sys; open({str(count)!r}, 'a').write('x'); "
                "sys.stderr.write('Job for nginx.service failed\\n'); sys.exit(1)")
    code, result = node.run("install", node.target(f, test=py("pass"), reload=reload))
    assert code == 11
    assert (result["status"], result["stage"]) == ("failed", "reload")
    assert "Job for nginx.service failed" in result["serverOutput"]
    assert (node.ssl / "fullchain.pem").read_text() == "old chain\n"
    assert (node.ssl / "privkey.pem").read_text() == "old key\n"
    assert count.read_text() == "xx"  # the failed reload, then the best-effort one


def test_command_timeout_is_bounded(node, pki):
    node.put_secret(pki["new"])
    code, result = node.run("install", node.target(files_for(node), test=py("import time; time.sleep(30)")),
                            extra_env={"ROLLOUT_COMMAND_TIMEOUT": "1"})
    assert code == 10 and "timed out after 1 s" in result["error"]


def test_encrypted_key_is_refused_before_any_file_changes(node, pki):
    f = files_for(node)
    (node.ssl / "fullchain.pem").write_text("old chain\n")
    node.put_secret(pki["encrypted"])
    code, result = node.run("install", node.target(f))
    assert code == 12
    assert (result["status"], result["stage"]) == ("failed", "write")
    assert "encrypted" in result["error"]
    assert sorted(p.name for p in node.ssl.iterdir()) == ["fullchain.pem"]
    assert (node.ssl / "fullchain.pem").read_text() == "old chain\n"


def test_unexpected_serial_is_refused(node, pki):
    node.put_secret(pki["new"])
    code, result = node.run("install", node.target(files_for(node)),
                            expected_serial=format_serial_hex(pki["old"].serial))
    assert code == 12 and "not the expected serial" in result["error"]
    assert list(node.ssl.iterdir()) == []


def test_secret_fetch_failure_exits_13_with_cli_error(node, pki):
    node.put_secret(pki["new"])
    code, result = node.run("install", node.target(files_for(node)), extra_env={"FAKE_AWS_FAIL": "1"})
    assert code == 13
    assert (result["status"], result["stage"]) == ("failed", "fetch")
    assert "AccessDeniedException" in result["error"]
    assert list(node.ssl.iterdir()) == []


def test_invalid_parameters_are_reported(node, pki):
    node.put_secret(pki["new"])
    code, result = node.run("install", node.target([{"path": "relative.pem", "content": "leaf"}]))
    assert code == 2 and "absolute" in result["error"]
    code, result = node.run("upgrade", node.target(files_for(node)))
    assert code == 2 and result["status"] == "failed"


# --------------------------------------------------------------------------- rollback


def test_rollback_restores_previous_files(node, pki):
    f = files_for(node)
    node.put_secret(pki["old"])
    assert node.run("install", node.target(f))[0] == 0
    node.put_secret(pki["new"])
    assert node.run("install", node.target(f))[0] == 0
    assert (node.ssl / "privkey.pem").read_text() == pki["new"].key_pem
    code, result = node.run("rollback", node.target(f, test=py("pass"), reload=py("pass")))
    assert code == 0, result
    assert (result["action"], result["status"], result["stage"]) == ("rollback", "ok", "rollback")
    assert (node.ssl / "privkey.pem").read_text() == pki["old"].key_pem
    assert (node.ssl / "fullchain.pem").read_text().startswith(pki["old"].leaf_pem)


def test_rollback_without_backup_or_with_failing_test_exits_20(node, pki):
    f = files_for(node)
    code, result = node.run("rollback", node.target(f))
    assert code == 20 and "no backup" in result["error"]
    node.put_secret(pki["new"])
    assert node.run("install", node.target(f))[0] == 0
    failing = py(FAIL_CMD.format(msg="test says no\n", code=1))
    code, result = node.run("rollback", node.target(f, test=failing))
    assert code == 20 and result["stage"] == "rollback" and "test says no" in result["serverOutput"]
    assert not (node.ssl / "privkey.pem").exists()  # it did not exist before the install


# --------------------------------------------------------------------------- with the TLS server


def _server_target(node: Node, port: int) -> tuple[dict, str, Path]:
    cert, key = node.ssl / "fullchain.pem", node.ssl / "privkey.pem"
    config = write_config(node.tmp / "server.json", [
        {"host": HOST, "port": port, "fault": None,
         "sites": [{"server_names": ["web.internal.example"], "cert": str(cert), "key": str(key)}]}])
    pid = node.tmp / "server.pid"
    target = node.target(
        [{"path": str(cert), "content": "fullchain"}, {"path": str(key), "content": "key"}],
        test=[sys.executable, "-m", SERVER_MODULE, "check", "--config", config],
        reload=[sys.executable, "-m", SERVER_MODULE, "reload", "--pid-file", str(pid), "--config", config])
    target["server"] = "embedded"
    return target, config, pid


@pytest.mark.timeout(60)
def test_install_then_server_serves_new_serial_and_rollback_serves_old(node, pki, servers):
    (port,) = free_ports(1)
    target, config, pid = _server_target(node, port)
    node.put_secret(pki["old"])
    assert node.run("install", target)[0] == 0  # nothing running yet: reload is a no-op
    servers(config, pid, node.tmp / "server.log")
    assert probe_served_certificate(HOST, port, "web.internal.example").serial == pki["old"].serial

    node.put_secret(pki["new"])
    code, result = node.run("install", target, expected_serial=format_serial_hex(pki["new"].serial))
    assert code == 0, result
    assert "configuration test is successful" in result["serverOutput"]
    wait_for_serial(port, "web.internal.example", pki["new"].serial)

    assert node.run("rollback", target)[0] == 0
    wait_for_serial(port, "web.internal.example", pki["old"].serial)


@pytest.mark.timeout(60)
def test_mismatched_key_is_refused_before_any_file_changes_and_server_keeps_serving(node, pki, servers):
    (port,) = free_ports(1)
    target, config, pid = _server_target(node, port)
    node.put_secret(pki["old"])
    assert node.run("install", target)[0] == 0
    servers(config, pid)
    broken = pki["new"].secret()
    broken["privateKey"] = pki["old"].key_pem  # new certificate, old key
    node.put_secret(broken)
    code, result = node.run("install", target)
    assert code == 12, result
    assert result["reason"] == "key-mismatch" and result["stage"] == "write"
    assert "does not match the certificate" in result["error"] and "nothing changed" in result["error"]
    assert result["serverOutput"] == ""  # refused before the config test ran
    assert (node.ssl / "fullchain.pem").read_text().startswith(pki["old"].leaf_pem)
    assert probe_served_certificate(HOST, port, "web.internal.example").serial == pki["old"].serial
