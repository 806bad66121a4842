"""The embedded TLS target server (stand-in for nginx): SNI sites, SIGHUP reload,
faults (stale, wrong-cert, reload-fails), config test, many listeners."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import trustme
from cryptography import x509
from rollout_core.probe import probe_served_certificate

from cert_rollout.localcloud.target_server import (
    TargetServerError,
    check_config,
    start_server,
    stop_server,
)

SERVER_MODULE = "cert_rollout.localcloud.target_server"
HOST = "127.0.0.1"


# --------------------------------------------------------------------------- helpers
# (imported by test_probe.py and test_installer.py)


def free_ports(n: int) -> list[int]:
    """n distinct free TCP ports on 127.0.0.1 (bound to 0, then released)."""
    socks, ports = [], []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind((HOST, 0))
            socks.append(s)
            ports.append(s.getsockname()[1])
    finally:
        for s in socks:
            s.close()
    return ports


def serial_of(leaf: trustme.LeafCert) -> int:
    return x509.load_pem_x509_certificate(leaf.cert_chain_pems[0].bytes()).serial_number


def write_site(directory: Path, name: str, leaf: trustme.LeafCert) -> tuple[str, str]:
    """fullchain (leaf then chain) + key files for ``leaf``; returns (cert, key) paths."""
    directory.mkdir(parents=True, exist_ok=True)
    cert, key = directory / f"{name}.fullchain.pem", directory / f"{name}.key.pem"
    cert.write_bytes(b"".join(p.bytes() for p in leaf.cert_chain_pems))
    key.write_bytes(leaf.private_key_pem.bytes())
    return str(cert), str(key)


def site(names: list[str], cert: str, key: str) -> dict:
    return {"server_names": names, "cert": cert, "key": key}


def listener(port: int, *sites: dict, fault: str | None = None, **extra: str) -> dict:
    return {"host": HOST, "port": port, "fault": fault, "sites": list(sites), **extra}


def write_config(path: Path, listeners: list[dict]) -> str:
    path.write_text(json.dumps({"listeners": listeners}, indent=2))
    return str(path)


def run_cli(*args: str, timeout: float = 20) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", SERVER_MODULE, *args], capture_output=True,
                          text=True, timeout=timeout)


def wait_for_serial(port: int, sni: str | None, serial: int, timeout: float = 5.0) -> None:
    """Poll (bounded) until HOST:port with ``sni`` serves ``serial``; reload is async."""
    deadline = time.monotonic() + timeout
    seen = None
    while time.monotonic() < deadline:
        seen = probe_served_certificate(HOST, port, sni, timeout=2).serial
        if seen == serial:
            return
        time.sleep(0.02)
    raise AssertionError(f"port {port} sni {sni}: still serving {seen}, expected {serial}")


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def servers():
    """Start servers through this fixture; all are stopped at teardown."""
    started: list[subprocess.Popen] = []

    def start(config: str, pid_file: Path, log: Path | None = None) -> subprocess.Popen:
        proc = start_server(config, pid_file, log)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        stop_server(proc)


# --------------------------------------------------------------------------- tests


@pytest.mark.timeout(30)
def test_sighup_reload_serves_new_files(tmp_path, ca, servers):
    old, new = ca.issue_cert("web.internal.example"), ca.issue_cert("web.internal.example")
    cert, key = write_site(tmp_path, "web", old)
    (port,) = free_ports(1)
    config = write_config(tmp_path / "c.json", [
        {"host": HOST, "port": port, "fault": None,
         "sites": [{"server_names": ["web.internal.example"], "cert": cert, "key": key}]}])
    pid = tmp_path / "t.pid"
    proc = servers(config, pid, tmp_path / "t.log")
    assert pid.read_text().strip() == str(proc.pid)
    assert probe_served_certificate(HOST, port, "web.internal.example").serial == serial_of(old)

    write_site(tmp_path, "web", new)  # files swapped: nothing changes until the reload
    assert probe_served_certificate(HOST, port, "web.internal.example").serial == serial_of(old)
    r = run_cli("reload", "--pid-file", str(pid), "--config", config)
    assert r.returncode == 0, r.stderr
    wait_for_serial(port, "web.internal.example", serial_of(new))


@pytest.mark.timeout(30)
def test_reload_with_broken_files_keeps_previous_certificate(tmp_path, ca, servers):
    old, other = ca.issue_cert("web.internal.example"), ca.issue_cert("web.internal.example")
    cert, key = write_site(tmp_path, "web", old)
    (port,) = free_ports(1)
    config = write_config(tmp_path / "c.json", [
        {"host": HOST, "port": port, "sites": [{"server_names": ["web.internal.example"],
                                                "cert": cert, "key": key}]}])
    pid, log = tmp_path / "t.pid", tmp_path / "t.log"
    servers(config, pid, log)
    # new certificate, old key: the key no longer matches
    Path(cert).write_bytes(b"".join(p.bytes() for p in other.cert_chain_pems))
    assert run_cli("reload", "--pid-file", str(pid)).returncode == 0
    deadline = time.monotonic() + 5
    while "reload failed" not in log.read_text() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert "keeping the previous certificate" in log.read_text()
    assert "KEY_VALUES_MISMATCH" in log.read_text()
    assert probe_served_certificate(HOST, port, "web.internal.example").serial == serial_of(old)


@pytest.mark.timeout(30)
def test_stale_fault_ignores_sighup_while_other_listener_reloads(tmp_path, ca, servers):
    old, new = ca.issue_cert("web.internal.example"), ca.issue_cert("web.internal.example")
    cert, key = write_site(tmp_path, "web", old)
    good, stale = free_ports(2)
    site = {"server_names": ["web.internal.example"], "cert": cert, "key": key}
    config = write_config(tmp_path / "c.json", [
        {"host": HOST, "port": good, "fault": None, "sites": [site]},
        {"host": HOST, "port": stale, "fault": "stale", "sites": [site]}])
    pid = tmp_path / "t.pid"
    servers(config, pid, tmp_path / "t.log")
    write_site(tmp_path, "web", new)
    assert run_cli("reload", "--pid-file", str(pid), "--config", config).returncode == 0
    wait_for_serial(good, "web.internal.example", serial_of(new))  # the reload happened
    for _ in range(3):
        assert probe_served_certificate(HOST, stale, "web.internal.example").serial == serial_of(old)
    assert "fault: stale" in (tmp_path / "t.log").read_text()


@pytest.mark.timeout(30)
def test_wrong_cert_fault_always_serves_fault_certificate(tmp_path, ca, servers):
    right, wrong = ca.issue_cert("web.internal.example"), ca.issue_cert("other.example")
    cert, key = write_site(tmp_path, "web", right)
    fcert, fkey = write_site(tmp_path, "wrong", wrong)
    (port,) = free_ports(1)
    config = write_config(tmp_path / "c.json", [
        {"host": HOST, "port": port, "fault": "wrong-cert", "fault_cert": fcert, "fault_key": fkey,
         "sites": [{"server_names": ["web.internal.example"], "cert": cert, "key": key}]}])
    servers(config, tmp_path / "t.pid")
    for sni in ("web.internal.example", None, "unknown.example"):
        assert probe_served_certificate(HOST, port, sni).serial == serial_of(wrong)


@pytest.mark.timeout(30)
def test_reload_fails_fault_exit_code_and_text(tmp_path, ca, servers):
    old, new = ca.issue_cert("web.internal.example"), ca.issue_cert("web.internal.example")
    cert, key = write_site(tmp_path, "web", old)
    (port,) = free_ports(1)
    config = write_config(tmp_path / "c.json", [
        {"host": HOST, "port": port, "fault": "reload-fails",
         "sites": [{"server_names": ["web.internal.example"], "cert": cert, "key": key}]}])
    pid = tmp_path / "t.pid"
    servers(config, pid)
    write_site(tmp_path, "web", new)
    r = run_cli("reload", "--pid-file", str(pid), "--config", config)
    assert r.returncode == 1
    assert r.stderr.startswith("reload failed: ")
    assert f"{HOST}:{port}" in r.stderr
    time.sleep(0.2)  # no signal was sent: still the old certificate
    assert probe_served_certificate(HOST, port, "web.internal.example").serial == serial_of(old)


@pytest.mark.timeout(30)
def test_dies_after_reload_fault_exits_after_a_successful_reload_only(tmp_path, ca, servers):
    old, new = ca.issue_cert("web.internal.example"), ca.issue_cert("web.internal.example")
    cert, key = write_site(tmp_path, "web", old)
    (port,) = free_ports(1)
    config = write_config(tmp_path / "c.json", [listener(port, site(["web.internal.example"], cert, key),
                                                         fault="dies-after-reload")])
    pid = tmp_path / "t.pid"
    proc = servers(config, pid, tmp_path / "t.log")
    # a SIGHUP with unchanged files reloads nothing: the server keeps running
    assert run_cli("reload", "--pid-file", str(pid), "--config", config).returncode == 0
    time.sleep(0.3)
    assert proc.poll() is None
    write_site(tmp_path, "web", new)
    r = run_cli("reload", "--pid-file", str(pid), "--config", config)
    assert (r.returncode, r.stdout.strip()) == (0, f"reload signal sent to pid {proc.pid}")  # the reload succeeded
    assert proc.wait(timeout=5) == 70
    assert "fault: dies-after-reload" in (tmp_path / "t.log").read_text()
    with pytest.raises(Exception):  # noqa: B017, PT011 - nothing answers any more
        probe_served_certificate(HOST, port, "web.internal.example", timeout=1)
    # the pid file stays behind (a crash); reload then finds no server
    r = run_cli("reload", "--pid-file", str(pid), "--config", config)
    assert (r.returncode, r.stdout.strip()) == (0, "not running; nothing to reload")


def test_reload_when_not_running_is_a_no_op(tmp_path):
    r = run_cli("reload", "--pid-file", str(tmp_path / "missing.pid"))
    assert (r.returncode, r.stdout.strip()) == (0, "not running; nothing to reload")
    (tmp_path / "dead.pid").write_text("999999999\n")
    r = run_cli("reload", "--pid-file", str(tmp_path / "dead.pid"))
    assert (r.returncode, r.stdout.strip()) == (0, "not running; nothing to reload")


def test_check_passes_and_fails_like_nginx_t(tmp_path, ca):
    a, b = ca.issue_cert("a.example"), ca.issue_cert("b.example")
    cert_a, key_a = write_site(tmp_path, "a", a)
    cert_b, key_b = write_site(tmp_path, "b", b)
    good = write_config(tmp_path / "good.json", [
        listener(8443, site(["a.example"], cert_a, key_a), site(["b.example"], cert_b, key_b))])
    r = run_cli("check", "--config", good)
    assert (r.returncode, r.stdout.strip()) == (0, "configuration test is successful")

    mismatch = write_config(tmp_path / "bad.json", [
        listener(8443, site(["a.example"], cert_a, key_b))])
    r = run_cli("check", "--config", mismatch)
    assert r.returncode == 1
    assert r.stderr.startswith(f"configuration test failed: {key_b}: ")
    assert "does not match" in r.stderr


def test_check_refuses_chain_first_bundle_encrypted_key_and_missing_file(tmp_path):
    from cryptography.hazmat.primitives import serialization

    ca = trustme.CA()
    inter = ca.create_child_ca()
    leaf = inter.issue_cert("web.internal.example")
    cert, key = write_site(tmp_path, "web", leaf)
    chain_first = tmp_path / "chain-first.pem"
    chain_first.write_bytes(leaf.cert_chain_pems[1].bytes() + leaf.cert_chain_pems[0].bytes())
    pkey = serialization.load_pem_private_key(leaf.private_key_pem.bytes(), None)
    encrypted = tmp_path / "enc.key"
    encrypted.write_bytes(pkey.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                             serialization.BestAvailableEncryption(b"passphrase")))

    def errors(cert_path: str, key_path: str) -> list[str]:
        cfg = write_config(tmp_path / "c.json", [
            listener(8443, site([], cert_path, key_path))])
        return check_config(cfg)

    assert errors(cert, key) == []
    assert "does not match" in errors(str(chain_first), key)[0]  # K5: first cert is not the leaf
    assert errors(cert, str(encrypted)) == [
        f"{encrypted}: private key is encrypted and no password is configured"]
    assert errors(str(tmp_path / "nope.pem"), key)[0].startswith(f"{tmp_path / 'nope.pem'}: cannot read")


@pytest.mark.timeout(30)
def test_serve_refuses_to_start_on_bad_files(tmp_path, ca):
    a, b = ca.issue_cert("a.example"), ca.issue_cert("b.example")
    cert_a, _ = write_site(tmp_path, "a", a)
    _, key_b = write_site(tmp_path, "b", b)
    (port,) = free_ports(1)
    config = write_config(tmp_path / "c.json", [
        listener(port, site(["a.example"], cert_a, key_b))])
    with pytest.raises(TargetServerError, match="configuration test failed"):
        start_server(config, tmp_path / "t.pid", tmp_path / "t.log")
    assert not (tmp_path / "t.pid").exists()


@pytest.mark.timeout(60)
def test_many_listeners_in_one_process_and_stop_command(tmp_path, ca, servers):
    leaf = ca.issue_cert("web.internal.example")
    cert, key = write_site(tmp_path, "web", leaf)
    ports = free_ports(250)
    config = write_config(tmp_path / "c.json", [
        listener(p, site(["web.internal.example"], cert, key)) for p in ports])
    pid = tmp_path / "t.pid"
    proc = servers(config, pid)
    for p in (ports[0], ports[len(ports) // 2], ports[-1]):
        assert probe_served_certificate(HOST, p, "web.internal.example").serial == serial_of(leaf)
    r = run_cli("stop", "--pid-file", str(pid))
    assert r.returncode == 0
    assert proc.wait(timeout=10) == 0
    assert not pid.exists()


@pytest.mark.timeout(30)
def test_answers_http_after_handshake(tmp_path, ca, servers):
    import ssl

    leaf = ca.issue_cert("web.internal.example")
    cert, key = write_site(tmp_path, "web", leaf)
    (port,) = free_ports(1)
    config = write_config(tmp_path / "c.json", [
        listener(port, site(["web.internal.example"], cert, key))])
    servers(config, tmp_path / "t.pid")
    ctx = ssl.create_default_context()
    ca.configure_trust(ctx)
    with socket.create_connection((HOST, port), timeout=3) as raw, \
            ctx.wrap_socket(raw, server_hostname="web.internal.example") as tls:
        tls.sendall(b"GET / HTTP/1.1\r\nHost: web.internal.example\r\n\r\n")
        assert tls.recv(1024).startswith(b"HTTP/1.1 200 OK")


# --------------------------------------------------------------------------- issue 12 faults


def served_chain(port: int, sni: str) -> list[bytes]:
    """DER of every certificate the server sent in one handshake (leaf first), unverified.
    Python 3.12: SSLSocket has no public get_unverified_chain (3.13); its _sslobj has."""
    import ssl

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    with socket.create_connection((HOST, port), timeout=3) as raw, ctx.wrap_socket(raw, server_hostname=sni) as tls:
        getter = getattr(tls, "get_unverified_chain", None) or tls._sslobj.get_unverified_chain
        return [c if isinstance(c, bytes) else c.public_bytes(ssl._ssl.ENCODING_DER) for c in getter()]


@pytest.fixture(scope="module")
def issuing_ca(ca) -> trustme.CA:
    """An intermediate under ``ca``: its leaves' cert_chain_pems are leaf + intermediate."""
    return ca.create_child_ca()


