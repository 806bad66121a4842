"""rollout_core.probe: served serial over TLS with SNI (S3), could-not-connect vs
handshake failure vs serial mismatch (S4), serial formats (S1)."""

from __future__ import annotations

import _ssl
import hashlib
import socket
import ssl
import struct
import threading
import types
from collections.abc import Iterator

import pytest
import trustme
from cryptography import x509
from rollout_core import probe
from rollout_core.probe import (
    ProbeError,
    ServedCertificate,
    TargetUnreachable,
    TlsHandshakeFailed,
    format_serial_hex,
    probe_served_certificate,
    served_chain,
    verify_served_serial,
)

from tests.unit.test_target_server import HOST, free_ports, serial_of, servers, write_config, write_site

__all__ = ["servers"]  # the fixture, re-used


@pytest.fixture(scope="module")
def pki() -> dict:
    ca = trustme.CA()
    inter = ca.create_child_ca()
    return {
        "ca": ca,
        "web": inter.issue_cert("web.internal.example", "127.0.0.1"),
        "api": inter.issue_cert("api.internal.example"),
    }


@pytest.fixture
def two_sites(tmp_path, pki, servers) -> int:
    """One listener, two SNI sites: web (default, first) and api."""
    web_cert, web_key = write_site(tmp_path, "web", pki["web"])
    api_cert, api_key = write_site(tmp_path, "api", pki["api"])
    (port,) = free_ports(1)
    config = write_config(tmp_path / "c.json", [
        {"host": HOST, "port": port, "fault": None, "sites": [
            {"server_names": ["web.internal.example"], "cert": web_cert, "key": web_key},
            {"server_names": ["api.internal.example"], "cert": api_cert, "key": api_key}]}])
    servers(config, tmp_path / "t.pid", tmp_path / "t.log")
    return port


