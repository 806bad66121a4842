"""`cert-rollout check --ca-bundle ROOT` against `openssl s_server`, a server no other test uses
(issue 12 done-when): sending only the leaf it exits non-zero and says the chain is incomplete;
sending the intermediate too (-cert_chain) it exits 0. VerifyTarget's checks (domain.tls_checks)
on a chain read from a real handshake (probe.served_chain, Python 3.12's private path)."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cert_rollout.cli import app
from cert_rollout.localcloud.cloud import free_port
from tests.unit.pki_fixtures import pki

OPENSSL = shutil.which("openssl") or "/usr/bin/openssl"
HOST = "127.0.0.1"
pytestmark = pytest.mark.skipif(not Path(OPENSSL).exists(), reason="openssl not installed")


def _wait_listening(port: int, proc: subprocess.Popen[bytes], seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"openssl s_server exited with {proc.returncode}: {proc.stderr.read() if proc.stderr else ''}")
        try:
            with socket.create_connection((HOST, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"openssl s_server did not listen on {HOST}:{port} within {seconds} s")


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    p = pki("EC_prime256v1")
    out = {"leaf": tmp_path / "leaf.pem", "key": tmp_path / "leaf.key", "intermediate": tmp_path / "int.pem",
           "root": tmp_path / "root.pem"}
    out["leaf"].write_text(p.leaf_pem)
    out["key"].write_text(p.plain_key_pem())
    out["intermediate"].write_text(p.intermediate_pem)
    out["root"].write_text(p.root_pem)
    return out


def s_server(files: dict[str, Path], *, with_chain: bool) -> Iterator[int]:
    port = free_port()
    cmd = [OPENSSL, "s_server", "-accept", f"{HOST}:{port}", "-cert", str(files["leaf"]), "-key", str(files["key"]),
           "-naccept", "10", "-quiet"]
    if with_chain:
        cmd += ["-cert_chain", str(files["intermediate"])]
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        _wait_listening(port, proc)
        yield port
    finally:
        proc.kill()
        proc.wait(timeout=10)


def check(port: int, root: Path, *extra: str):
    return CliRunner().invoke(app, ["check", f"{HOST}:{port}", "--sni", "web.internal.example", "--ca-bundle",
                                    str(root), "--timeout", "5", *extra], catch_exceptions=False)


@pytest.mark.timeout(60)
def test_leaf_only_exits_non_zero_and_says_the_chain_is_incomplete(files: dict[str, Path]) -> None:
    for port in s_server(files, with_chain=False):
        r = check(port, files["root"], "--json")
        assert r.exit_code == 1, r.stdout + r.stderr
        out = json.loads(r.stdout)
        assert (out["verified"], out["reason"], out["chainLength"]) == (False, "chain-invalid", 1)
        assert "the server sent 1 certificate" in out["verifyError"]
        assert "neither sent nor a trust anchor" in out["verifyError"]
        table = check(port, files["root"])
        assert table.exit_code == 1 and "chain-invalid" in table.stdout and "Chain length" in table.stdout


@pytest.mark.timeout(60)
def test_leaf_with_its_intermediate_exits_0(files: dict[str, Path]) -> None:
    for port in s_server(files, with_chain=True):
        r = check(port, files["root"], "--json")
        assert r.exit_code == 0, r.stdout + r.stderr
        out = json.loads(r.stdout)
        assert (out["verified"], out["reason"], out["chainLength"]) == (True, None, 2)
        assert out["chain"][1]["subject"] == out["issuer"]  # the intermediate, as sent
        wrong_name = CliRunner().invoke(app, ["check", f"{HOST}:{port}", "--sni", "other.internal.example",
                                              "--ca-bundle", str(files["root"]), "--json"], catch_exceptions=False)
        assert wrong_name.exit_code == 1 and json.loads(wrong_name.stdout)["reason"] == "hostname-mismatch"