@pytest.mark.timeout(30)
def test_missing_intermediate_serves_only_the_leaf_at_start_and_after_reload(tmp_path, issuing_ca, servers):
    old, new = issuing_ca.issue_cert("web.internal.example"), issuing_ca.issue_cert("web.internal.example")
    cert, key = write_site(tmp_path, "web", old)
    assert Path(cert).read_text().count("BEGIN CERTIFICATE") == 2  # the file holds leaf + intermediate
    full, leaf_only = free_ports(2)
    config = write_config(tmp_path / "c.json", [
        listener(full, site(["web.internal.example"], cert, key)),
        listener(leaf_only, site(["web.internal.example"], cert, key), fault="missing-intermediate")])
    assert check_config(config) == []  # the config test reads the whole file: nothing to see there
    pid = tmp_path / "t.pid"
    servers(config, pid, tmp_path / "t.log")
    assert len(served_chain(full, "web.internal.example")) == 2
    chain = served_chain(leaf_only, "web.internal.example")
    assert len(chain) == 1
    assert x509.load_der_x509_certificate(chain[0]).serial_number == serial_of(old)
    assert len(served_chain(leaf_only, "unknown.example")) == 1  # the default site too

    write_site(tmp_path, "web", new)
    assert run_cli("reload", "--pid-file", str(pid), "--config", config).returncode == 0
    wait_for_serial(leaf_only, "web.internal.example", serial_of(new))
    chain = served_chain(leaf_only, "web.internal.example")
    assert len(chain) == 1
    assert x509.load_der_x509_certificate(chain[0]).serial_number == serial_of(new)
    assert "leaf only, fault: missing-intermediate" in (tmp_path / "t.log").read_text()