class _RawServer:
    """A TCP listener that misbehaves for TLS: "garbage" answers plain text,
    "reset" accepts then resets, "silent" accepts and never answers."""

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.sock = socket.socket()
        self.sock.bind((HOST, 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.conns: list[socket.socket] = []
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            if self.mode == "garbage":
                conn.recv(4096)
                conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
                conn.close()
            elif self.mode == "reset":
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                conn.close()
            else:
                self.conns.append(conn)

    def close(self) -> None:
        self.sock.close()
        for c in self.conns:
            c.close()


@pytest.fixture
def raw_server() -> Iterator:
    made: list[_RawServer] = []

    def make(mode: str) -> _RawServer:
        made.append(_RawServer(mode))
        return made[-1]

    yield make
    for s in made:
        s.close()


# --------------------------------------------------------------------------- SNI and fields


@pytest.mark.timeout(30)
def test_sni_chooses_the_site_and_serial_is_read_without_verification(two_sites, pki):
    assert probe_served_certificate(HOST, two_sites, "web.internal.example").serial == serial_of(pki["web"])
    assert probe_served_certificate(HOST, two_sites, "api.internal.example").serial == serial_of(pki["api"])
    # no SNI, or a name no site has: the first (default) site answers
    assert probe_served_certificate(HOST, two_sites, None).serial == serial_of(pki["web"])
    assert probe_served_certificate(HOST, two_sites, "").serial == serial_of(pki["web"])
    assert probe_served_certificate(HOST, two_sites, "nope.example").serial == serial_of(pki["web"])


@pytest.mark.timeout(30)
def test_served_certificate_fields(two_sites, pki):
    served = probe_served_certificate(HOST, two_sites, "web.internal.example")
    leaf_pem = pki["web"].cert_chain_pems[0].bytes()
    cert = x509.load_pem_x509_certificate(leaf_pem)
    der = ssl.PEM_cert_to_DER_cert(leaf_pem.decode())
    assert isinstance(served, ServedCertificate)
    assert served.serial == cert.serial_number
    assert served.serial_hex == format_serial_hex(cert.serial_number)
    assert int(served.serial_hex.replace(":", ""), 16) == served.serial
    assert served.subject == cert.subject.rfc4514_string()
    assert served.issuer == cert.issuer.rfc4514_string()
    assert served.sans == ["web.internal.example", "127.0.0.1"]
    assert served.not_before == cert.not_valid_before_utc and served.not_before.tzinfo is not None
    assert served.not_after == cert.not_valid_after_utc
    assert served.fingerprint_sha256 == hashlib.sha256(der).hexdigest()
    assert served.tls_version in ("TLSv1.2", "TLSv1.3")
    assert served.verified is None
    # leaf + intermediate (fullchain file), read on 3.12 (this venv, Lambda python3.12) as on 3.13
    assert (served.chain_length, served.chain_error) == (2, None)
    assert served.chain_der[0] == der
    chain = [x509.load_der_x509_certificate(d) for d in served.chain_der]
    assert chain[0].issuer == chain[1].subject  # as sent: leaf first, then its issuer
    data = served.to_dict()
    assert data["not_after"].startswith(str(cert.not_valid_after_utc.year))
    assert "chain_der" not in data and [c["subject"] for c in data["chain"]] == [c.subject.rfc4514_string() for c in chain]
    assert data["chain"][0]["issuer"] == served.issuer
    with pytest.raises(AttributeError):
        served.serial = 1  # type: ignore[misc]  # frozen


@pytest.mark.timeout(30)
def test_verified_with_ca_bundle(two_sites, pki):
    ca_pem = pki["ca"].cert_pem.bytes().decode()
    res = probe_served_certificate(HOST, two_sites, "api.internal.example", ca_bundle_pem=ca_pem)
    assert (res.verified, res.verify_error) == (True, None)
    other_ca = trustme.CA().cert_pem.bytes().decode()
    res = probe_served_certificate(HOST, two_sites, "api.internal.example", ca_bundle_pem=other_ca)
    assert res.verified is False and res.verify_error
    # SNI names no site: the default (web) certificate does not cover the name
    res = probe_served_certificate(HOST, two_sites, "nope.example", ca_bundle_pem=ca_pem)
    assert (res.verified, res.serial) == (False, serial_of(pki["web"]))


# --------------------------------------------------------------------------- S4 outcomes


@pytest.mark.timeout(30)
def test_verify_served_serial_match_and_mismatch_are_results(two_sites, pki):
    web, api = serial_of(pki["web"]), serial_of(pki["api"])
    ok = verify_served_serial(HOST, two_sites, "web.internal.example", web)
    assert (ok.matches, ok.expected_serial, ok.served_serial) == (True, web, web)
    bad = verify_served_serial(HOST, two_sites, "web.internal.example", api)
    assert (bad.matches, bad.expected_serial, bad.served_serial) == (False, api, web)
    assert bad.served.serial == web
    assert bad.to_dict()["served_serial"] == format_serial_hex(web)


def test_refused_is_target_unreachable():
    (port,) = free_ports(1)
    with pytest.raises(TargetUnreachable) as err:
        verify_served_serial(HOST, port, "web.internal.example", 1, timeout=2)
    assert err.value.reason == "refused"
    assert f"{HOST}:{port}" in str(err.value) and "refused" in str(err.value)
    assert not isinstance(err.value, TlsHandshakeFailed)


def test_dns_failure_and_connect_timeout_are_target_unreachable(monkeypatch):
    def gai(*_a, **_k):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(probe.socket, "create_connection", gai)
    with pytest.raises(TargetUnreachable) as err:
        probe_served_certificate("web.nowhere.invalid", 443, "web.nowhere.invalid")
    assert err.value.reason == "dns" and "web.nowhere.invalid:443" in str(err.value)

    def slow(*_a, **_k):
        raise TimeoutError("timed out")

    monkeypatch.setattr(probe.socket, "create_connection", slow)
    with pytest.raises(TargetUnreachable) as err:
        probe_served_certificate("10.0.0.1", 8443, None, timeout=0.5)
    assert err.value.reason == "timeout" and "10.0.0.1:8443" in str(err.value)


@pytest.mark.timeout(30)
def test_not_tls_is_handshake_failure(raw_server):
    srv = raw_server("garbage")
    with pytest.raises(TlsHandshakeFailed) as err:
        verify_served_serial(HOST, srv.port, "web.internal.example", 1, timeout=2)
    assert f"{HOST}:{srv.port}" in str(err.value)
    assert not isinstance(err.value, TargetUnreachable)
    assert isinstance(err.value, ProbeError)


@pytest.mark.timeout(30)
def test_silent_server_is_handshake_timeout(raw_server):
    srv = raw_server("silent")
    with pytest.raises(TlsHandshakeFailed) as err:
        probe_served_certificate(HOST, srv.port, "web.internal.example", timeout=0.5)
    assert err.value.reason == "timeout"


@pytest.mark.timeout(30)
def test_reset_before_handshake_is_an_outcome_of_its_own(raw_server):
    srv = raw_server("reset")
    with pytest.raises(ProbeError) as err:
        probe_served_certificate(HOST, srv.port, "web.internal.example", timeout=2)
    # an RST is "could not connect"; a clean close mid-handshake is a TLS failure
    assert (type(err.value), err.value.reason) in ((TargetUnreachable, "reset"), (TlsHandshakeFailed, "tls"))


# --------------------------------------------------------------------------- serial format


@pytest.mark.parametrize(
    ("serial", "text"),
    [(0, "00"), (1, "01"), (0x80, "80"), (0x100, "01:00"), (0x0804E5, "08:04:e5"),
     (0x0FAC0000000000000000000000000000000001FF,
      "0f:ac:00:00:00:00:00:00:00:00:00:00:00:00:00:00:00:00:01:ff")],
)
def test_format_serial_hex(serial, text):
    assert format_serial_hex(serial) == text


def test_parameters_are_checked():
    with pytest.raises(ValueError):
        probe_served_certificate(HOST, 0, None)
    with pytest.raises(TypeError):
        verify_served_serial(HOST, 443, None, "08:04:e5")  # type: ignore[arg-type]


# --------------------------------------------------------------------------- the served chain


class _Cert:
    """What Python 3.12's private _ssl chain returns: an object with public_bytes(encoding)."""

    def __init__(self, der: bytes) -> None:
        self.der = der

    def public_bytes(self, encoding: int) -> bytes:
        assert encoding == _ssl.ENCODING_DER
        return self.der


def test_served_chain_reads_the_public_api_the_private_one_or_says_why_not():
    public = types.SimpleNamespace(get_unverified_chain=lambda: [b"leaf", b"int"])  # Python >= 3.13: DER bytes
    assert served_chain(public) == ((b"leaf", b"int"), None)  # type: ignore[arg-type]
    private = types.SimpleNamespace(_sslobj=types.SimpleNamespace(get_unverified_chain=lambda: [_Cert(b"leaf")]))
    assert served_chain(private) == ((b"leaf",), None)  # type: ignore[arg-type]
    neither = types.SimpleNamespace(_sslobj=None)
    chain, why = served_chain(neither)  # type: ignore[arg-type]
    assert chain == () and why and "cannot read the peer's certificate chain" in why
    empty = types.SimpleNamespace(get_unverified_chain=lambda: None)
    assert served_chain(empty)[1] == "the TLS library returned no peer certificate chain"  # type: ignore[arg-type]
