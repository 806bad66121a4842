"""installer/install_bundle.py: a keystore (or encrypted key) whose password is kept in
Secrets Manager (``passwordSecret``). ExportCertificate stages it in the rollout's bundle
("passwords"); the node reads only that bundle, never the password secret (issue 11).

The fake `aws` serves the staged bundle (SECRET_ARN) and refuses every other secret id; a fake
`openssl` first on PATH logs its argv and runs the real one, so the tests see that the password
is never an argument. The keystore is opened with the
JDK's keytool and the password from the secret.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import stat
import subprocess
import sys

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from rollout_core.probe import format_serial_hex

from tests.unit.test_installer import INSTALLER, INSTALLER_PYTHON, PK, SECRET_ARN, node, pki, py  # noqa: F401

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is not installed")
needs_keytool = pytest.mark.skipif(shutil.which("keytool") is None, reason="no JDK keytool on this machine")

PASSWORD_SECRET = "cert-rollout/keystores/web"
PASSWORD = "Kx9-secret+Store/Pass=2024.tomcat"  # 16+ characters: redacted as a line and by windows
ROTATED = "Rotated-Keystore-Password-0042"

FAKE_AWS = """#!{python}
import json, os, sys
args = sys.argv[1:]
with open(os.environ["FAKE_AWS_ARGS"], "a") as f:
    f.write(json.dumps(args) + "\\n")
secret_id = args[args.index("--secret-id") + 1]
if secret_id == os.environ["FAKE_BUNDLE_ARN"]:
    sys.stdout.write(open(os.environ["FAKE_SECRET_FILE"]).read() + "\\n")
    sys.exit(0)
sys.stderr.write("An error occurred (AccessDeniedException) when calling the GetSecretValue "
                 "operation: the node policy allows the staged bundles only.\\n")