@pytest.mark.timeout(60)
def test_one_stale_backend_serves_the_old_certificate_on_one_connection_in_four(tmp_path, ca, servers):
    old, new = ca.issue_cert("web.internal.example"), ca.issue_cert("web.internal.example")
    cert, key = write_site(tmp_path, "web", old)
    front, *backends = free_ports(5)
    config = write_config(tmp_path / "c.json", [
        {**listener(front, site(["web.internal.example"], cert, key), fault="one-stale-backend"),
         "backends": backends}])
    pid = tmp_path / "t.pid"
    servers(config, pid, tmp_path / "t.log")
    for port in (front, *backends):  # every port answers, with the certificate loaded at start
        assert probe_served_certificate(HOST, port, "web.internal.example").serial == serial_of(old)

    write_site(tmp_path, "web", new)
    assert run_cli("reload", "--pid-file", str(pid), "--config", config).returncode == 0
    for port in backends[:-1]:
        wait_for_serial(port, "web.internal.example", serial_of(new))
    served = [probe_served_certificate(HOST, front, "web.internal.example").serial for _ in range(20)]
    assert served.count(serial_of(old)) == 5 and served.count(serial_of(new)) == 15, served  # round-robin
    for _ in range(3):  # the stale backend's own port: still the old one
        assert probe_served_certificate(HOST, backends[-1], "web.internal.example").serial == serial_of(old)
    assert f"backend {HOST}:{backends[-1]}: SIGHUP ignored (fault: one-stale-backend)" in (
        tmp_path / "t.log").read_text()


@pytest.mark.parametrize(("extra", "message"), [
    ({"fault": "one-stale-backend"}, "fault one-stale-backend needs backends"),
    ({"backends": [9001]}, "at least 2 backend ports"),
    ({"backends": [9001, "9002"]}, "backends must be a list of ports"),
    ({"backends": [9001, 8443]}, "duplicate listener 127.0.0.1:8443"),
])
def test_backends_config_is_checked(tmp_path, extra, message):
    cert, key = tmp_path / "c.pem", tmp_path / "k.pem"
    config = write_config(tmp_path / "c.json", [{**listener(8443, site([], str(cert), str(key))), **extra}])
    [error] = check_config(config)
    assert message in error
