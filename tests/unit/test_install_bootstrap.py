"""The install document's bootstrap, run for real: its script (documents/install-bundle.ssm.yaml)
with SSM's parameter substitution, under /bin/sh, downloading from a loopback HTTP server.
A good package runs install_bundle.py with the parameters as ROLLOUT_* variables; a failed
download, an expired URL or a wrong SHA-256 stops before the installer runs, with its own
exit code and a ROLLOUT_RESULT at stage "installer" that the callback classifies."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import subprocess
import sys
import threading
import time
import zipfile
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from rollout_core.logic.commands import command_status, installer_result

from cert_rollout.localcloud.deploy import layer_zip
from cert_rollout.localcloud.nodes import NodeFleet, _substitute
from tests.unit.test_install_document import document

ROOT = Path(__file__).resolve().parents[2]
SECRET_ARN = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:cert-rollout/abc-AbCdEf"
TOKEN = "X-Amz-Signature=0123456789abcdef0123456789abcdef"

# A stand-in install_bundle.py: writes what it was given, then answers like the installer.
PROBE_INSTALLER = """
import json, os, sys
names = sorted(k for k in os.environ if k.startswith("ROLLOUT_"))
open(os.environ["PROBE_OUT"], "w").write(json.dumps({k: os.environ[k] for k in names}))
sys.stdout.write("ROLLOUT_RESULT " + json.dumps({"status": "ok", "stage": "reload", "exitCode": 0}) + "\\n")
"""


def package(files: dict[str, str]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as z:
        for name, text in files.items():
            z.writestr(name, text)
    return buffer.getvalue()


def sha256(data: bytes) -> str:
    return base64.b64encode(hashlib.sha256(data).digest()).decode()


class Server:
    """Serves ``routes[path] = bytes`` (404 otherwise); ``stall`` seconds before the body."""

    def __init__(self) -> None:
        self.routes: dict[str, bytes] = {}
        self.stall = 0.0
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                body = server.routes.get(self.path.split("?")[0])
                self.send_response(200 if body is not None else 404)
                self.send_header("Content-Length", str(len(body or b"")))
                self.end_headers()
                if server.stall:
                    self.wfile.write((body or b"")[:10])
                    self.wfile.flush()
                    time.sleep(server.stall)
                    return
                self.wfile.write(body or b"")

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}{path}?{TOKEN}"


@pytest.fixture
def server() -> Iterator[Server]:
    s = Server()
    yield s
    s.httpd.shutdown()
    s.httpd.server_close()


def run_document(tmp_path: Path, url: str, sha: str, *, timeout: str = "600", command_timeout: str = "120",
                 target: dict[str, Any] | None = None) -> tuple[int, str, str]:
    """The document's step as a local node runs it: SSM's validation and {{ }} substitution,
    the script under /bin/sh, bounded by timeoutSeconds."""
    doc = document()
    target = target or {"targetId": "web-1", "server": "generic", "files": []}
    params = {"Action": "install", "SecretArn": SECRET_ARN, "SecretVersionId": "v-1",
              "TargetConfig": base64.b64encode(json.dumps(target).encode()).decode(),
              "ExpectedSerial": "0f:ac", "ExecutionTimeout": timeout, "CommandTimeout": command_timeout,
              "InstallerUrl": url, "InstallerSha256": sha}
    values = NodeFleet.validate_parameters(doc, {k: [v] for k, v in params.items()})
    inputs = doc["mainSteps"][0]["inputs"]
    script = "\n".join(_substitute(line, values) for line in inputs["runCommand"]) + "\n"
    env = {"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "HOME": str(tmp_path),
           "PROBE_OUT": str(tmp_path / "probe.json")}
    proc = subprocess.run(["/bin/sh", "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=int(_substitute(inputs["timeoutSeconds"], values)))
    return proc.returncode, proc.stdout, proc.stderr


def test_good_package_runs_the_installer_with_every_parameter(tmp_path: Path, server: Server) -> None:
    data = package({"install_bundle.py": PROBE_INSTALLER})
    server.routes["/layer.zip"] = data
    code, out, err = run_document(tmp_path, server.url("/layer.zip"), sha256(data), timeout="300",
                                  command_timeout="60")
    assert code == 0, out + err
    seen = json.loads((tmp_path / "probe.json").read_text())
    assert seen["ROLLOUT_COMMAND_TIMEOUT"] == "60" and seen["ROLLOUT_EXECUTION_TIMEOUT"] == "300"
    assert seen["ROLLOUT_ACTION"] == "install" and seen["ROLLOUT_SECRET_ARN"] == SECRET_ARN
    assert seen["ROLLOUT_EXPECTED_SERIAL"] == "0f:ac"
    assert abs(int(seen["ROLLOUT_STARTED_AT"]) - time.time()) < 30


def test_the_real_installer_runs_from_the_layer_zip(tmp_path: Path, server: Server) -> None:
    data = layer_zip(ROOT / "installer")
    server.routes["/layer.zip"] = data
    # a target without files: the real installer refuses it (exit 2) with its own result line
    code, out, err = run_document(tmp_path, server.url("/layer.zip"), sha256(data))
    result = installer_result(out)
    assert code == 2 and result is not None, out + err
    assert result["stage"] == "write" and "no files" in result["error"]


def test_a_killed_installer_gets_a_named_result_line(tmp_path: Path, server: Server) -> None:
    killed = "import os, signal, sys; sys.stdout.flush(); os.kill(os.getpid(), signal.SIGKILL)\n"
    data = package({"install_bundle.py": killed})
    server.routes["/layer.zip"] = data
    code, out, err = run_document(tmp_path, server.url("/layer.zip"), sha256(data))
    assert code == 137, out + err
    result = installer_result(out)
    assert result and (result["stage"], result["reason"]) == ("installer", "installer-killed")
    assert "signal 9" in result["error"] and "rolls its interrupted change back" in result["error"]
    status = command_status("cmd-1", "i-1", invocation={"Status": "Failed", "StatusDetails": "Failed",
                                                        "ResponseCode": code, "StandardOutputContent": out})
    assert status.state == "FAILED" and status.detail and "installer-killed" in status.detail


def test_allow_older_serial_reaches_the_installer_only_when_given(tmp_path: Path, server: Server) -> None:
    data = package({"install_bundle.py": PROBE_INSTALLER})
    server.routes["/layer.zip"] = data
    assert run_document(tmp_path, server.url("/layer.zip"), sha256(data))[0] == 0
    assert json.loads((tmp_path / "probe.json").read_text())["ROLLOUT_ALLOW_OLDER"] == ""
    doc = document()
    pattern = doc["parameters"]["AllowOlderSerial"]["allowedPattern"]
    import re

    assert re.fullmatch(pattern, "0f:ac:01") and re.fullmatch(pattern, "")
    for bad in ("0F:AC", "'; rm -rf /", "0f:a", "0f::ac"):
        assert not re.fullmatch(pattern, bad), bad


def test_checksum_mismatch_stops_before_the_installer_runs(tmp_path: Path, server: Server) -> None:
    data = package({"install_bundle.py": PROBE_INSTALLER})
    server.routes["/layer.zip"] = data
    code, out, err = run_document(tmp_path, server.url("/layer.zip"), sha256(b"another version"))
    assert code == 15, out + err
    result = installer_result(out)
    assert result and (result["stage"], result["reason"]) == ("installer", "installer-checksum-mismatch")
    assert not (tmp_path / "probe.json").exists()
    status = command_status("cmd-1", "i-1", invocation={"Status": "Failed", "StatusDetails": "Failed",
                                                        "ResponseCode": code, "StandardOutputContent": out})
    assert status.state == "FAILED" and status.filesChanged == "no"  # nothing ran: no restore needed
    assert status.detail and "stage installer" in status.detail and "installer-checksum-mismatch" in status.detail


@pytest.mark.parametrize("path", ["/expired.zip", "/no-entry.zip", "/not-a-zip.zip"])
def test_unavailable_installer_is_named_and_never_reports_the_url(tmp_path: Path, server: Server,
                                                                 path: str) -> None:
    bodies = {"/no-entry.zip": package({"README": "x"}), "/not-a-zip.zip": b"<html>proxy</html>"}
    if path in bodies:
        server.routes[path] = bodies[path]
    data = bodies.get(path, b"")
    code, out, err = run_document(tmp_path, server.url(path), sha256(data))
    assert code == 14, out + err
    result = installer_result(out)
    assert result and (result["stage"], result["reason"]) == ("installer", "installer-unavailable")
    assert TOKEN not in out + err
    assert not (tmp_path / "probe.json").exists()


def test_refused_connection_is_installer_unavailable(tmp_path: Path) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    code, out, _ = run_document(tmp_path, f"http://127.0.0.1:{port}/x.zip?{TOKEN}", sha256(b""))
    assert code == 14 and "cannot download from 127.0.0.1" in out and TOKEN not in out


def test_download_is_bounded_by_the_command_timeout(tmp_path: Path, server: Server) -> None:
    data = package({"install_bundle.py": PROBE_INSTALLER})
    server.routes["/slow.zip"] = data
    server.stall = 20
    started = time.monotonic()
    code, out, _ = run_document(tmp_path, server.url("/slow.zip"), sha256(data), timeout="60",
                                command_timeout="2")
    assert code == 14 and "installer-unavailable" in out
    assert time.monotonic() - started < 15


def _bootstrap_without_python(tmp_path: Path, python: str | None = None) -> subprocess.CompletedProcess[str]:
    """The document's script with a PATH holding only the tools it calls before python (date,
    tr), and ``python`` (a shell script) as python3 when given: no python3 of this machine."""
    doc = document()
    script = "\n".join(_substitute(line, {"Action": "install"}) for line in doc["mainSteps"][0]["inputs"]["runCommand"])
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("date", "tr"):
        os.symlink(f"/bin/{tool}" if os.path.exists(f"/bin/{tool}") else f"/usr/bin/{tool}", bin_dir / tool)
    if python is not None:
        (bin_dir / "python3").write_text(python)
        (bin_dir / "python3").chmod(0o755)
    marker = tmp_path / "touched"
    return subprocess.run(["/bin/sh", "-c", script], env={"PATH": str(bin_dir), "MARKER": str(marker)}, cwd=tmp_path,
                          capture_output=True, text=True, timeout=30)


def test_no_python_on_the_node_is_a_named_failure(tmp_path: Path) -> None:
    proc = _bootstrap_without_python(tmp_path)
    result = installer_result(proc.stdout)
    assert proc.returncode == 22 and result is not None, proc.stdout + proc.stderr
    assert (result["reason"], result["stage"], result["exitCode"], result["action"]) == (
        "python-missing", "installer", 22, "install")
    assert "python3 >= 3.8" in result["error"] and "nothing changed" in result["error"]
    assert "python-missing" in proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bin"]  # nothing written beside it
    status = command_status("cmd-1", "i-1", invocation={"Status": "Failed", "StatusDetails": "Failed",
                                                        "ResponseCode": 22, "StandardOutputContent": proc.stdout,
                                                        "StandardErrorContent": proc.stderr})
    assert (status.reason, status.filesChanged) == ("python-missing", "no"), status


def test_too_old_python_is_a_named_failure(tmp_path: Path) -> None:
    # a python3 that fails the version check and says 3.6.8 (RHEL 8's platform python)
    proc = _bootstrap_without_python(tmp_path, '#!/bin/sh\ncase "$2" in *"(3, 8)"*) exit 1;; esac\necho 3.6.8\n')
    result = installer_result(proc.stdout)
    assert proc.returncode == 22 and result is not None, proc.stdout + proc.stderr
    assert result["reason"] == "python-too-old" and "python3 3.6.8 is older than 3.8" in result["error"], result