sys.exit(254)
"""

FAKE_OPENSSL = """#!/bin/sh
printf '%s\\n' "$*" >> "$FAKE_OPENSSL_ARGS"
exec {openssl} "$@"
"""


class SecretNode:
    """The test_installer Node, with the passwords staged in its bundle and an `openssl` that
    logs its arguments."""

    def __init__(self, node) -> None:
        self.node = node
        self.ssl = node.ssl
        aws = node.bin / "aws"
        aws.write_text(FAKE_AWS.format(python=sys.executable))
        aws.chmod(0o755)
        openssl = node.bin / "openssl"
        openssl.write_text(FAKE_OPENSSL.format(openssl=shutil.which("openssl")))
        openssl.chmod(0o755)
        self.openssl_args = node.tmp / "openssl-args.log"
        self.served: set[str] = set()  # every password ever served: none may be printed
        self.put_passwords({PASSWORD_SECRET: PASSWORD})

    def put_passwords(self, passwords: dict[str, str], errors: dict[str, str] | None = None) -> None:
        """Stage ``passwords`` (and ExportCertificate's ``errors``) in the node's bundle."""
        self.served.update(passwords.values())
        bundle = json.loads(self.node.secret_file.read_text())
        bundle["passwords"], bundle["passwordErrors"] = passwords, errors or {}
        self.node.secret_file.write_text(json.dumps(bundle))

    def run(self, action: str, files: list[dict], test: list[str] | None = None, expected_serial: str = ""):
        target = {"targetId": "web-1", "server": "java", "files": files, "testCommand": test,
                  "reloadCommand": None}
        env = {
            "PATH": f"{self.node.bin}{os.pathsep}{os.environ.get('PATH', '')}",
            "HOME": str(self.node.tmp),
            "CERT_ROLLOUT_FETCH": "aws-cli",  # the fake aws on PATH
            "CERT_ROLLOUT_STATE_DIR": str(self.node.state),
            "CERT_ROLLOUT_NODE_POLICY": str(self.node.allow(target)),
            "FAKE_SECRET_FILE": str(self.node.secret_file),
            "FAKE_AWS_ARGS": str(self.node.aws_args),
            "FAKE_BUNDLE_ARN": SECRET_ARN,
            "FAKE_OPENSSL_ARGS": str(self.openssl_args),
            "ROLLOUT_ACTION": action,
            "ROLLOUT_SECRET_ARN": SECRET_ARN,
            "ROLLOUT_SECRET_VERSION_ID": "a1b2c3d4-5678-90ab-cdef-EXAMPLE11111",
            "ROLLOUT_TARGET": base64.b64encode(json.dumps(target).encode()).decode(),
            "ROLLOUT_EXPECTED_SERIAL": expected_serial,
        }
        proc = subprocess.run([INSTALLER_PYTHON, str(INSTALLER)], env=env, capture_output=True, text=True,
                              timeout=60)
        lines = proc.stdout.splitlines()
        assert len(lines) == 1 and lines[0].startswith("ROLLOUT_RESULT "), proc.stdout + proc.stderr
        for text in (proc.stdout, proc.stderr):  # no key material, no password, anywhere
            assert PK not in text
            for secret in self.served:
                for part in [secret] + secret.splitlines():
                    if len(part) >= 6:
                        assert part not in text
        result = json.loads(lines[0][len("ROLLOUT_RESULT "):])
        assert result["exitCode"] == proc.returncode
        return proc.returncode, result

    def aws_calls(self) -> list[list[str]]:
        return [json.loads(ln) for ln in self.node.aws_args.read_text().splitlines()]

    def openssl_argv(self) -> str:
        return self.openssl_args.read_text() if self.openssl_args.exists() else ""


@pytest.fixture
def snode(node, pki) -> SecretNode:
    node.put_secret(pki["new"])
    return SecretNode(node)


def keystore(snode: SecretNode, **extra) -> list[dict]:
    return [{"path": str(snode.ssl / "keystore.p12"), "content": "pkcs12", "alias": "tomcat",
             "passwordSecret": PASSWORD_SECRET, **extra}]


def keytool_list(path, password: str) -> subprocess.CompletedProcess:
    return subprocess.run(["keytool", "-list", "-v", "-keystore", str(path), "-storetype", "PKCS12",
                           "-storepass", password], capture_output=True, text=True, timeout=60)


def sha256(pem: str) -> str:
    digest = x509.load_pem_x509_certificate(pem.encode()).fingerprint(hashes.SHA256())
    return ":".join(f"{b:02X}" for b in digest)


def assert_keystore_holds(path, password: str, bundle) -> None:
    """keytool opens it with ``password``: one PrivateKeyEntry "tomcat" whose chain is the
    bundle's leaf, intermediate and root, in that order."""
    out = keytool_list(path, password)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "Your keystore contains 1 entry" in out.stdout
    assert "Alias name: tomcat" in out.stdout and "PrivateKeyEntry" in out.stdout
    assert "Certificate chain length: 3" in out.stdout
    fingerprints = re.findall(r"SHA256: ([0-9A-F:]{95})", out.stdout)
    assert fingerprints == [sha256(pem) for pem in [bundle.leaf_pem] + bundle.chain_pems]
    assert f"Serial number: {bundle.serial:x}" in out.stdout


# --------------------------------------------------------------------------- pkcs12


@needs_keytool
def test_pkcs12_password_from_secrets_manager_opens_with_keytool(snode, pki):
    pw = snode.ssl / "keystore.pass"
    code, result = snode.run("install", keystore(snode, passwordFile=str(pw)),
                             expected_serial=format_serial_hex(pki["new"].serial))
    assert code == 0, result
    path = snode.ssl / "keystore.p12"
    assert_keystore_holds(path, PASSWORD, pki["new"])
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    # the password file the server's config names: the secret's password, 0600
    assert pw.read_text() == PASSWORD + "\n" and stat.S_IMODE(pw.stat().st_mode) == 0o600
    assert str(pw) in result["files"]
    # the node read the staged bundle only, never the password secret
    calls = snode.aws_calls()
    assert [c[c.index("--secret-id") + 1] for c in calls] == [SECRET_ARN]
    # the password is never an argument of openssl (it goes through a pipe)
    assert "pkcs12 -export" in snode.openssl_argv() and PASSWORD not in snode.openssl_argv()
    assert PASSWORD not in json.dumps(result)


@needs_keytool
def test_pkcs12_secret_without_password_file_writes_no_password_file(snode, pki):
    code, result = snode.run("install", keystore(snode))
    assert code == 0, result
    assert_keystore_holds(snode.ssl / "keystore.p12", PASSWORD, pki["new"])
    assert sorted(p.name for p in snode.ssl.iterdir()) == ["keystore.p12"]
    assert result["files"] == [str(snode.ssl / "keystore.p12")]


@needs_keytool
def test_rotated_secret_rekeys_the_keystore_and_rollback_restores_both(snode, pki):
    pw = snode.ssl / "keystore.pass"
    files = keystore(snode, passwordFile=str(pw))
    assert snode.run("install", files)[0] == 0
    snode.node.put_secret(pki["old"])
    snode.put_passwords({PASSWORD_SECRET: ROTATED})
    code, result = snode.run("install", files)
    assert code == 0, result
    assert_keystore_holds(snode.ssl / "keystore.p12", ROTATED, pki["old"])
    assert pw.read_text() == ROTATED + "\n"
    assert keytool_list(snode.ssl / "keystore.p12", PASSWORD).returncode != 0
    # keystore and its password file go back together
    code, result = snode.run("rollback", files)
    assert code == 0, result
    assert_keystore_holds(snode.ssl / "keystore.p12", PASSWORD, pki["new"])
    assert pw.read_text() == PASSWORD + "\n"


@needs_keytool
def test_a_test_command_that_prints_the_password_is_redacted(snode, pki):
    pw = snode.ssl / "keystore.pass"
    leak = py(f"import sys; sys.stderr.write('pw=' + open({str(pw)!r}).read()); sys.exit(1)")
    code, result = snode.run("install", keystore(snode, passwordFile=str(pw)), test=leak)
    assert code == 10, result
    assert "[redacted]" in result["serverOutput"] and PASSWORD not in result["serverOutput"]
    assert not (snode.ssl / "keystore.p12").exists() and not pw.exists()  # restored: there was none


# --------------------------------------------------------------------------- encrypted-key


def test_encrypted_key_password_from_secrets_manager(snode, pki):
    key, pw = snode.ssl / "privkey.enc.pem", snode.ssl / "privkey.pass"
    files = [{"path": str(key), "content": "encrypted-key", "passwordSecret": PASSWORD_SECRET,
              "passwordFile": str(pw)}]
    code, result = snode.run("install", files)
    assert code == 0, result
    assert pw.read_text() == PASSWORD + "\n" and stat.S_IMODE(pw.stat().st_mode) == 0o600
    loaded = serialization.load_pem_private_key(key.read_bytes(), PASSWORD.encode())
    expected = serialization.load_pem_private_key(pki["new"].key_pem.encode(), None)
    assert loaded.private_numbers() == expected.private_numbers()
    assert PASSWORD not in snode.openssl_argv()


# --------------------------------------------------------------------------- failures


@pytest.mark.parametrize(
    ("stored", "errors", "rule"),
    [
        (None, None, "ExportCertificate did not stage it"),
        (None, {PASSWORD_SECRET: "ExportCertificate could not read it: AccessDeniedException"},
         "AccessDeniedException"),
        ("", None, "empty"),
        ("first-half-of-pw\nsecond-half-of-pw", None, "newline"),
        ("with-a-nul\x00-inside-it", None, "NUL"),
    ],
)
def test_a_bad_or_unstaged_password_fails_the_fetch(snode, stored, errors, rule):
    snode.put_passwords({} if stored is None else {PASSWORD_SECRET: stored}, errors)
    pw = snode.ssl / "keystore.pass"
    code, result = snode.run("install", keystore(snode, passwordFile=str(pw)))
    assert (code, result["stage"], result["status"]) == (13, "fetch", "failed"), result
    assert PASSWORD_SECRET in result["error"] and rule in result["error"]
    assert list(snode.ssl.iterdir()) == []  # nothing written


@pytest.mark.parametrize(
    ("spec", "rule"),
    [
        ({"content": "fullchain", "passwordSecret": PASSWORD_SECRET}, "passwordSecret"),
        ({"content": "pkcs12", "passwordSecret": "cert-rollout/../other"}, "passwordSecret"),
        ({"content": "pkcs12", "passwordSecret": "name with space"}, "passwordSecret"),
        ({"content": "pkcs12", "passwordSecret": "--endpoint-url=http://x"}, "passwordSecret"),
        ({"content": "pkcs12", "passwordSecret": "x" * 513}, "passwordSecret"),
        ({"content": "pkcs12", "passwordSecret": ""}, "passwordSecret"),
    ],
)
def test_bad_password_secret_settings_are_refused_before_any_fetch(snode, spec, rule):
    code, result = snode.run("install", [{"path": str(snode.ssl / "f"), **spec}])
    assert code == 2 and rule in result["error"], result
    assert not snode.node.aws_args.exists()
