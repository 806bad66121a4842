"""installer/install_bundle.py: the combined PEM order, the encrypted key + password file
and the PKCS#12 keystore (made with the node's openssl, opened with a JDK keytool)."""

from __future__ import annotations

import shutil
import stat
import subprocess

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs12
from rollout_core.probe import format_serial_hex

from tests.unit.test_installer import FAIL_CMD, PK, blocks, node, pki, py  # noqa: F401 - fixtures

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is not installed")


def _public(pem: bytes, password: bytes | None = None):
    key = serialization.load_pem_private_key(pem, password)
    return key.public_key().public_bytes(serialization.Encoding.DER,
                                         serialization.PublicFormat.SubjectPublicKeyInfo)


def test_combined_is_leaf_then_chain_in_issuer_order_then_key(node, pki):
    node.put_secret(pki["new"])
    path = node.ssl / "haproxy.pem"
    code, _ = node.run("install", node.target([{"path": str(path), "content": "combined"}]))
    assert code == 0
    text = path.read_text()
    assert blocks(text) == ["CERTIFICATE", "CERTIFICATE", "CERTIFICATE", PK]
    certs = x509.load_pem_x509_certificates(text.encode())
    assert certs[0].serial_number == pki["new"].serial
    for child, issuer in zip(certs, certs[1:], strict=False):  # each signed by the next
        child.verify_directly_issued_by(issuer)
    assert _public(text[text.index("-----BEGIN " + PK):].encode()) == certs[0].public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def test_encrypted_key_with_random_password_file(node, pki):
    node.put_secret(pki["new"])
    key, pw = node.ssl / "privkey.enc.pem", node.ssl / "privkey.pass"
    files = [{"path": str(node.ssl / "fullchain.pem"), "content": "fullchain"},
             {"path": str(key), "content": "encrypted-key", "passwordFile": str(pw)}]
    code, result = node.run("install", node.target(files))
    assert code == 0, result
    assert str(pw) in result["files"]
    text = key.read_text()
    assert blocks(text) == ["ENCRYPTED " + PK]
    password = pw.read_text().strip()
    assert len(password) == 48 and pw.read_text().endswith("\n")
    assert stat.S_IMODE(pw.stat().st_mode) == 0o600 and stat.S_IMODE(key.stat().st_mode) == 0o600
    assert _public(text.encode(), password.encode()) == _public(pki["new"].key_pem.encode())
    # openssl (what nginx uses with ssl_password_file) opens it with the file
    subprocess.run(["openssl", "pkey", "-in", str(key), "-passin", f"file:{pw}", "-noout"], check=True)
    # PBES2 with AES-256-CBC
    asn1 = subprocess.run(["openssl", "asn1parse", "-in", str(key)], capture_output=True, text=True).stdout
    assert "PBES2" in asn1 and "aes-256-cbc" in asn1
    # a second install draws a new password; key and password are backed up together
    node.put_secret(pki["old"])
    code, _ = node.run("install", node.target(files))
    assert code == 0
    assert pw.read_text().strip() != password
    assert node.backup()[str(pw)].decode().strip() == password
    code, result = node.run("rollback", node.target(files))
    assert code == 0, result
    assert pw.read_text().strip() == password
    assert _public(key.read_bytes(), password.encode()) == _public(pki["new"].key_pem.encode())


def test_encrypted_key_test_failure_restores_key_and_password(node, pki):
    node.put_secret(pki["new"])
    key = node.ssl / "privkey.pem"
    files = [{"path": str(key), "content": "encrypted-key"}]  # password file defaults to <path>.pass
    assert node.run("install", node.target(files))[0] == 0
    pw = node.ssl / "privkey.pem.pass"
    before = (key.read_bytes(), pw.read_bytes())
    node.put_secret(pki["old"])
    code, result = node.run("install", node.target(files, test=py(FAIL_CMD.format(msg="emerg\n", code=1))))
    assert code == 10, result
    assert (key.read_bytes(), pw.read_bytes()) == before


def test_encrypted_key_password_is_never_reported(node, pki):
    node.put_secret(pki["new"])
    key, pw = node.ssl / "k.pem", node.ssl / "k.pass"
    leak = py(f"import sys; sys.stderr.write(open({str(pw)!r}).read()); sys.exit(1)")
    code, result = node.run("install", node.target([{"path": str(key), "content": "encrypted-key",
                                                     "passwordFile": str(pw)}], test=leak))
    assert code == 10
    assert "[redacted]" in result["serverOutput"]


def _keystore_files(node, password_file=None):
    spec = {"path": str(node.ssl / "keystore.p12"), "content": "pkcs12", "alias": "tomcat"}
    if password_file:
        spec["passwordFile"] = str(password_file)
    return [spec]


def test_pkcs12_keystore_with_operator_password_file(node, pki):
    node.put_secret(pki["new"])
    pw = node.ssl / "keystore.password"
    pw.write_text("changeit-operator\n")
    code, result = node.run("install", node.target(_keystore_files(node, pw)),
                            expected_serial=format_serial_hex(pki["new"].serial))
    assert code == 0, result
    path = node.ssl / "keystore.p12"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert pw.read_text() == "changeit-operator\n"  # the operator's password is kept
    key, cert, extra = pkcs12.load_key_and_certificates(path.read_bytes(), b"changeit-operator")
    assert cert.serial_number == pki["new"].serial
    assert len(extra) == len(pki["new"].chain_pems)
    assert _public(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                     serialization.NoEncryption())) == _public(pki["new"].key_pem.encode())
    assert "changeit-operator" not in result["serverOutput"] + str(result["error"])


@pytest.mark.skipif(shutil.which("keytool") is None, reason="no JDK keytool on this machine")
def test_pkcs12_keystore_opens_with_jdk_keytool(node, pki):
    node.put_secret(pki["new"])
    code, result = node.run("install", node.target(_keystore_files(node)))  # no password file yet
    assert code == 0, result
    pw = node.ssl / "keystore.p12.pass"
    assert stat.S_IMODE(pw.stat().st_mode) == 0o600
    password = pw.read_text().strip()
    out = subprocess.run(["keytool", "-list", "-v", "-keystore", str(node.ssl / "keystore.p12"),
                          "-storetype", "PKCS12", "-storepass", password],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "tomcat" in out.stdout and "PrivateKeyEntry" in out.stdout
    assert f"Serial number: {pki['new'].serial:x}" in out.stdout
    # a re-install keeps the created password (the server's config refers to it)
    node.put_secret(pki["old"])
    assert node.run("install", node.target(_keystore_files(node)))[0] == 0
    assert pw.read_text().strip() == password


def test_unknown_content_and_relative_password_file_are_refused(node, pki):
    node.put_secret(pki["new"])
    code, result = node.run("install", node.target([{"path": str(node.ssl / "k"), "content": "jks"}]))
    assert code == 2 and "pkcs12" in result["error"]
    code, result = node.run("install", node.target([{"path": str(node.ssl / "k"), "content": "encrypted-key",
                                                     "passwordFile": "k.pass"}]))
    assert code == 2 and "passwordFile" in result["error"]
