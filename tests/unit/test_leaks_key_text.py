"""The leak check finds text-form private keys (issue 11, item 5): a registered key printed by
``openssl pkey -text -noout`` (the real binary), planted on each surface the check scans and in
a file left in a node's working directory, is found there by value; any text-form private key
block is found by its shape; the same text after redaction and public certificate text are not
findings (every clean e2e run depends on that)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from boto3.dynamodb.types import TypeSerializer
from rollout_core.domain.key_text import redact_key_text

from cert_rollout.localcloud.leaks import SecretRegistry, node_files, scan

SURFACES = ("history", "logs", "sns", "ssm", "dynamodb", "report")


def _openssl(*args: str, data: bytes | None = None) -> bytes:
    openssl = shutil.which("openssl")
    assert openssl, "openssl not installed"
    return subprocess.run([openssl, *args], input=data, capture_output=True, check=True, timeout=60).stdout


@pytest.fixture(scope="module")
def rsa() -> tuple[bytes, str]:
    pem = _openssl("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048")
    return pem, _openssl("pkey", "-text", "-noout", data=pem).decode()


@pytest.fixture(scope="module")
def ec() -> tuple[bytes, str]:
    pem = _openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256")
    return pem, _openssl("pkey", "-text", "-noout", data=pem).decode()


def _as_surface(surface: str, text: str) -> str:
    """How the text reaches that surface: JSON in history events and reports (escaped twice in
    a history event's output string), a raw log line, SNS / DynamoDB JSON, raw SSM output."""
    if surface == "history":
        return json.dumps({"type": "TaskSucceeded", "output": json.dumps({"detail": text})})
    if surface in ("report", "sns", "dynamodb"):
        return json.dumps({"detail": text})
    return text


@pytest.mark.parametrize("surface", SURFACES)
def test_a_registered_key_in_text_form_is_found_on_every_surface(surface: str, rsa: tuple[bytes, str],
                                                                 ec: tuple[bytes, str]) -> None:
    registry = SecretRegistry(key_pems=[rsa[0], ec[0]])
    for number, (_, text) in enumerate((rsa, ec), 1):
        findings = scan({surface: [("planted", _as_surface(surface, "test output:\n" + text))]}, registry)
        what = {f.what for f in findings}
        assert "text-form private key block" in what, findings
        assert any(w.startswith(f"private key #{number} (text form, ") for w in what), findings
        assert {f.surface for f in findings} == {surface}


def test_one_prime_without_its_label_or_colons_is_found_by_value(rsa: tuple[bytes, str]) -> None:
    lines = rsa[1].splitlines()
    start = lines.index("prime1:") + 1
    block = [ln.strip() for ln in lines[start:start + 3]]  # 45 bytes of prime1, no label
    registry = SecretRegistry(key_pems=[rsa[0]])
    for planted in ("\n".join(block), "".join(block).replace(":", "").upper()):  # wrapped / asn1parse-like
        what = {f.what for f in scan({"ssm": [("planted", planted)]}, registry)}
        assert "private key #1 (text form, prime1)" in what, planted


def test_another_keys_text_is_found_by_its_shape_only(rsa: tuple[bytes, str], ec: tuple[bytes, str]) -> None:
    findings = scan({"logs": [("line 1", ec[1])]}, SecretRegistry(key_pems=[rsa[0]]))
    assert [f.what for f in findings] == ["text-form private key block"]


def test_redacted_key_text_and_public_certificate_text_are_clean(rsa: tuple[bytes, str], ec: tuple[bytes, str],
                                                                 tmp_path: Path) -> None:
    key_file = tmp_path / "key.pem"
    key_file.write_bytes(ec[0])
    cert = _openssl("req", "-x509", "-new", "-key", str(key_file), "-subj", "/CN=web.internal.example", "-days", "1")
    public = _openssl("x509", "-text", "-noout", data=cert).decode() + _openssl(
        "x509", "-noout", "-fingerprint", "-sha256", data=cert).decode()
    surfaces = {"ssm": [("redacted rsa", redact_key_text(rsa[1])), ("redacted ec", redact_key_text(ec[1])),
                        ("certificate", public)]}
    assert scan(surfaces, SecretRegistry(key_pems=[rsa[0], ec[0]])) == []


def test_key_text_left_in_a_nodes_working_directory_is_found(ec: tuple[bytes, str], tmp_path: Path) -> None:
    target, workdir = tmp_path / "target", tmp_path / "node-1"
    (workdir / "state" / "web-1").mkdir(parents=True)
    target.mkdir()
    (target / "fullchain.pem").write_text("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
    ser = TypeSerializer()
    item = {"targetId": "web-1", "instanceId": "mi-0123456789abcdef0",
            "files": [{"path": str(target / "fullchain.pem"), "content": "fullchain"}]}
    inventory = {"inventory": [{k: ser.serialize(v) for k, v in item.items()}]}
    registry = SecretRegistry(key_pems=[ec[0]])
    assert scan({"node_files": node_files(inventory, [str(workdir)])}, registry) == []
    (workdir / "key-text.txt").write_text(ec[1])
    findings = scan({"node_files": node_files(inventory, [str(workdir)])}, registry)
    assert {f.where for f in findings} == {f"node file {workdir / 'key-text.txt'}"}
    assert {f.what for f in findings} == {"text-form private key block", "private key #1 (text form, priv)"}
