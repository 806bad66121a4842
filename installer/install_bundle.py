#!/usr/bin/env python3
"""Install (or roll back) a certificate bundle on this managed node.

Run ON THE MANAGED NODE by the SSM Run Command document documents/install-bundle.ssm.yaml,
which downloads this file (the InstallerLayer's zip), checks its SHA-256 and runs it with
its parameters as environment variables. Standard library only (python3 >= 3.8). It reads the
staged key material from Secrets Manager with the node's own identity and needs no AWS CLI:
botocore when this python can import it, else its own standard-library client for the one call
(GetSecretValue, SigV4), the AWS CLI only as a fallback (CERT_ROLLOUT_FETCH below; the "fetch"
section gives the order, the credential sources and the endpoint).

Parameters (environment variables, exported by the SSM document):
    ROLLOUT_ACTION            install | rollback | check (the read-only preflight: "check" below) |
                              probe (this node probes another target: do_probe, "verifyFrom: node")
    ROLLOUT_SECRET_ARN        Secrets Manager secret holding the bundle (install)
    ROLLOUT_SECRET_VERSION_ID version id of that secret (install; empty = AWSCURRENT)
    ROLLOUT_TARGET            base64 of the target config JSON (below)
    ROLLOUT_EXPECTED_SERIAL   canonical colon hex serial of the new certificate; when
                              set, a bundle whose leaf has another serial is refused
    ROLLOUT_COMMAND_TIMEOUT   seconds for the fetch and every subprocess (test, reload): an integer
                              1..86400; default 60
    ROLLOUT_EXECUTION_TIMEOUT seconds the document lets the whole script run, and
    ROLLOUT_STARTED_AT        when it started (epoch seconds): both set, or both unset (no
                              deadline). Before the files are swapped in, at least the time
                              to test, reload and restore after a failed reload must be left
                              (1 x ROLLOUT_COMMAND_TIMEOUT with a test command, 2 x with a
                              reload command, plus 1 s); otherwise the install stops at the
                              write stage (exit 12), nothing changed. The document sets
                              ROLLOUT_COMMAND_TIMEOUT to a fifth of the execution timeout
                              (rollout_core/domain/command_timeouts.py).

Target config JSON:
    {"targetId": "web-1", "server": "embedded|nginx|haproxy|apache|generic",
     "files": [{"path": "/etc/ssl/web/fullchain.pem",
                "content": "fullchain|leaf|chain|key|combined|encrypted-key|pkcs12",
                "mode": "0644", "owner": null, "group": null,
                "passwordFile": "/etc/ssl/web/key.pass", "alias": "web",
                "passwordSecret": "cert-rollout/keystores/web"}],
     "testCommand": ["argv", ...] or null, "reloadCommand": ["argv", ...] or null,
     "verify": {"host": "10.0.1.15", "port": 443, "sni": "web.example.internal", "probes": 3}}
    verify: only for a target with verifyFrom "node" (the node probes it: "verifyFrom: node" below).
    content: fullchain = leaf + chain; leaf; chain; key = plain private key;
    combined = leaf + chain + key in one PEM (HAProxy); encrypted-key and pkcs12 below.
    Default mode: 0600 for key, combined, encrypted-key and pkcs12 files, 0644 otherwise.
    mode is an octal string ("0640") or an integer. Key files (key, combined, encrypted-key,
    pkcs12) must not be readable by others: mode & 0o7137 must be 0 (0600, 0640, 0400,
    0440); no file may have the setuid, setgid or sticky bit. Such a target is refused
    (exit 2) before anything is fetched or written; so is a file path that is a directory
    (exit 12).

    encrypted-key: the plain key re-encrypted on the node as PKCS#8 (PBES2, AES-256-CBC)
        by ``openssl pkcs8 -topk8 -v2 aes-256-cbc -passout file:PASSWORDFILE`` (the node
        has no Python cryptography package, so the system openssl does it; the key goes
        through its stdin, never a plain file). Every install draws a NEW random password
        (48 hex characters) and writes it to passwordFile (default "<path>.pass"), mode
        0600, same owner/group as the key. The password file is installed, backed up and
        restored together with the key (e.g. nginx ``ssl_password_file``). With
        passwordSecret, the password is the secret's instead (below).
    pkcs12: a PKCS#12 keystore (leaf + chain + key, friendly name ``alias``, default the
        targetId) made by ``openssl pkcs12 -export -passout file:PASSWORDFILE`` (OpenSSL 3
        defaults: AES-256-CBC + PBKDF2, opened by JDK keytool >= 8u301/11.0.12/17:
        ``keytool -list -keystore F -storetype PKCS12 -storepass P``). passwordFile
        (default "<path>.pass") holds the keystore password, first line; the operator
        keeps it (e.g. Secrets Manager -> file, or the server's own config); when it does
        not exist the installer creates it once with a random password, mode 0600, and
        keeps it (it is not rolled back).
    passwordSecret (pkcs12 and encrypted-key): a Secrets Manager secret name or ARN (1-512 of
        A-Za-z0-9/_+=.@:-, no "..", not starting with "-") whose SecretString is the password
        itself, under "<SecretPrefix>/keystores/" (e.g. "cert-rollout/keystores/web").
        ExportCertificate reads it with its own role and stages it in the rollout's bundle
        ("passwords", keyed by the passwordSecret as written); the node never reads the
        secret itself (its policy allows only the staged bundles). A password that is not
        staged (ExportCertificate's reason in "passwordErrors"), empty, or with NUL, CR or LF
        fails the install (exit 13, naming the secret, never the value). The password goes
        to openssl through a pipe (``-passout fd:N``), never an argument, and is written to
        passwordFile only when one is given (0600, installed, backed up and restored with
        the keystore or key); without passwordFile no password file is written.

Secret string (JSON): {"certificate": PEM, "chain": PEM, "privateKey": PEM plain PKCS#8,
"serial": "...", "passwords": {passwordSecret: password}, "passwordErrors": {passwordSecret: why}}.

Node environment (set by the node owner / SSM agent, never by a document parameter, so
never by the inventory):
    CERT_ROLLOUT_STATE_DIR    the installer's state directory (default /var/lib/cert-rollout);
                              per target <dir>/<targetId>/ holds the lock, the journal of a
                              running change and the one backup generation (mode 0700, owned by
                              the installer's user; another owner or group/other write: exit 18)
    CERT_ROLLOUT_TEST_HOOKS, CERT_ROLLOUT_FAULT   test hook (tests, local cloud): "crash-<point>"
                              SIGKILLs the installer there; ignored unless TEST_HOOKS=1 and the
                              state directory is set explicitly.
    CERT_ROLLOUT_NODE_POLICY  the node policy file (default /etc/cert-rollout/node-policy.json;
                              none: DEFAULT_NODE_POLICY): the directories files may be written in,
                              the test and reload commands that may run, the maximum modes.
                              Checked before the lock, the fetch or any file ("node policy" below).
    CERT_ROLLOUT_FETCH        how the bundle is fetched: auto (default: botocore when importable,
                              else the standard-library client; the AWS CLI when that client finds
                              no credentials and ``aws`` is on PATH), botocore, stdlib or aws-cli.
Document parameter:
    ROLLOUT_ALLOW_OLDER       empty, or the one serial (canonical colon hex) an operator asked
                              for by name: only it may replace a NEWER certificate of the same
                              lineage (serial guard below).

Every command first checks the target against the node policy (CERT_ROLLOUT_NODE_POLICY above;
exit 19 node-policy-denied or 21 node-policy-invalid, before anything else) and the programs its
settings need (exit 22 openssl-missing, command-missing; "prerequisites" below), then takes the target's lock (fcntl.flock, waiting at most one command timeout
and never into the time needed to restore; held: exit 16 lock-timeout, nothing changed), then
recovers: a journal left by a killed command is rolled back to the complete old set (its staged
files removed), then the test and reload commands run when the restored pair checks.
install: fetch -> the leaf's serial is the expected one -> the bundle's key matches its leaf
(by public key; exit 12 key-mismatch) -> serial guard: a leaf with the same issuer and subject
as the installed one and an EARLIER notBefore is refused (exit 17 older-than-installed; ACM's
serials are random, so notBefore decides, not the serial's value) unless ROLLOUT_ALLOW_OLDER
names it -> build every file in memory -> journal with the pre-image of every file (0600,
fsynced) -> write "<path>.rollout-<txn>.new" beside each file (fsynced) -> rename each over ->
pair check of the files on disk (a mismatch restores, exit 12 key-mismatch) -> testCommand ->
reloadCommand -> commit: the journal becomes the one backup generation (backup.json, 0600)
in one rename. A failed test restores every file (exit 10); a failed reload restores, reloads
again best effort (exit 11). The same bundle again keeps the existing backup.
rollback: with ROLLOUT_EXPECTED_SERIAL (the serial whose install is rolled back): an
interrupted install of it that the recovery just reverted IS the rollback; a serial that is not
installed leaves the files as they are ("nothingToRollBack"). Else the backup is pair-checked
(a mismatched backup is refused, exit 20 backup-key-mismatch, current files left) and restored
as one journaled change, then testCommand and reloadCommand (exit 20 on any failure).

Exit codes: 0 ok, 2 invalid parameters, 10 test failed (restored), 11 reload failed
(restored), 12 files could not be built or written, a cert/key mismatch, or too little time left
(nothing changed), 13 secret fetch (bundle or password) failed (nothing changed; the bundle's
reasons: bundle-credentials-missing, bundle-access-denied, bundle-endpoint-unreachable,
bundle-fetch-failed), 16 lock-timeout, 17
older-than-installed, 18 state-dir-unsafe or recovery-failed, 19 node-policy-denied (the node
policy refused a file path, mode or command; nothing was touched), 20 rollback failed, 21
node-policy-invalid (the node policy file cannot be used; nothing was touched), 22 a
prerequisite is missing (openssl-missing, command-missing; nothing was touched). (14, 15, 22
python-missing / python-too-old and 128+N are the document's bootstrap: installer download
failed, installer checksum mismatch, no python3 >= 3.8, installer killed by signal N.) check (the preflight, section "check" below) touches nothing and exits 0 when every check passed, else the
exit code of its first failed check. A named cause is also in ROLLOUT_RESULT "reason"
(rollout_core/domain/ssm_status.py INSTALLER_REASONS).

stdout carries exactly one line, the last: ``ROLLOUT_RESULT {json}`` with
{action, targetId, status: ok|failed, stage: fetch|write|test|reload|rollback,
error, reason (a named cause, when there is one), files, serverOutput, exitCode, fetchPath
(botocore | stdlib | aws-cli, once an install fetched), and when known
installedSerial, previousSerial, recovered {txn, action, serial, result, pairCheck, ...},
nothingToRollBack, and for a verifyFrom-node target servedBefore (install) and served (the
evidence of its probe after the reload: probe_served)}; the line is kept under RESULT_MAX_CHARS
(cap_result). Progress goes to stderr. Key material, the
secret string and passphrases are never printed; every reported text is redacted of any
private key block, of every line of the key, of any run of 16 or more base64
characters that shares a 16-character window with the key's base64 body (plain or
encrypted) or with a password the installer wrote or read, and of text-form key material
(``openssl pkey -text``'s labelled colon-hex blocks, any colon-hex run of 24 bytes or more:
redact_key_text).
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
import shutil
import socket
import ssl
import subprocess
import sys
import time
from typing import Any

EXIT_OK = 0
EXIT_PARAMS = 2
EXIT_TEST = 10
EXIT_RELOAD = 11
EXIT_WRITE = 12
EXIT_FETCH = 13
EXIT_ROLLBACK = 20

DEFAULT_STATE_DIR = "/var/lib/cert-rollout"  # CERT_ROLLOUT_STATE_DIR's default (state, lock, journal)
NEW_SUFFIX = ".rollout-new"
BAK_SUFFIX = ".rollout-bak"
ABSENT_SUFFIX = ".rollout-absent"
CONTENTS = ("fullchain", "leaf", "chain", "key", "combined", "encrypted-key", "pkcs12")
KEY_CONTENTS = ("key", "combined", "encrypted-key", "pkcs12")
PASSWORD = "password"  # internal content: the password file of an encrypted-key file
PASSWORD_SUFFIX = ".pass"
SERVER_OUTPUT_CHARS = 2000
MAX_COMMAND_TIMEOUT = 86400
RESTORE_MARGIN = 1.0  # seconds for restoring the files themselves (copies and renames)
KEY_MODE_FORBIDDEN = 0o7137  # owner execute, group write/execute, anything for others, s/s/t bits
SPECIAL_MODE_BITS = 0o7000  # setuid, setgid, sticky
REDACT_WINDOW = 16  # a run of base64 characters this long that overlaps a secret is redacted
_PASSWORD_SECRET = re.compile(r"[A-Za-z0-9/_+=.@:-]{1,512}")  # a secret name or ARN (fullmatch)

# The words of a PEM private key label, built so that this file's own text (and so
# any traceback quoting it) does not hold the phrase the redaction looks for.
_PK = "PRIVATE" + " KEY"
_PEM_BLOCK = re.compile(r"-----BEGIN ([A-Z0-9 ]+)-----(.*?)-----END \1-----", re.S)
_B64_RUN = re.compile(r"[A-Za-z0-9+/=]{" + str(REDACT_WINDOW) + ",}")
_PEM_ARMOR = re.compile(r"-----[A-Z0-9 ]*-----")
_KEY_BLOCK = re.compile(r"-----BEGIN [A-Z0-9 ]*" + _PK + r"-----.*?(?:-----END [A-Z0-9 ]*" + _PK
                        + r"-----|\Z)", re.S)

# Text-form key material (openssl pkey -text): a copy of rollout_core/domain/key_text.py's
# patterns and redact_key_text (this script is standard library only and ships alone; the module
# docstring there gives the rules and the 24-byte threshold). tests/unit/test_key_text.py feeds
# both the same corpus and requires identical results.
KEY_TEXT_MIN_BYTES = 24
KEY_TEXT_REDACTED = "[redacted key text]"
_SEP = r":(?:\s|\\+[nrt])*"
_LABELS = r"(?:modulus|privateExponent|prime\d*|exponent\d*|coefficient\d*|priv|pub)"
_KEY_TEXT_BLOCK = re.compile(
    r"(?im)^([ \t]*" + _LABELS + r"[ \t]*:)[ \t]*\r?\n"
    r"(?:[ \t]+[0-9a-f]{2}(?::[0-9a-f]{2})*:?[ \t]*(?:\r?\n|\Z))+")
_COLON_HEX_RUN = re.compile(
    r"(?<![0-9A-Fa-f])(?<![0-9A-Fa-f]:)[0-9A-Fa-f]{2}(?:" + _SEP + r"[0-9A-Fa-f]{2}){"
    + str(KEY_TEXT_MIN_BYTES - 1) + r",}")


def redact_key_text(text: str) -> str:
    """``text`` with every text-form key block and colon-hex run of >= 24 bytes replaced
    (rollout_core/domain/key_text.py redact_key_text, the same rules)."""
    text = _KEY_TEXT_BLOCK.sub(lambda m: m.group(1) + "\n    " + KEY_TEXT_REDACTED + "\n", text)
    return _COLON_HEX_RUN.sub(KEY_TEXT_REDACTED, text)


class RolloutFailure(Exception):
    """A failure at one stage, with its exit code. The message never holds secrets."""

    def __init__(self, stage: str, code: int, message: str, reason: str | None = None) -> None:
        super().__init__(message)
        self.stage = stage
        self.code = code
        self.reason = reason  # a named cause for ROLLOUT_RESULT "reason" (lock-timeout, ...)


# --------------------------------------------------------------------------- output


class Redactor:
    """Removes private key blocks, the phrase itself, any line of the known key material,
    and any run of >= 16 base64 characters sharing a 16-character window with a secret
    (a fragment of the key body or of a password) from text that is about to be reported."""

    def __init__(self) -> None:
        self.secrets: list[str] = []
        self.windows: set[str] = set()

    def _add_windows(self, secret: str) -> None:
        for i in range(len(secret) - REDACT_WINDOW + 1):
            self.windows.add(secret[i:i + REDACT_WINDOW])

    def add_secret_text(self, text: str) -> None:
        """Key material (PEM): each of its lines, and every window of its base64 body."""
        lines = text.replace("\r", "\n").split("\n")
        for line in lines:
            line = line.strip()
            if len(line) >= 16 and not line.startswith("-----"):
                self.secrets.append(line)
        # the base64 body: armor and RFC 1421 header lines (Proc-Type, DEK-Info) left out
        unarmored = _PEM_ARMOR.sub("\n", text.replace("\r", "\n"))
        body = "".join("".join(re.findall(r"[A-Za-z0-9+/=]+", ln))
                       for ln in unarmored.split("\n") if ":" not in ln)
        self._add_windows(body)

    def add_password(self, password: str) -> None:
        if len(password) >= 6:
            self.secrets.append(password)
        self._add_windows(password)

    def _run(self, match: Any) -> str:
        run = match.group(0)
        windows = self.windows
        for i in range(len(run) - REDACT_WINDOW + 1):
            if run[i:i + REDACT_WINDOW] in windows:
                return "[redacted]"
        return run

    def __call__(self, text: str | None, runs: bool = True) -> str | None:
        if text is None:
            return None
        text = _KEY_BLOCK.sub("[redacted key block]", text)
        text = redact_key_text(text)
        text = text.replace(_PK, "[redacted]")
        for s in self.secrets:
            if s in text:
                text = text.replace(s, "[redacted]")
        if runs and self.windows:
            text = _B64_RUN.sub(self._run, text)
        return text

    def value(self, value: Any) -> Any:
        """``value`` (JSON-like) with every string in it redacted."""
        if isinstance(value, str):
            return self(value)
        if isinstance(value, list):
            return [self.value(v) for v in value]
        if isinstance(value, dict):
            return {k: self.value(v) for k, v in value.items()}
        return value


REDACT = Redactor()


def log(message: str) -> None:
    """Progress line on stderr (never key material)."""
    sys.stderr.write("install_bundle: " + str(REDACT(message)) + "\n")
    sys.stderr.flush()


# --------------------------------------------------------------------------- PEM


def pem_blocks(text: str) -> list[tuple[str, str]]:
    """All PEM blocks of ``text`` as (label, normalized block text without final newline).
    Normalized: LF line ends, body re-wrapped at 64 columns, RFC 1421 headers kept."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    blocks = []
    for m in _PEM_BLOCK.finditer(text):
        label = m.group(1)
        lines = [ln.strip() for ln in m.group(2).split("\n") if ln.strip()]
        headers = [ln for ln in lines if ":" in ln]
        body = "".join(ln for ln in lines if ":" not in ln)
        out = [f"-----BEGIN {label}-----"]
        if headers:
            out.extend(headers)
            out.append("")
        out.extend(body[i:i + 64] for i in range(0, len(body), 64))
        out.append(f"-----END {label}-----")
        blocks.append((label, "\n".join(out)))
    return blocks


def join_pem(blocks: list[str]) -> str:
    """Blocks -> PEM text: exactly one newline between blocks, one final newline."""
    return "\n".join(blocks) + "\n"


def _pem_der(block: str) -> bytes | None:
    """The DER bytes of one PEM block (armor and RFC 1421 header lines left out)."""
    body = "".join(ln for ln in block.split("\n") if ln and not ln.startswith("-----") and ":" not in ln)
    try:
        return base64.b64decode(body, validate=True)
    except (binascii.Error, ValueError):
        return None


def _tlv(der: bytes, pos: int) -> tuple[int, int, int]:
    """One DER element at ``pos``: (tag, content start, content end). Raises IndexError or
    ValueError on truncated or malformed input."""
    tag = der[pos]
    length = der[pos + 1]
    pos += 2
    if length & 0x80:
        n = length & 0x7F
        if not 0 < n <= 4:
            raise ValueError("bad DER length")
        length = int.from_bytes(der[pos:pos + n], "big")
        pos += n
    if pos + length > len(der):
        raise ValueError("truncated DER")
    return tag, pos, pos + length


def _children(der: bytes, start: int, end: int) -> list[tuple[int, int, int, int]]:
    """The elements inside a constructed element's content: [(tag, content start, content
    end, element start)]."""
    out = []
    pos = start
    while pos < end:
        tag, cstart, cend = _tlv(der, pos)
        out.append((tag, cstart, cend, pos))
        pos = cend
    return out


_OID_RSA = bytes.fromhex("2a864886f70d010101")
_OID_EC = bytes.fromhex("2a8648ce3d0201")
# NIST curves (SEC 2 / FIPS 186-4 domain parameters): OID -> (p, a, Gx, Gy); a = -3 for both.
_CURVES = {
    bytes.fromhex("2a8648ce3d030107"): (  # P-256
        2**256 - 2**224 + 2**192 + 2**96 - 1, -3,
        0x6B17D1F2E12C4247F8BCE6E563A440F277037D812DEB33A0F4A13945D898C296,
        0x4FE342E2FE1A7F9B8EE7EB4A7C0F9E162BCE33576B315ECECBB6406837BF51F5),
    bytes.fromhex("2b81040022"): (  # P-384
        2**384 - 2**128 - 2**96 + 2**32 - 1, -3,
        0xAA87CA22BE8B05378EB1C71EF320AD746E1D3B628BA79B9859F741E082542A385502F25DBF55296C3A545E3872760AB7,
        0x3617DE4A96262C6F5D9E98BF9292DC29F8F41DBD289A147CE9DA3113B5F0B8C00A60B1CE1D7E819D7A431D7C90EA0E5F),
}

PublicKeyId = tuple  # ("rsa", n, e) | ("ec", curve OID, x, y parity) | ("raw", algorithm OID, key bits)


def ec_public_point(curve_oid: bytes, d: int) -> tuple[int, int] | None:
    """d x G on a NIST curve of _CURVES (affine double-and-add; python >= 3.8 for pow(x, -1, p)),
    or None for an unknown curve. Only used for an EC key whose DER omits its public key."""
    if curve_oid not in _CURVES:
        return None
    p, a, gx, gy = _CURVES[curve_oid]
    result: tuple[int, int] | None = None
    addend: tuple[int, int] | None = (gx, gy)
    while d and addend is not None:
        if d & 1:
            result = _ec_add(result, addend, p, a)
        addend = _ec_add(addend, addend, p, a)
        d >>= 1
    return result


def _ec_add(u: tuple[int, int] | None, v: tuple[int, int] | None, p: int, a: int) -> tuple[int, int] | None:
    if u is None:
        return v
    if v is None:
        return u
    if u[0] == v[0] and (u[1] + v[1]) % p == 0:
        return None
    if u == v:
        slope = (3 * u[0] * u[0] + a) * pow(2 * u[1], -1, p) % p
    else:
        slope = (v[1] - u[1]) * pow(v[0] - u[0], -1, p) % p
    x = (slope * slope - u[0] - v[0]) % p
    return x, (slope * (u[0] - x) - u[1]) % p


def _ec_point_id(curve_oid: bytes, point: bytes) -> PublicKeyId:
    """An EC public key (SEC 1 point, uncompressed or compressed) as (ec, curve, x, y parity)."""
    size = (len(point) - 1) // 2 if point[:1] == b"\x04" else len(point) - 1
    x = int.from_bytes(point[1:1 + size], "big")
    parity = point[-1] & 1 if point[:1] == b"\x04" else point[0] & 1
    return ("ec", curve_oid, x, parity)


def _spki_id(der: bytes, start: int, end: int) -> PublicKeyId:
    """SubjectPublicKeyInfo (RFC 5280 4.1.2.7) content -> its public key id."""
    (_, astart, aend, _), (_, bstart, bend, _) = _children(der, start, end)[:2]
    alg = _children(der, astart, aend)
    oid = der[alg[0][1]:alg[0][2]]
    bits = der[bstart + 1:bend]  # the BIT STRING without its unused-bits byte
    if oid == _OID_RSA:
        _, sstart, send = _tlv(bits, 0)
        (_, ns, ne, _), (_, es, ee, _) = _children(bits, sstart, send)[:2]
        return ("rsa", int.from_bytes(bits[ns:ne], "big"), int.from_bytes(bits[es:ee], "big"))
    if oid == _OID_EC and len(alg) > 1:
        return _ec_point_id(der[alg[1][1]:alg[1][2]], bits)
    return ("raw", oid, bits)


class CertInfo:
    """The fields of a leaf the installer decides on: serial (int), notBefore (UTC,
    "YYYYMMDDHHMMSS"), issuer and subject (DER, compared as bytes), public key id."""

    def __init__(self, serial: int, not_before: str, issuer: bytes, subject: bytes, key_id: PublicKeyId) -> None:
        self.serial = serial
        self.not_before = not_before
        self.issuer = issuer
        self.subject = subject
        self.key_id = key_id


def _time(der: bytes, tag: int, start: int, end: int) -> str:
    """UTCTime (tag 0x17, two-digit year: 50-99 = 19xx, RFC 5280 4.1.2.5.1) or GeneralizedTime
    (0x18) -> "YYYYMMDDHHMMSS"."""
    text = der[start:end].decode("ascii").rstrip("Z")
    if tag == 0x17:
        text = ("19" if int(text[:2]) >= 50 else "20") + text
    return text[:14]


def cert_info(cert_block: str) -> CertInfo | None:
    """Parse a PEM certificate (RFC 5280 4.1: Certificate ::= SEQUENCE { tbsCertificate SEQUENCE {
    [0] version?, serial, signature, issuer, validity {notBefore, notAfter}, subject,
    subjectPublicKeyInfo ...} ...}) with a minimal DER reader; None when it cannot be read."""
    der = _pem_der(cert_block)
    if der is None:
        return None
    try:
        _, cstart, cend = _tlv(der, 0)
        _, tstart, tend = _tlv(der, cstart)
        fields = _children(der, tstart, tend)
        if fields and fields[0][0] == 0xA0:
            fields = fields[1:]
        serial, issuer, validity, subject, spki = (fields[0], fields[2], fields[3], fields[4], fields[5])
        nb = _children(der, validity[1], validity[2])[0]
        return CertInfo(int.from_bytes(der[serial[1]:serial[2]], "big", signed=True),
                        _time(der, nb[0], nb[1], nb[2]), der[issuer[3]:issuer[2]], der[subject[3]:subject[2]],
                        _spki_id(der, spki[1], spki[2]))
    except (IndexError, ValueError, UnicodeDecodeError):
        return None


def der_serial(cert_block: str) -> int | None:
    """Serial (RFC 5280 4.1.2.2) of a PEM certificate block, or None when it cannot be read."""
    info = cert_info(cert_block)
    return info.serial if info else None


def _ec_private_id(der: bytes, start: int, end: int, curve_oid: bytes | None) -> PublicKeyId | None:
    """ECPrivateKey (RFC 5915: version, privateKey OCTET STRING, [0] parameters?, [1] publicKey?)."""
    items = _children(der, start, end)
    d = int.from_bytes(der[items[1][1]:items[1][2]], "big")
    point = None
    for tag, s, _e, _ in items[2:]:
        if tag == 0xA0:
            curve_oid = der[_tlv(der, s)[1]:_tlv(der, s)[2]]
        elif tag == 0xA1:
            _, bs, be = _tlv(der, s)
            point = der[bs + 1:be]
    if curve_oid is None:
        return None
    if point:
        return _ec_point_id(curve_oid, point)
    xy = ec_public_point(curve_oid, d)
    return ("ec", curve_oid, xy[0], xy[1] & 1) if xy else None


def key_public_id(key_block: str) -> PublicKeyId | None:
    """The public key of a plain private key PEM block: PKCS#8 "PRIVATE KEY" (RFC 5208) with
    RSA or EC inside, "RSA PRIVATE KEY" (RFC 8017 A.1.2) or "EC PRIVATE KEY" (RFC 5915).
    None when it cannot be read here (encrypted, another algorithm, malformed)."""
    label = key_block.split("\n", 1)[0][len("-----BEGIN "):-len("-----")]
    der = _pem_der(key_block)
    if der is None:
        return None
    try:
        _, start, end = _tlv(der, 0)
        items = _children(der, start, end)
        if label == "RSA " + _PK:
            return ("rsa", int.from_bytes(der[items[1][1]:items[1][2]], "big"),
                    int.from_bytes(der[items[2][1]:items[2][2]], "big"))
        if label == "EC " + _PK:
            return _ec_private_id(der, start, end, None)
        if label != _PK:
            return None
        alg = _children(der, items[1][1], items[1][2])
        oid = der[alg[0][1]:alg[0][2]]
        _, ks, ke = _tlv(der, items[2][3])
        _, inner_start, inner_end = _tlv(der, ks)
        if oid == _OID_RSA:
            rsa = _children(der, inner_start, inner_end)
            return ("rsa", int.from_bytes(der[rsa[1][1]:rsa[1][2]], "big"),
                    int.from_bytes(der[rsa[2][1]:rsa[2][2]], "big"))
        if oid == _OID_EC and len(alg) > 1:
            return _ec_private_id(der, inner_start, inner_end, der[alg[1][1]:alg[1][2]])
    except (IndexError, ValueError):
        return None
    return None


def pair_problem(cert_block: str | None, key_block: str | None) -> str | None:
    """Why ``cert_block`` (the leaf) and ``key_block`` (a plain private key) are not a pair, or
    None when they are (same public key: RSA (n, e) or EC (curve, point); DESIGN.md: by public
    key, not RSA modulus). Either None = nothing to compare = None."""
    if cert_block is None or key_block is None:
        return None
    info = cert_info(cert_block)
    key_id = key_public_id(key_block)
    if info is None:
        return "the certificate cannot be read"
    if key_id is None:
        return "the private key cannot be read (an unsupported or malformed key)"
    if info.key_id != key_id:
        return "the private key does not match the certificate's public key"
    return None


def parse_expected_serial(text: str) -> int | None:
    """Canonical colon hex ("0f:ac:01": lowercase, two digits per byte, minimal bytes, as
    the state machine sends it) -> int; empty -> None. Anything else is refused (exit 2)."""
    value = text.strip()
    if not value:
        return None
    refused = RolloutFailure("write", EXIT_PARAMS,
                             "ROLLOUT_EXPECTED_SERIAL must be canonical lowercase colon hex "
                             f'(like "0f:ac:01"), got {value[:80]!r}')
    if not re.fullmatch(r"-?[0-9a-f]{2}(?::[0-9a-f]{2})*", value):
        raise refused
    serial = int(value.replace(":", ""), 16)
    if format_serial(serial) != value:  # not minimal ("00:1f"), or "-00"
        raise refused
    return serial


def format_serial(serial: int) -> str:
    """int -> lowercase colon hex, minimal bytes; a negative serial gets a leading "-"."""
    sign = "-" if serial < 0 else ""
    value = abs(serial)
    length = max(1, (value.bit_length() + 7) // 8)
    return sign + ":".join(f"{b:02x}" for b in value.to_bytes(length, "big"))


class Bundle:
    """Normalized PEM pieces of the secret: leaf, chain (issuer order as given), key."""

    def __init__(self, leaf: str, chain: list[str], key: str | None, key_encrypted: bool) -> None:
        self.leaf = leaf
        self.chain = chain
        self.key = key
        self.key_encrypted = key_encrypted

    @classmethod
    def from_secret(cls, secret: dict[str, Any]) -> Bundle:
        cert_text = secret.get("certificate")
        if not isinstance(cert_text, str):
            raise RolloutFailure("fetch", EXIT_FETCH, 'secret has no "certificate" string')
        certs = [b for label, b in pem_blocks(cert_text) if label == "CERTIFICATE"]
        if len(certs) != 1:
            raise RolloutFailure("write", EXIT_WRITE,
                                 'secret "certificate" must hold exactly one PEM certificate (the leaf), '
                                 f"found {len(certs)}")
        chain_text = secret.get("chain") or ""
        if not isinstance(chain_text, str):
            raise RolloutFailure("fetch", EXIT_FETCH, 'secret "chain" is not a string')
        chain = [b for label, b in pem_blocks(chain_text) if label == "CERTIFICATE" and b != certs[0]]
        key_text = secret.get("privateKey")
        key = None
        encrypted = False
        if isinstance(key_text, str) and key_text.strip():
            REDACT.add_secret_text(key_text)
            keys = [(label, b) for label, b in pem_blocks(key_text) if label.endswith(_PK)]
            if len(keys) != 1:
                raise RolloutFailure("write", EXIT_WRITE,
                                     'secret "privateKey" must hold exactly one PEM key block, '
                                     f"found {len(keys)}")
            label, key = keys[0]
            encrypted = label.startswith("ENCRYPTED") or "Proc-Type: 4,ENCRYPTED" in key
            REDACT.add_secret_text(key)
        return cls(certs[0], chain, key, encrypted)

    def content(self, kind: str, path: str) -> str:
        if kind in KEY_CONTENTS:
            if self.key is None:
                raise RolloutFailure("write", EXIT_WRITE, f"secret has no private key for {path}")
            if self.key_encrypted:
                raise RolloutFailure(
                    "write", EXIT_WRITE,
                    f"refusing to write an encrypted private key to {path}: the server needs a plain key "
                    "(PKCS#8 EncryptedPrivateKeyInfo must be decrypted before staging, case K3)")
        if kind in ("chain",) and not self.chain:
            raise RolloutFailure("write", EXIT_WRITE, f"secret has no chain certificates for {path}")
        if kind == "leaf":
            return join_pem([self.leaf])
        if kind == "chain":
            return join_pem(self.chain)
        if kind == "fullchain":
            return join_pem([self.leaf] + self.chain)
        if kind == "key":
            return join_pem([self.key or ""])
        if kind == "combined":
            return join_pem([self.leaf] + self.chain + [self.key or ""])
        raise RolloutFailure("write", EXIT_WRITE, f"unknown content {kind!r} for {path}")


# --------------------------------------------------------------------------- params


def _parse_mode(raw: Any, where: str, content: str, path: str) -> int:
    """A file's mode: octal string or integer; default 0600 for key files, 0644 otherwise;
    key files not readable by others; no setuid/setgid/sticky bit (exit 2 otherwise)."""
    if raw is None or raw == "":
        mode = 0o600 if content in KEY_CONTENTS else 0o644
    elif isinstance(raw, str) and re.fullmatch(r"(?:0o)?[0-7]{1,5}", raw.strip()):
        mode = int(raw.strip(), 8)
    elif isinstance(raw, int) and not isinstance(raw, bool):
        mode = raw
    else:
        raise RolloutFailure("write", EXIT_PARAMS, f'{where}.mode must be an octal string like "0644" or an integer')
    if not 0 <= mode <= 0o7777:
        raise RolloutFailure("write", EXIT_PARAMS, f"{where}.mode out of range")
    if content in KEY_CONTENTS and mode & KEY_MODE_FORBIDDEN:
        raise RolloutFailure(
            "write", EXIT_PARAMS,
            f"{where}.mode {mode:04o} is refused for {path} ({content}): key files "
            "must not be readable by others: mode & 0o7137 must be 0 (0600, 0640, 0400 or 0440)")
    if mode & SPECIAL_MODE_BITS:
        raise RolloutFailure("write", EXIT_PARAMS, f"{where}.mode {mode:04o} is refused for {path}: "
                                                   "setuid, setgid and sticky bits are not allowed")
    return mode


def _check_owner(raw: dict[str, Any], where: str) -> None:
    for name in ("owner", "group"):
        value = raw.get(name)
        if value is not None and not (
                (isinstance(value, str) and value.strip() == value)
                or (isinstance(value, int) and not isinstance(value, bool) and value >= 0)):
            raise RolloutFailure("write", EXIT_PARAMS, f"{where}.{name} must be a name, a non-negative id or null")


def _check_password_secret(secret: Any, content: str, where: str) -> None:
    if secret is not None and (
            content not in ("encrypted-key", "pkcs12") or not isinstance(secret, str)
            or not _PASSWORD_SECRET.fullmatch(secret) or ".." in secret or secret.startswith("-")):
        raise RolloutFailure("write", EXIT_PARAMS,
                             f"{where}.passwordSecret must be a Secrets Manager secret name or ARN "
                             "(1-512 of A-Za-z0-9/_+=.@:-, no '..', not starting with '-'), "
                             "for encrypted-key and pkcs12 files only")


class FileSpec:
    """One file of a target (the target config's files[index]); raises RolloutFailure(exit 2)."""

    def __init__(self, raw: dict[str, Any], index: int) -> None:
        where = f"files[{index}]"
        path = raw.get("path")
        if not isinstance(path, str) or not os.path.isabs(path):
            raise RolloutFailure("write", EXIT_PARAMS, f"{where}.path must be an absolute path")
        self.given_path = path  # as the inventory wrote it: the node policy checks it is canonical
        self.path = os.path.normpath(path)
        content = raw.get("content")
        if content not in CONTENTS:
            raise RolloutFailure("write", EXIT_PARAMS,
                                 "{}.content must be one of {}".format(where, "|".join(CONTENTS)))
        self.content = str(content)
        self.mode = _parse_mode(raw.get("mode"), where, self.content, self.path)
        _check_owner(raw, where)
        self.owner = raw.get("owner")
        self.group = raw.get("group")
        self.password_file: str | None = None
        self.given_password_file: str | None = None
        self.alias: str | None = None
        self.key_spec: FileSpec | None = None  # a password file's key or keystore file
        secret = raw.get("passwordSecret")
        _check_password_secret(secret, self.content, where)
        self.password_secret: str | None = secret
        if self.content in ("encrypted-key", "pkcs12"):
            self._password_settings(raw, where, secret)

    def _password_settings(self, raw: dict[str, Any], where: str, secret: str | None) -> None:
        pw = raw.get("passwordFile")
        if pw in (None, "") and secret is None:
            pw = self.path + PASSWORD_SUFFIX
        if pw in (None, ""):
            pw = None  # the password comes from passwordSecret; no file is written
        elif not isinstance(pw, str) or not os.path.isabs(pw):
            raise RolloutFailure("write", EXIT_PARAMS, f"{where}.passwordFile must be an absolute path")
        else:
            self.given_password_file = pw
            self.password_file = os.path.normpath(pw)
        alias = raw.get("alias")
        if alias is not None and (not isinstance(alias, str) or not alias.strip()):
            raise RolloutFailure("write", EXIT_PARAMS, f"{where}.alias must be a non-empty string")
        self.alias = alias

    @classmethod
    def password_for(cls, key_spec: FileSpec) -> FileSpec:
        """The managed password file of an encrypted-key file, or of a file whose password
        comes from passwordSecret: 0600, the key file's owner."""
        spec = cls.__new__(cls)
        spec.path = key_spec.password_file or key_spec.path + PASSWORD_SUFFIX
        spec.given_path = key_spec.given_password_file or key_spec.given_path + PASSWORD_SUFFIX
        spec.given_password_file = None
        spec.content = PASSWORD
        spec.mode = 0o600
        spec.owner, spec.group = key_spec.owner, key_spec.group
        spec.password_file = None
        spec.password_secret = None
        spec.alias = None
        spec.key_spec = key_spec
        return spec


class Target:
    def __init__(self, raw: dict[str, Any]) -> None:
        self.target_id = str(raw.get("targetId") or "")
        self.server = raw.get("server") or "generic"
        files = raw.get("files")
        if not isinstance(files, list) or not files:
            raise RolloutFailure("write", EXIT_PARAMS, "target config has no files")
        self.files = [FileSpec(f if isinstance(f, dict) else {}, i) for i, f in enumerate(files)]
        # an encrypted key's password file (and that of a password from Secrets Manager) is
        # installed and restored with it
        self.files += [FileSpec.password_for(f) for f in list(self.files) if f.password_file and (
            f.content == "encrypted-key" or f.password_secret)]
        for f in self.files:
            if f.content == "pkcs12" and f.alias is None:
                f.alias = self.target_id or "certificate"
        paths = [f.path for f in self.files]
        if len(set(paths)) != len(paths):
            raise RolloutFailure("write", EXIT_PARAMS, "target config names a file twice")
        self.test_command = self._argv(raw.get("testCommand"), "testCommand")
        self.reload_command = self._argv(raw.get("reloadCommand"), "reloadCommand")
        self.verify = VerifySpec(raw["verify"]) if raw.get("verify") is not None else None  # verifyFrom: node

    @staticmethod
    def _argv(value: Any, name: str) -> list[str] | None:
        if value is None:
            return None
        if not isinstance(value, list) or not value or not all(isinstance(a, str) for a in value):
            raise RolloutFailure("write", EXIT_PARAMS, f"{name} must be a non-empty argv list or null")
        return list(value)


def decode_target(encoded: str) -> dict[str, Any]:
    try:
        raw = json.loads(base64.b64decode(encoded.strip(), validate=False).decode("utf-8"))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise RolloutFailure("write", EXIT_PARAMS, "ROLLOUT_TARGET is not base64 of a JSON object") from None
    if not isinstance(raw, dict):
        raise RolloutFailure("write", EXIT_PARAMS, "ROLLOUT_TARGET is not a JSON object")
    return raw


def command_timeout(stage: str) -> float:
    """ROLLOUT_COMMAND_TIMEOUT: an integer number of seconds, 1..86400; unset/empty = 60."""
    text = os.environ.get("ROLLOUT_COMMAND_TIMEOUT", "").strip()
    if not text:
        return 60.0
    if not re.fullmatch(r"[0-9]{1,6}", text) or not 1 <= int(text) <= MAX_COMMAND_TIMEOUT:
        raise RolloutFailure(stage, EXIT_PARAMS,
                             "ROLLOUT_COMMAND_TIMEOUT must be a whole number of seconds from 1 to "
                             f"{MAX_COMMAND_TIMEOUT}, got {text[:40]!r}")
    return float(int(text))


def time_left(stage: str, now: float | None = None) -> float | None:
    """Seconds until the document's execution timeout ends this script (may be negative),
    from ROLLOUT_STARTED_AT + ROLLOUT_EXECUTION_TIMEOUT; None when neither is set. A bad or
    half-given pair is refused (exit 2)."""
    started = os.environ.get("ROLLOUT_STARTED_AT", "").strip()
    limit = os.environ.get("ROLLOUT_EXECUTION_TIMEOUT", "").strip()
    if not started and not limit:
        return None
    if not (re.fullmatch(r"[0-9]{1,12}", started) and re.fullmatch(r"[0-9]{1,6}", limit)
            and 1 <= int(limit) <= MAX_COMMAND_TIMEOUT):
        raise RolloutFailure(stage, EXIT_PARAMS,
                             "ROLLOUT_STARTED_AT (epoch seconds) and ROLLOUT_EXECUTION_TIMEOUT (1 to "
                             f"{MAX_COMMAND_TIMEOUT} s) must both be whole numbers, got "
                             f"{started[:20]!r} and {limit[:20]!r}")
    return int(started) + int(limit) - (time.time() if now is None else now)


def check_time_to_restore(target: Target, timeout: float) -> None:
    """Refuse to swap files in when a failed reload could not be restored in time: the test,
    the reload and the reload after restore each take up to ``timeout`` seconds."""
    steps = (1 if target.test_command else 0) + (2 if target.reload_command else 0)
    needed = steps * timeout + RESTORE_MARGIN
    left = time_left("write")
    if left is not None and left < needed:
        raise RolloutFailure("write", EXIT_WRITE,
                             f"only {max(left, 0.0):.0f} s of the execution timeout left; test, reload "
                             f"and restore need up to {needed:g} s ({steps} x ROLLOUT_COMMAND_TIMEOUT "
                             f"{timeout:g} s + {RESTORE_MARGIN:g} s): nothing changed")


# --------------------------------------------------------------------------- node policy
#
# The node owner has the last word (DESIGN.md): a node-local JSON file lists the directories
# the installer may write files in and the exact commands it may run as test and reload. The
# inventory cannot widen it: the file's path comes from the node's environment
# (CERT_ROLLOUT_NODE_POLICY, default /etc/cert-rollout/node-policy.json), never from a document
# parameter. Without the file, DEFAULT_NODE_POLICY applies: the standard directories and
# commands of the server kinds the product supports (rollout_core/target_defaults.py; the test
# tests/unit/test_node_policy.py ties the two). On top of any policy, NODE_DENIED_* is never
# written (the same lists as rollout_core.models SENSITIVE_*, tied by that test). Every check
# runs before the lock, the fetch or any file is touched: a refusal is exit 19
# node-policy-denied, a policy file that cannot be used is exit 21 node-policy-invalid.
#
# {"writeDirectories": ["/etc/nginx", ...],         canonical absolute directories, not "/"
#  "commands": [["nginx", "-t"], ["haproxy", "-c", "-f", "{path}"], ...],
#  "maxModes": {"certificate": "0644", "key": "0640"}}   optional; these are the defaults
# A command is allowed when it equals one of "commands" element by element; the element
# "{path}" stands for one argument that passes the file path checks (canonical, no symbolic
# link, inside a write directory, not denied). No shell interpreter is in the default.

EXIT_POLICY = 19
EXIT_POLICY_INVALID = 21
NODE_POLICY_FILE = "/etc/cert-rollout/node-policy.json"
PATH_ARGUMENT = "{path}"
DEFAULT_NODE_POLICY: dict[str, Any] = {
    "writeDirectories": ["/etc/nginx", "/etc/apache2", "/etc/httpd", "/etc/haproxy", "/etc/ssl"],
    "commands": [
        ["nginx", "-t"], ["nginx", "-s", "reload"], ["systemctl", "reload", "nginx"],
        ["apachectl", "configtest"], ["apachectl", "graceful"],
        ["systemctl", "reload", "apache2"], ["systemctl", "reload", "httpd"],
        ["haproxy", "-c", "-f", PATH_ARGUMENT], ["systemctl", "reload", "haproxy"],
    ],
    "maxModes": {"certificate": "0644", "key": "0640"},
}
# Never written, whatever a policy allows: system account and privilege files, SSH access, the
# installer's own state and policy (added at run time), and the installer's own file names.
NODE_DENIED_FILES = ("/etc/shadow", "/etc/shadow-", "/etc/gshadow", "/etc/gshadow-", "/etc/passwd",
                     "/etc/passwd-", "/etc/group", "/etc/group-", "/etc/sudoers",
                     "/etc/crontab", "/etc/ld.so.preload")
NODE_DENIED_DIRECTORIES = ("/etc/sudoers.d", "/etc/ssh", "/etc/pam.d", "/etc/security", "/etc/cron.d",
                           "/etc/systemd", "/etc/cert-rollout", "/root", "/boot", "/proc", "/sys", "/dev",
                           "/bin", "/sbin", "/lib", "/lib64",
                           "/usr/bin", "/usr/sbin", "/usr/lib", "/usr/lib64", "/usr/libexec", DEFAULT_STATE_DIR)
NODE_DENIED_NAMES = ("authorized_keys", "authorized_keys2")  # in any directory
NODE_DENIED_COMPONENT = ".ssh"  # any directory of that name
RESERVED_NAME_PART = ".rollout-"  # the installer's staged, backup and marker names
_POLICY_KEYS = frozenset({"version", "writeDirectories", "commands", "maxModes"})
_MODE_CLASSES = {"certificate": ("fullchain", "leaf", "chain"), "key": KEY_CONTENTS + (PASSWORD,)}


class NodePolicy:
    """The node-local policy: write directories, allowed commands (argv lists), maximum modes."""

    def __init__(self, raw: Any, source: str) -> None:
        self.source = source
        if not isinstance(raw, dict):
            raise _invalid(source, "it must be a JSON object")
        unknown = sorted(set(raw) - _POLICY_KEYS)
        if unknown:
            raise _invalid(source, "unknown key(s) " + ", ".join(unknown) + " (allowed: "
                           + ", ".join(sorted(_POLICY_KEYS)) + ")")
        if raw.get("version", 1) != 1:
            raise _invalid(source, "version must be 1")
        self.directories = self._directories(raw.get("writeDirectories"))
        self.commands = self._commands(raw.get("commands"))
        self.max_modes = self._max_modes(raw.get("maxModes", DEFAULT_NODE_POLICY["maxModes"]))

    def _directories(self, value: Any) -> list[str]:
        if not isinstance(value, list) or not all(isinstance(d, str) for d in value):
            raise _invalid(self.source, "writeDirectories must be a list of absolute directory paths")
        for d in value:
            problem = path_form_problem(d)
            if problem or d == "/":
                raise _invalid(self.source, f"writeDirectories entry {d!r} {problem or 'is the root directory'}")
        return list(value)

    def _commands(self, value: Any) -> list[list[str]]:
        if not isinstance(value, list) or not all(
                isinstance(c, list) and c and all(isinstance(a, str) and a for a in c) for c in value):
            raise _invalid(self.source, "commands must be a list of argv lists of non-empty strings")
        if any(c[0] == PATH_ARGUMENT for c in value):
            raise _invalid(self.source, f"a command's program cannot be {PATH_ARGUMENT}")
        return [list(c) for c in value]

    def _max_modes(self, value: Any) -> dict[str, int]:
        if not isinstance(value, dict) or set(value) - set(_MODE_CLASSES) or not all(
                isinstance(m, str) and re.fullmatch(r"0?[0-7]{3}", m) for m in value.values()):
            raise _invalid(self.source, 'maxModes must map "certificate" and/or "key" to an octal mode like "0640"')
        modes = {k: int(v, 8) for k, v in DEFAULT_NODE_POLICY["maxModes"].items()}
        modes.update({k: int(v, 8) for k, v in value.items()})
        return modes


def _invalid(source: str, problem: str) -> RolloutFailure:
    return RolloutFailure("write", EXIT_POLICY_INVALID, f"node-policy-invalid: {source}: {problem}: nothing changed",
                          reason="node-policy-invalid")


def _denied(problem: str) -> RolloutFailure:
    return RolloutFailure("write", EXIT_POLICY, f"node-policy-denied: {problem}: nothing changed",
                          reason="node-policy-denied")


def policy_file() -> str:
    """The node policy's path: CERT_ROLLOUT_NODE_POLICY (the node's environment) or the default."""
    return os.environ.get("CERT_ROLLOUT_NODE_POLICY", "").strip() or NODE_POLICY_FILE


def load_node_policy() -> NodePolicy:
    """The node policy file, or DEFAULT_NODE_POLICY when there is none. The file must be a
    regular file (not a symbolic link) owned by this user or root and not writable by group or
    others, holding a valid policy; else RolloutFailure node-policy-invalid (exit 21)."""
    path = policy_file()
    if not path.startswith("/"):
        raise _invalid(path, "CERT_ROLLOUT_NODE_POLICY must be an absolute path")
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return NodePolicy(DEFAULT_NODE_POLICY, "the default node policy")
    except OSError as exc:
        raise _invalid(path, _os_error(exc)) from None
    import stat as stat_module

    if not stat_module.S_ISREG(st.st_mode):
        raise _invalid(path, "not a regular file (a symbolic link or another kind)")
    if st.st_uid not in (0, os.geteuid()) or st.st_mode & 0o022:
        raise _invalid(path, f"must be owned by root or uid {os.geteuid()} and not writable by group or others")
    try:
        with open(path, "rb") as f:
            raw = json.loads(f.read().decode("utf-8"))
    except (OSError, ValueError) as exc:
        raise _invalid(path, "not readable JSON" + (f" ({_os_error(exc)})" if isinstance(exc, OSError) else "")) \
            from None
    return NodePolicy(raw, path)


def path_form_problem(path: str) -> str | None:
    """Why ``path`` is not canonical (absolute, no empty, "." or ".." component, equal to its
    os.path.normpath), None when it is."""
    if not path.startswith("/"):
        return "is not an absolute path"
    if "//" in path or path != os.path.normpath(path) or any(c in (".", "..") for c in path.split("/")):
        return "is not canonical (no '//', '.' or '..'; give the path os.path.normpath gives)"
    if any(ch in path for ch in "\x00\n\r"):
        return "contains NUL or a newline"
    return None


def _inside(path: str, directory: str) -> bool:
    """``path`` is ``directory`` or below it, at a path-component boundary."""
    return path == directory or path.startswith(directory.rstrip("/") + "/")


def _symlink_in(path: str) -> str | None:
    """The first component of ``path`` (from the root down, the path itself included) that is a
    symbolic link, by lstat; None when there is none (a missing component ends the walk)."""
    current = ""
    for part in path.split("/")[1:]:
        current += "/" + part
        try:
            st = os.lstat(current)
        except FileNotFoundError:
            return None
        if (st.st_mode & 0o170000) == 0o120000:  # S_ISLNK
            return current
    return None


def denied_path_problem(path: str) -> str | None:
    """Why the deny list refuses ``path`` (a canonical absolute path), None when it does not."""
    state_dir = os.path.normpath(os.environ.get("CERT_ROLLOUT_STATE_DIR", "").strip() or DEFAULT_STATE_DIR)
    if path in NODE_DENIED_FILES or path == os.path.normpath(policy_file()):
        return "is a system account, privilege or node policy file (the deny list)"
    for directory in NODE_DENIED_DIRECTORIES + (state_dir,):
        if _inside(path, directory):
            return f"is inside {directory}, which is never written (the deny list)"
    name = os.path.basename(path)
    if name in NODE_DENIED_NAMES or NODE_DENIED_COMPONENT in path.split("/"):
        return "is an SSH access file or directory (the deny list)"
    return None


def file_path_problem(path: str, policy: NodePolicy) -> str | None:
    """Why ``path`` may not be written under ``policy`` (None: allowed): not canonical, denied,
    through a symbolic link, outside every write directory, or one of the installer's own names."""
    problem = path_form_problem(path) or denied_path_problem(path)
    if problem:
        return problem
    link = _symlink_in(path)
    if link:
        return f"goes through the symbolic link {link} (symbolic links are refused)"
    if not any(_inside(path, d) and path != d for d in policy.directories):
        return "is outside the node policy's writeDirectories (" + ", ".join(policy.directories) + ")"
    if RESERVED_NAME_PART in os.path.basename(path):
        return f"is named like the installer's own staged or backup files (*{RESERVED_NAME_PART}*)"
    return None


def _written_paths(target: Target) -> list[tuple[str, str, FileSpec]]:
    """(field, path as given, spec) of every file the installer may create or replace."""
    out = []
    for index, spec in enumerate(target.files):
        where = f"files[{index}].path" if spec.content != PASSWORD else "a password file"
        out.append((where, spec.given_path, spec))
        if spec.content == "pkcs12" and spec.password_file and not spec.password_secret:
            # the keystore password file the installer creates once (not one of target.files)
            out.append((f"files[{index}]'s password file", spec.given_password_file or spec.password_file, spec))
    return out


def _command_allowed(argv: list[str], policy: NodePolicy) -> bool:
    for allowed in policy.commands:
        if len(allowed) == len(argv) and all(  # no zip(strict=): the node's python may be 3.8
                allowed[i] == argv[i] or (allowed[i] == PATH_ARGUMENT and file_path_problem(argv[i], policy) is None)
                for i in range(len(argv))):
            return True
    return False


def check_node_policy(target: Target, policy: NodePolicy) -> None:
    """Refuse (RolloutFailure node-policy-denied, exit 19) a target the node policy does not
    allow, before anything is touched: every file it writes (and every password file) must pass
    file_path_problem, be written by one entry only, and stay within maxModes; its test and
    reload commands must each be one of the policy's commands. Only lstat is called."""
    seen: dict[str, str] = {}
    for where, path, spec in _written_paths(target):
        problem = file_path_problem(path, policy)
        if problem:
            raise _denied(f"{where} {path!r} {problem} ({policy.source})")
        if path in seen:
            raise _denied(f"{where} {path!r} is also {seen[path]}: an entry can never name another entry's file")
        seen[path] = where
        kind = "key" if spec.content in _MODE_CLASSES["key"] else "certificate"
        if spec.mode & ~policy.max_modes[kind]:
            raise _denied(f"{where} {path!r}: mode {spec.mode:04o} exceeds the node policy's maxModes {kind} "
                          f"{policy.max_modes[kind]:04o}")
    for name, argv in (("testCommand", target.test_command), ("reloadCommand", target.reload_command)):
        if argv is not None and not _command_allowed(argv, policy):
            shown = json.dumps(argv)[:300]
            raise _denied(f"{name} {shown} is not one of the node policy's commands ({policy.source})")


# --------------------------------------------------------------------------- prerequisites
# What a target's settings need on the node beyond python3, checked after the node policy and
# before the lock, the fetch or any file (exit 22, nothing changed; the document's bootstrap
# uses the same exit code for python-missing / python-too-old):
#   openssl-missing   an encrypted-key or pkcs12 file is built and checked with the system openssl
#   command-missing   the program of testCommand or reloadCommand is not on PATH (or not executable)
# No other tool is run: the fetch needs no AWS CLI (fetch section), keystores are PKCS#12 made by
# openssl (a JDK's keytool is never run; JKS keystores are not a content kind).

EXIT_PREREQUISITE = 22
OPENSSL_CONTENTS = ("encrypted-key", "pkcs12")


def _missing(reason: str, problem: str) -> RolloutFailure:
    return RolloutFailure("write", EXIT_PREREQUISITE, f"{reason}: {problem}: nothing changed", reason=reason)


def prerequisite_problems(target: Target) -> dict[str, RolloutFailure]:
    """What the node lacks for ``target``'s settings, by what needs it ("openssl", "testCommand",
    "reloadCommand"; absent: nothing missing): openssl for encrypted-key and pkcs12 files
    (openssl-missing), the first element of testCommand and reloadCommand (command-missing, naming
    it), each looked up on PATH as the installer will run it (shutil.which). Nothing is touched."""
    search = os.environ.get("PATH", os.defpath)
    problems: dict[str, RolloutFailure] = {}
    needs = [spec.path for spec in target.files if spec.content in OPENSSL_CONTENTS]
    if needs and shutil.which("openssl") is None:
        problems["openssl"] = _missing("openssl-missing", f"openssl is not on PATH ({search}); it builds and checks "
                                       + ", ".join(needs) + " (encrypted-key, pkcs12)")
    for name, argv in (("testCommand", target.test_command), ("reloadCommand", target.reload_command)):
        if argv and shutil.which(argv[0]) is None:
            problems[name] = _missing("command-missing", f"{name}'s program {argv[0]!r} is not "
                                      + ("an executable file" if "/" in argv[0] else f"on PATH ({search})"))
    return problems


def check_prerequisites(target: Target) -> None:
    """Refuse (RolloutFailure exit 22) a target whose settings need a program this node lacks:
    the first of prerequisite_problems (openssl-missing, then command-missing for testCommand,
    then reloadCommand). Nothing is touched."""
    for problem in prerequisite_problems(target).values():
        raise problem


# --------------------------------------------------------------------------- commands


class CommandResult:
    def __init__(self, label: str, argv: list[str], code: int | None, output: str, error: str | None):
        self.label = label
        self.argv = argv
        self.code = code
        self.output = output  # stdout + stderr, redacted
        self.error = error  # None when the command ran and exited 0

    @property
    def ok(self) -> bool:
        return self.error is None

    def summary(self) -> str:
        last = [ln.strip() for ln in self.output.strip().splitlines() if ln.strip()]
        detail = last[-1][:300] if last else ""
        return "{}{}".format(self.error, (": " + detail) if detail else "")


class Runner:
    """Runs commands (no shell), bounded by the timeout, and keeps their output."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self.transcript: list[str] = []

    def run(self, label: str, argv: list[str]) -> CommandResult:
        log("{}: {}".format(label, " ".join(argv)))
        try:
            proc = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True,
                                  timeout=self.timeout, shell=False)
        except FileNotFoundError:
            result = CommandResult(label, argv, None, "", f"{label} command not found: {argv[0]}")
        except PermissionError:
            result = CommandResult(label, argv, None, "", f"{label} command not executable: {argv[0]}")
        except subprocess.TimeoutExpired as exc:
            out = _decode(exc.stdout) + _decode(exc.stderr)
            result = CommandResult(label, argv, None, str(REDACT(out)),
                                   f"{label} command timed out after {self.timeout:g} s")
        except OSError as exc:
            result = CommandResult(label, argv, None, "", f"{label} command could not start: {exc}")
        else:
            out = str(REDACT(_decode(proc.stdout) + _decode(proc.stderr)))
            err = None if proc.returncode == 0 else f"{label} command failed with exit code {proc.returncode}"
            result = CommandResult(label, argv, proc.returncode, out, err)
        self.transcript.append("[{}: {}]\n{}".format(
            label, f"exit {result.code}" if result.code is not None else result.error, result.output))
        return result

    def server_output(self) -> str:
        text = str(REDACT("\n".join(self.transcript)))
        return text[-SERVER_OUTPUT_CHARS:]


def _decode(data: Any) -> str:
    if data is None:
        return ""
    if isinstance(data, bytes):
        return data.decode("utf-8", "replace")
    return str(data)


# --------------------------------------------------------------------------- fetch
# How the node reads the staged bundle: Secrets Manager GetSecretValue, signed with the node's
# own identity. CERT_ROLLOUT_FETCH (the node's environment, never a document parameter) picks
# the path; the installer's log says which one it took (never the secret):
#   auto (default)  botocore when this python can import it (the SDK's whole credential chain:
#                   environment, shared files and profiles, SSO, credential_process, container
#                   and instance metadata); else the standard-library client below. When that
#                   client finds no credentials and the AWS CLI is on PATH, the AWS CLI (it knows
#                   the credential sources the small client does not).
#   botocore | stdlib | aws-cli   that path only.
# The standard-library client makes the one call (JSON 1.1 protocol, X-Amz-Target
# secretsmanager.GetSecretValue, Signature Version 4: sigv4_authorization) with credentials
# from, in this order: the environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
# AWS_SESSION_TOKEN: set by the node owner for the agent's commands, or a local cloud's node),
# the shared credentials file (AWS_SHARED_CREDENTIALS_FILE or ~/.aws/credentials, profile
# AWS_PROFILE or "default": where the SSM Agent of a hybrid-activated node keeps its role's
# credentials), then EC2 instance metadata, IMDSv2 (token PUT, role name, credentials; 1 s per
# request; AWS_EC2_METADATA_DISABLED=true skips it, AWS_EC2_METADATA_SERVICE_ENDPOINT moves it).
# Endpoint: AWS_ENDPOINT_URL_SECRETS_MANAGER, else AWS_ENDPOINT_URL (unless
# AWS_IGNORE_CONFIGURED_ENDPOINT_URLS=true), else https://secretsmanager.<region>.<dns suffix>
# of the region's partition (partition_dns_suffix). Region: the secret ARN's, else AWS_REGION /
# AWS_DEFAULT_REGION. Requests carry the User-Agent USER_AGENT. Every failure is exit 13 with a
# named reason, before any target file is touched:
#   bundle-credentials-missing   no credentials in any source the path knows
#   bundle-access-denied         Secrets Manager refused the credentials or the policy denied
#   bundle-endpoint-unreachable  no connection, DNS, TLS or timeout talking to the endpoint
#   bundle-fetch-failed          anything else (the secret is gone, a malformed answer, ...)

INSTALLER_VERSION = "0.1.0"  # pyproject.toml's version (tests/unit/test_installer_fetch.py ties them)
USER_AGENT = f"acm-cert-rollout-installer/{INSTALLER_VERSION}"
FETCH_PATHS = ("auto", "botocore", "stdlib", "aws-cli")
SERVICE = "secretsmanager"
TARGET_GET_SECRET_VALUE = "secretsmanager.GetSecretValue"
JSON_11 = "application/x-amz-json-1.1"
IMDS_ENDPOINT = "http://169.254.169.254"
IMDS_TIMEOUT = 1.0
FETCH_ATTEMPTS = 3  # throttling, 5xx and dropped connections are retried within the command timeout
# Error codes that mean "these credentials may not read the bundle": the policy (AccessDenied)
# or the credentials themselves (unknown, expired, badly signed).
ACCESS_DENIED_CODES = frozenset({
    "AccessDeniedException", "AccessDenied", "UnrecognizedClientException", "InvalidClientTokenId",
    "InvalidSignatureException", "SignatureDoesNotMatch", "IncompleteSignature", "ExpiredTokenException",
    "ExpiredToken", "MissingAuthenticationToken", "InvalidToken"})
RETRIED_CODES = frozenset({"ThrottlingException", "Throttling", "TooManyRequestsException", "InternalServiceError",
                           "InternalFailure", "ServiceUnavailable", "RequestTimeout"})
# DNS suffix per partition, by region prefix (botocore/data/partitions.json "dnsSuffix"; the
# first matching prefix wins; everything else is the "aws" partition, amazonaws.com).
PARTITION_DNS_SUFFIXES = (
    ("cn-", "amazonaws.com.cn"),         # aws-cn
    ("us-isob-", "sc2s.sgov.gov"),       # aws-iso-b
    ("us-isof-", "csp.hci.ic.gov"),      # aws-iso-f
    ("us-iso-", "c2s.ic.gov"),           # aws-iso
    ("eu-isoe-", "cloud.adc-e.uk"),      # aws-iso-e
    ("eusc-", "amazonaws.eu"),           # aws-eusc
)


def _bundle_failure(reason: str, detail: str) -> RolloutFailure:
    return RolloutFailure("fetch", EXIT_FETCH, f"{reason}: {REDACT(detail)}: nothing changed", reason=reason)


def partition_dns_suffix(region: str) -> str:
    """The DNS suffix of ``region``'s partition: "eu-west-1" -> "amazonaws.com", "cn-north-1" ->
    "amazonaws.com.cn", "us-gov-west-1" -> "amazonaws.com" (PARTITION_DNS_SUFFIXES)."""
    for prefix, suffix in PARTITION_DNS_SUFFIXES:
        if region.startswith(prefix):
            return suffix
    return "amazonaws.com"


def secret_region(secret_id: str) -> str:
    """The region to call: the secret ARN's, else AWS_REGION / AWS_DEFAULT_REGION; none:
    RolloutFailure bundle-fetch-failed."""
    parts = secret_id.split(":")
    if len(parts) > 3 and parts[0] == "arn" and re.fullmatch(r"[a-z0-9-]{1,32}", parts[3]):
        return parts[3]
    region = (os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "").strip()
    if not region:
        raise _bundle_failure("bundle-fetch-failed", "no region: the secret id is not an ARN and neither "
                              "AWS_REGION nor AWS_DEFAULT_REGION is set")
    return region


def configured_endpoint() -> str | None:
    """AWS_ENDPOINT_URL_SECRETS_MANAGER, else AWS_ENDPOINT_URL, else None (the service's own);
    both ignored when AWS_IGNORE_CONFIGURED_ENDPOINT_URLS is true (the SDKs' rule)."""
    if os.environ.get("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS", "").strip().lower() == "true":
        return None
    for name in ("AWS_ENDPOINT_URL_SECRETS_MANAGER", "AWS_ENDPOINT_URL"):
        value = os.environ.get(name, "").strip()
        if value:
            return value
    return None


def secrets_manager_endpoint(region: str) -> str:
    """configured_endpoint(), else https://secretsmanager.<region>.<partition DNS suffix>."""
    return configured_endpoint() or f"https://{SERVICE}.{region}.{partition_dns_suffix(region)}"


class Credentials:
    """An access key pair (and session token) and where it came from (never printed)."""

    def __init__(self, access_key: str, secret_key: str, token: str | None, source: str) -> None:
        self.access_key = access_key
        self.secret_key = secret_key
        self.token = token or None
        self.source = source
        for secret in (secret_key, token):
            if secret:
                REDACT.add_password(secret)


def _hmac(key: bytes, text: str) -> bytes:
    import hashlib
    import hmac

    return hmac.new(key, text.encode("utf-8"), hashlib.sha256).digest()


def sigv4_authorization(method: str, url: str, headers: dict[str, str], body: bytes, region: str, service: str,
                        credentials: Credentials, amz_date: str) -> str:
    """The Authorization header of an AWS Signature Version 4 request (AWS General Reference,
    "Create a signed AWS API request"; checked against the published test suite's post-vanilla
    vector and botocore's SigV4Auth in tests/unit/test_installer_fetch.py).

    ``headers``: every header to sign (Host and X-Amz-Date included, any case); ``amz_date``:
    "YYYYMMDDTHHMMSSZ" (UTC). The canonical request is method, URI-encoded path ("/" when
    empty), sorted query string, lowercase trimmed headers sorted by name, the signed header
    list and the hex SHA-256 of ``body``; the string to sign is "AWS4-HMAC-SHA256", the date, the
    scope date/region/service/aws4_request and the hex SHA-256 of the canonical request."""
    import hashlib
    from urllib.parse import quote, urlsplit

    parts = urlsplit(url)
    path = quote(parts.path or "/", safe="/-_.~")
    query = "&".join(sorted(
        f"{quote(k, safe='-_.~')}={quote(v, safe='-_.~')}" for k, _, v in
        (pair.partition("=") for pair in parts.query.split("&") if pair)))
    canonical_headers = {k.strip().lower(): " ".join(str(v).split()) for k, v in headers.items()}
    names = sorted(canonical_headers)
    signed = ";".join(names)
    canonical = "\n".join([method.upper(), path, query, "".join(f"{n}:{canonical_headers[n]}\n" for n in names),
                           signed, hashlib.sha256(body).hexdigest()])
    scope = f"{amz_date[:8]}/{region}/{service}/aws4_request"
    to_sign = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode("utf-8")).hexdigest()])
    key = _hmac(("AWS4" + credentials.secret_key).encode("utf-8"), amz_date[:8])
    for part in (region, service, "aws4_request"):
        key = _hmac(key, part)
    signature = _hmac(key, to_sign).hex()
    return (f"AWS4-HMAC-SHA256 Credential={credentials.access_key}/{scope}, SignedHeaders={signed}, "
            f"Signature={signature}")


def _env_credentials() -> tuple[Credentials | None, str]:
    key = os.environ.get("AWS_ACCESS_KEY_ID", "").strip()
    secret = os.environ.get("AWS_SECRET_ACCESS_KEY", "").strip()
    if key and secret:
        return Credentials(key, secret, os.environ.get("AWS_SESSION_TOKEN", "").strip(), "the environment"), ""
    if key or secret:
        return None, "the environment has only one of AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
    return None, "no AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY in the environment"


def _file_credentials() -> tuple[Credentials | None, str]:
    import configparser

    path = os.environ.get("AWS_SHARED_CREDENTIALS_FILE", "").strip() or os.path.join("~", ".aws", "credentials")
    path = os.path.expanduser(path)  # HOME, or the user's home from the password database when unset
    profile = (os.environ.get("AWS_PROFILE") or os.environ.get("AWS_DEFAULT_PROFILE") or "default").strip()
    if not os.path.isfile(path):
        return None, f"no shared credentials file {path}"
    parser = configparser.RawConfigParser()
    try:
        parser.read(path, encoding="utf-8")
    except (OSError, configparser.Error, UnicodeDecodeError) as exc:
        return None, f"the shared credentials file {path} cannot be read ({type(exc).__name__})"
    if not parser.has_section(profile):
        return None, f"no profile {profile!r} in {path}"
    section = parser[profile]
    key, secret = section.get("aws_access_key_id", "").strip(), section.get("aws_secret_access_key", "").strip()
    if not (key and secret):
        return None, f"profile {profile!r} in {path} has no aws_access_key_id/aws_secret_access_key"
    return Credentials(key, secret, section.get("aws_session_token", "").strip(),
                       f"the shared credentials file (profile {profile})"), ""


def _imds_credentials() -> tuple[Credentials | None, str]:
    from urllib.request import Request

    if os.environ.get("AWS_EC2_METADATA_DISABLED", "").strip().lower() == "true":
        return None, "instance metadata disabled (AWS_EC2_METADATA_DISABLED)"
    base = (os.environ.get("AWS_EC2_METADATA_SERVICE_ENDPOINT", "").strip() or IMDS_ENDPOINT).rstrip("/")
    opener = _opener(proxies=False)  # the link-local metadata service is never reached through a proxy
    try:
        with opener.open(Request(base + "/latest/api/token", method="PUT",
                                 headers={"X-aws-ec2-metadata-token-ttl-seconds": "21600"}),
                         timeout=IMDS_TIMEOUT) as response:
            token = response.read().decode("ascii", "replace").strip()
        headers = {"X-aws-ec2-metadata-token": token}
        REDACT.add_password(token)
        path = base + "/latest/meta-data/iam/security-credentials/"
        with opener.open(Request(path, headers=headers), timeout=IMDS_TIMEOUT) as response:
            roles = response.read().decode("utf-8", "replace").split()
        if not roles:
            return None, "instance metadata: no instance profile role"
        with opener.open(Request(path + roles[0], headers=headers), timeout=IMDS_TIMEOUT) as response:
            doc = json.loads(response.read().decode("utf-8"))
    except (OSError, ValueError) as exc:
        return None, f"instance metadata (IMDSv2) at {base}: no credentials ({type(exc).__name__})"
    if not isinstance(doc, dict) or not doc.get("AccessKeyId") or not doc.get("SecretAccessKey"):
        return None, "instance metadata: the role's credentials document has no access key"
    return Credentials(str(doc["AccessKeyId"]), str(doc["SecretAccessKey"]), str(doc.get("Token") or ""),
                       f"instance metadata (role {roles[0]})"), ""


def find_credentials() -> tuple[Credentials | None, list[str]]:
    """(credentials, what was tried without success): the environment, the shared credentials
    file, then IMDSv2, the first source that has them (module comment above)."""
    tried: list[str] = []
    for source in (_env_credentials, _file_credentials, _imds_credentials):
        found, why = source()
        if found is not None:
            return found, tried
        tried.append(why)
    return None, tried


def _opener(proxies: bool = True) -> Any:
    import ssl
    from urllib.request import HTTPSHandler, ProxyHandler, build_opener

    cafile = os.environ.get("AWS_CA_BUNDLE", "").strip() or None
    handlers: list[Any] = [HTTPSHandler(context=ssl.create_default_context(cafile=cafile))]
    if not proxies:
        handlers.append(ProxyHandler({}))
    return build_opener(*handlers)


def _error_code(raw: bytes, header: str | None) -> tuple[str, str]:
    """(code, message) of a JSON 1.1 error answer: "__type" (its part after "#") or the
    x-amzn-ErrorType header (its part before ":")."""
    try:
        doc = json.loads(raw.decode("utf-8"))
    except ValueError:
        doc = {}
    doc = doc if isinstance(doc, dict) else {}
    code = str(doc.get("__type") or header or "").split(":", 1)[0].rsplit("#", 1)[-1]
    message = str(doc.get("message") or doc.get("Message") or "")
    return code or "UnknownError", message[:300]


def _signed_request(url: str, host: str, body: bytes, region: str, credentials: Credentials) -> Any:
    """The POST of ``body`` to ``url``, signed now (SigV4), with the installer's User-Agent."""
    from urllib.request import Request

    amz_date = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    headers = {"Host": host, "X-Amz-Date": amz_date, "Content-Type": JSON_11, "X-Amz-Target": TARGET_GET_SECRET_VALUE}
    if credentials.token:
        headers["X-Amz-Security-Token"] = credentials.token
    headers["Authorization"] = sigv4_authorization("POST", url, headers, body, region, SERVICE, credentials, amz_date)
    headers["User-Agent"] = USER_AGENT
    return Request(url, data=body, headers=headers, method="POST")


def _secret_of(raw: bytes) -> str:
    """The SecretString of a GetSecretValue answer; else RolloutFailure bundle-fetch-failed."""
    try:
        doc = json.loads(raw.decode("utf-8"))
    except ValueError:
        raise _bundle_failure("bundle-fetch-failed", "the answer of GetSecretValue is not JSON") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("SecretString"), str):
        raise _bundle_failure("bundle-fetch-failed", "the answer of GetSecretValue has no SecretString")
    return str(doc.pop("SecretString"))


def _http_problem(exc: Any) -> str:
    """What an HTTP error answer says, when it is worth another try (throttling, 5xx); else
    RolloutFailure bundle-access-denied or bundle-fetch-failed."""
    code, message = _error_code(exc.read(), exc.headers.get("x-amzn-ErrorType"))
    if code in ACCESS_DENIED_CODES:
        raise _bundle_failure("bundle-access-denied", f"Secrets Manager answered {code}: {message}")
    problem = f"Secrets Manager answered HTTP {exc.code} {code}: {message}"
    if exc.code >= 500 or code in RETRIED_CODES:
        return problem
    raise _bundle_failure("bundle-fetch-failed", problem)


def _connection_problem(exc: BaseException, url: str) -> str:
    """What a connection failure was, when it is worth another try (a dropped connection); else
    RolloutFailure bundle-endpoint-unreachable (refused, DNS, TLS, timeout)."""
    why = getattr(exc, "reason", exc)
    problem = f"cannot reach {url}: {type(why).__name__}: {str(why)[:200]}"
    if isinstance(why, ConnectionResetError) or "Remote end closed" in str(why):
        return problem
    raise _bundle_failure("bundle-endpoint-unreachable", problem)


def fetch_stdlib(secret_id: str, version_id: str, timeout: float, credentials: Credentials) -> str:
    """GetSecretValue with the standard library (urllib) -> its SecretString. Bounded by
    ``timeout`` seconds in all, FETCH_ATTEMPTS tries for throttling, 5xx and dropped
    connections. Raises RolloutFailure bundle-access-denied / bundle-endpoint-unreachable /
    bundle-fetch-failed (exit 13), naming the AWS error code, never the secret."""
    from urllib.error import HTTPError
    from urllib.parse import urlsplit

    region = secret_region(secret_id)
    endpoint = secrets_manager_endpoint(region)
    parts = urlsplit(endpoint)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise _bundle_failure("bundle-fetch-failed", f"the endpoint {endpoint!r} is not an http(s) URL")
    default_port = {"http": 80, "https": 443}[parts.scheme]
    host = parts.hostname + (f":{parts.port}" if parts.port and parts.port != default_port else "")
    url = f"{parts.scheme}://{host}{parts.path or '/'}"
    request_body = {"SecretId": secret_id}
    if version_id:
        request_body["VersionId"] = version_id
    body = json.dumps(request_body).encode("utf-8")
    log(f"bundle fetch: standard-library client, credentials from {credentials.source}, endpoint {url}")
    deadline = time.monotonic() + timeout
    opener = _opener()
    problem = f"no answer from {url} within {timeout:g} s"
    for attempt in range(FETCH_ATTEMPTS):
        left = deadline - time.monotonic()
        if left <= 0:
            break
        try:
            with opener.open(_signed_request(url, host, body, region, credentials), timeout=left) as response:
                return _secret_of(response.read())
        except HTTPError as exc:
            problem = _http_problem(exc)
        except (OSError, ValueError) as exc:  # URLError, refused, DNS, TLS, timeout, reset
            problem = _connection_problem(exc, url)
        if attempt + 1 < FETCH_ATTEMPTS:
            time.sleep(min(0.2 * 2 ** attempt, max(0.0, deadline - time.monotonic())))
    reason = "bundle-fetch-failed" if problem.startswith("Secrets Manager answered") else "bundle-endpoint-unreachable"
    raise _bundle_failure(reason, problem + f" ({FETCH_ATTEMPTS} tries at most)")


def fetch_botocore(secret_id: str, version_id: str, timeout: float) -> str:
    """GetSecretValue through botocore (its own credential chain and retries) -> SecretString.
    Raises the RolloutFailure reasons of fetch_stdlib, and bundle-credentials-missing."""
    import botocore.session
    from botocore import exceptions as errors
    from botocore.config import Config

    region = secret_region(secret_id)
    endpoint = configured_endpoint()
    log(f"bundle fetch: botocore {getattr(botocore, '__version__', '?')}, endpoint "
        f"{endpoint or 'of the region ' + region}")
    config = Config(user_agent_extra=USER_AGENT, connect_timeout=min(timeout, 10.0), read_timeout=timeout,
                    retries={"max_attempts": FETCH_ATTEMPTS, "mode": "standard"})
    kwargs = {"SecretId": secret_id}
    if version_id:
        kwargs["VersionId"] = version_id
    try:
        client: Any = botocore.session.get_session().create_client(SERVICE, region_name=region,
                                                                    endpoint_url=endpoint, config=config)
        answer = client.get_secret_value(**kwargs)
    except (errors.NoCredentialsError, errors.PartialCredentialsError, errors.ProfileNotFound) as exc:
        raise _bundle_failure("bundle-credentials-missing", f"botocore found no credentials ({type(exc).__name__})") \
            from None
    except errors.ClientError as exc:
        error = exc.response.get("Error", {})
        code, message = str(error.get("Code") or "UnknownError"), str(error.get("Message") or "")[:300]
        reason = "bundle-access-denied" if code in ACCESS_DENIED_CODES else "bundle-fetch-failed"
        raise _bundle_failure(reason, f"Secrets Manager answered {code}: {message}") from None
    except (errors.EndpointConnectionError, errors.ConnectTimeoutError, errors.ReadTimeoutError,
            errors.SSLError, errors.ConnectionClosedError) as exc:
        raise _bundle_failure("bundle-endpoint-unreachable", f"{type(exc).__name__}: {str(exc)[:200]}") from None
    except errors.BotoCoreError as exc:
        raise _bundle_failure("bundle-fetch-failed", f"botocore: {type(exc).__name__}: {str(exc)[:200]}") from None
    secret = answer.get("SecretString")
    if not isinstance(secret, str):
        raise _bundle_failure("bundle-fetch-failed", "the answer of GetSecretValue has no SecretString")
    return secret


_CLI_REASONS = (  # (text in the AWS CLI's error, reason): the first match wins
    ("Unable to locate credentials", "bundle-credentials-missing"),
    ("Partial credentials", "bundle-credentials-missing"),
    ("Could not connect to the endpoint", "bundle-endpoint-unreachable"),
    ("Connect timeout", "bundle-endpoint-unreachable"),
    ("Read timeout", "bundle-endpoint-unreachable"),
)


def fetch_aws_cli(secret_id: str, version_id: str, timeout: float) -> str:
    """`aws secretsmanager get-secret-value ... --query SecretString --output text` -> its
    stdout. Output is captured, never printed. The region is ``secret_id``'s (an ARN) unless
    AWS_REGION/AWS_DEFAULT_REGION is set. Raises the RolloutFailure reasons of fetch_stdlib and
    bundle-credentials-missing, with the CLI's (redacted) error text."""
    aws = shutil.which("aws")
    if not aws:
        raise _bundle_failure("bundle-fetch-failed", "the AWS CLI is not on PATH (CERT_ROLLOUT_FETCH=aws-cli)")
    argv = [aws, "secretsmanager", "get-secret-value", "--secret-id", secret_id]
    if version_id:
        argv += ["--version-id", version_id]
    argv += ["--query", "SecretString", "--output", "text"]
    parts = secret_id.split(":")
    if len(parts) > 3 and parts[0] == "arn" and parts[3] and not (
            os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")):
        argv += ["--region", parts[3]]
    log(f"bundle fetch: the AWS CLI ({aws})")
    try:
        proc = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise _bundle_failure("bundle-fetch-failed", f"the AWS CLI timed out after {timeout:g} s") from None
    except OSError as exc:
        raise _bundle_failure("bundle-fetch-failed", f"the AWS CLI could not start: {_os_error(exc)}") from None
    if proc.returncode != 0:
        err = str(REDACT(_decode(proc.stderr).strip()))[-500:]
        reason = next((r for text, r in _CLI_REASONS if text in err), None)
        if reason is None:
            codes = re.findall(r"\(([A-Za-z]+)\)", err)
            reason = "bundle-access-denied" if any(c in ACCESS_DENIED_CODES for c in codes) else "bundle-fetch-failed"
        raise _bundle_failure(reason, f"the AWS CLI failed (exit {proc.returncode}): {err}")
    return _decode(proc.stdout)


def fetch_path() -> str:
    """CERT_ROLLOUT_FETCH (default auto); another value: RolloutFailure exit 2."""
    value = os.environ.get("CERT_ROLLOUT_FETCH", "").strip().lower() or "auto"
    if value not in FETCH_PATHS:
        raise RolloutFailure("fetch", EXIT_PARAMS, "CERT_ROLLOUT_FETCH must be one of " + ", ".join(FETCH_PATHS))
    return value


def _botocore_importable() -> bool:
    try:
        import botocore.session  # noqa: F401
    except Exception:  # not installed, or broken: the standard-library client does the call
        return False
    return True


def secret_string(secret_id: str, version_id: str, timeout: float, result: dict[str, Any] | None = None) -> str:
    """The SecretString of ``secret_id`` (version ``version_id``, empty: AWSCURRENT) by the path
    CERT_ROLLOUT_FETCH picks (module comment above); ``result["fetchPath"]`` names the path used."""
    path = fetch_path()
    if path == "auto":
        path = "botocore" if _botocore_importable() else "stdlib"
    if result is not None:
        result["fetchPath"] = path
    if path == "botocore":
        return fetch_botocore(secret_id, version_id, timeout)
    if path == "aws-cli":
        return fetch_aws_cli(secret_id, version_id, timeout)
    credentials, tried = find_credentials()
    if credentials is None:
        if fetch_path() == "auto" and shutil.which("aws"):
            log("bundle fetch: no credentials for the standard-library client (" + "; ".join(tried)
                + "): trying the AWS CLI")
            if result is not None:
                result["fetchPath"] = "aws-cli"
            return fetch_aws_cli(secret_id, version_id, timeout)
        raise _bundle_failure("bundle-credentials-missing", "; ".join(tried))
    return fetch_stdlib(secret_id, version_id, timeout, credentials)


def staged_password(secret: dict[str, Any], secret_id: str) -> str:
    """The password of passwordSecret ``secret_id`` as ExportCertificate staged it in the
    rollout's bundle (``passwords``; the node never reads the password secret itself: its
    policy allows only the staged bundles). Added to the redaction set at once. Refused (fetch,
    13, naming the secret, never the value): not staged (with ExportCertificate's reason from
    ``passwordErrors``), empty, NUL/CR/LF inside."""
    what = f"password secret {secret_id!r}"
    staged = secret.get("passwords")
    password = staged.get(secret_id) if isinstance(staged, dict) else None
    if not isinstance(password, str):
        errors = secret.get("passwordErrors")
        why = errors.get(secret_id) if isinstance(errors, dict) else None
        raise RolloutFailure("fetch", EXIT_FETCH, f"{what} is not in the staged bundle: "
                             f"{why if isinstance(why, str) else 'ExportCertificate did not stage it'}")
    for part in [password] + password.splitlines():
        REDACT.add_password(part)
    if not password:
        raise RolloutFailure("fetch", EXIT_FETCH, f"{what} is empty")
    if any(ch in password for ch in "\x00\r\n"):
        raise RolloutFailure("fetch", EXIT_FETCH,
                             f"{what} holds a NUL, CR or newline character: the password must be one line")
    return password


def fetch_secret(arn: str, version_id: str, timeout: float, result: dict[str, Any] | None = None) -> dict[str, Any]:
    """The staged bundle's secret string (secret_string: the fetch path of CERT_ROLLOUT_FETCH)
    -> parsed secret JSON. Never printed. Raises RolloutFailure (fetch, 13) with a named reason
    (bundle-credentials-missing, bundle-access-denied, bundle-endpoint-unreachable,
    bundle-fetch-failed), before any target file is touched."""
    log("fetching secret version %s" % (version_id or "AWSCURRENT"))
    text = secret_string(arn, version_id, timeout, result).rstrip("\n")
    try:
        secret = json.loads(text)
    except ValueError:
        raise _bundle_failure("bundle-fetch-failed", "the secret string is not JSON") from None
    finally:
        del text
    if not isinstance(secret, dict):
        raise _bundle_failure("bundle-fetch-failed", "the secret string is not a JSON object")
    return secret


# --------------------------------------------------------------------------- files


def _owner_ids(owner: Any, group: Any) -> tuple[int, int]:
    uid = gid = -1
    if owner not in (None, ""):
        if isinstance(owner, int) or str(owner).isdigit():
            uid = int(owner)
        else:
            import pwd

            try:
                uid = pwd.getpwnam(str(owner)).pw_uid
            except KeyError:
                raise RolloutFailure("write", EXIT_WRITE, f"unknown owner {owner!r}") from None
    if group not in (None, ""):
        if isinstance(group, int) or str(group).isdigit():
            gid = int(group)
        else:
            import grp

            try:
                gid = grp.getgrnam(str(group)).gr_gid
            except KeyError:
                raise RolloutFailure("write", EXIT_WRITE, f"unknown group {group!r}") from None
    return uid, gid


def _fsync_dir(path: str) -> None:
    try:
        fd = os.open(os.path.dirname(path) or ".", os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_file(path: str, data: bytes, mode: int, uid: int = -1, gid: int = -1) -> None:
    """Create/overwrite ``path`` with ``data``: created 0600, then chown, then chmod
    ``mode``, fsync. Never follows a symlink at ``path``."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
    done = False
    try:
        view = memoryview(data)
        while view:
            n = os.write(fd, view)
            view = view[n:]
        if uid != -1 or gid != -1:
            os.fchown(fd, uid, gid)
        os.fchmod(fd, mode)
        os.fsync(fd)
        done = True
    except OSError as exc:
        if exc.filename is None:
            exc.filename = path  # os.write/fsync errors carry no file name
        raise
    finally:
        os.close(fd)
        if not done:  # never leave a partial file (it may hold part of a key)
            try:
                os.unlink(path)
            except OSError:
                pass


def _read(path: str) -> bytes | None:
    try:
        with open(path, "rb") as f:
            return f.read()
    except (FileNotFoundError, IsADirectoryError):
        return None


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def new_password() -> str:
    """A random password for a key or keystore: 48 hex characters (192 bits)."""
    import secrets

    return secrets.token_hex(24)


def _openssl(argv: list[str], stdin: bytes, timeout: float, what: str, key_pipe: bytes | None = None,
             password: str | None = None) -> bytes:
    """Run the system openssl with ``stdin`` and return its stdout. Key material and
    passwords are never arguments nor plain files: they go through stdin, or with
    ``key_pipe`` through a pipe that openssl reads as /dev/fd/N (the argument "{keyfd}" is
    replaced by that path), ``password`` through a pipe read by "-passout fd:N" ("{passfd}").
    Raises RolloutFailure(write, 12) with openssl's redacted error text."""
    openssl = shutil.which("openssl")
    if not openssl:
        raise _missing("openssl-missing", f"cannot build {what}: openssl is not on PATH")
    fds: list[int] = []
    pipes = [("{keyfd}", "/dev/fd/", key_pipe)]
    if password is not None:
        pipes.append(("{passfd}", "fd:", (password + "\n").encode("utf-8")))
    try:
        for placeholder, prefix, data in pipes:
            if data is None:
                continue
            if len(data) > 60000:
                raise RolloutFailure("write", EXIT_WRITE, f"cannot build {what}: key or password too large")
            r, w = os.pipe()
            fds.append(r)
            try:
                os.write(w, data)  # fits the pipe buffer: no reader needed yet
            finally:
                os.close(w)
            argv = [a.replace(placeholder, f"{prefix}{r}") for a in argv]
    except BaseException:
        for fd in fds:
            os.close(fd)
        raise
    try:
        proc = subprocess.run([openssl] + argv, input=stdin, capture_output=True, timeout=timeout,
                              pass_fds=tuple(fds))
    except subprocess.TimeoutExpired:
        raise RolloutFailure("write", EXIT_WRITE, f"cannot build {what}: openssl timed out") from None
    finally:
        for fd in fds:
            os.close(fd)
    if proc.returncode != 0 or not proc.stdout:
        err = str(REDACT(_decode(proc.stderr).strip()))[-300:]
        raise RolloutFailure("write", EXIT_WRITE,
                             f"cannot build {what}: openssl exit {proc.returncode}: {err}")
    return proc.stdout


def encrypt_key(plain_key_pem: str, password: str, timeout: float) -> bytes:
    """Plain key PEM -> encrypted PKCS#8 PEM (PBES2, AES-256-CBC) under ``password``."""
    out = _openssl(["pkcs8", "-topk8", "-v2", "aes-256-cbc", "-passout", "{passfd}"],
                   plain_key_pem.encode("ascii"), timeout, "an encrypted key", password=password)
    REDACT.add_secret_text(_decode(out))
    blocks = pem_blocks(_decode(out))
    if len(blocks) != 1 or blocks[0][0] != "ENCRYPTED " + _PK:
        raise RolloutFailure("write", EXIT_WRITE, "cannot build an encrypted key: unexpected openssl output")
    return join_pem([blocks[0][1]]).encode("ascii")


def read_password_file(path: str) -> None:
    """Check the operator's password file (first line, non-empty); remember it for redaction."""
    data = _read(path)
    if data is None:
        raise RolloutFailure("write", EXIT_WRITE, f"password file {path} does not exist")
    first = data.decode("utf-8", "replace").splitlines()[0] if data.strip() else ""
    if not first.strip():
        raise RolloutFailure("write", EXIT_WRITE, f"password file {path} is empty")
    REDACT.add_password(first.strip())


def make_pkcs12(bundle: Bundle, spec: FileSpec, timeout: float, password: str | None = None) -> bytes:
    """A PKCS#12 keystore of leaf + chain + key. The password is ``password`` (from the
    spec's passwordSecret), else the first line of the spec's passwordFile; a missing file
    is created once with a random password (0600)."""
    certs = bundle.content("fullchain", spec.path)  # leaf first: the key's certificate
    key = bundle.content("key", spec.path)
    argv = ["pkcs12", "-export", "-name", spec.alias or "certificate", "-inkey", "{keyfd}", "-passout"]
    if password is not None:
        return _openssl(argv + ["{passfd}"], certs.encode("ascii"), timeout, "a PKCS#12 keystore",
                        key_pipe=key.encode("ascii"), password=password)
    password_file = spec.password_file or spec.path + PASSWORD_SUFFIX
    if _read(password_file) is None:
        if not os.path.isdir(os.path.dirname(password_file)):
            raise RolloutFailure("write", EXIT_WRITE, f"directory of {password_file} does not exist")
        password = new_password()
        REDACT.add_password(password)
        uid, gid = _owner_ids(spec.owner, spec.group)
        write_file(password_file, (password + "\n").encode("ascii"), 0o600, uid, gid)
        log(f"created keystore password file {password_file}")
    read_password_file(password_file)
    return _openssl(argv + ["file:" + password_file], certs.encode("ascii"), timeout,
                    "a PKCS#12 keystore", key_pipe=key.encode("ascii"))


def fetch_passwords(target: Target, secret: dict[str, Any]) -> dict[str, str]:
    """{file path: password} of every file whose password is kept in Secrets Manager, from the
    staged bundle ``secret`` (staged_password)."""
    return {spec.path: staged_password(secret, spec.password_secret)
            for spec in target.files if spec.password_secret}


def build_changes(target: Target, bundle: Bundle, timeout: float = 60.0,
                  passwords: dict[str, str] | None = None) -> list[Change]:
    """Build every file's content in memory, in the target's file order. ``passwords``:
    fetch_passwords' {path: password}. Raises RolloutFailure(write, 12): nothing changed."""
    built: dict[str, Change] = {}
    passwords = dict(passwords or {})
    current = ""
    try:
        check_targets(target)
        # password files first: the encrypted key is built with its staged password file
        ordered = sorted(target.files, key=lambda f: 0 if f.content == PASSWORD else 1)
        for spec in ordered:
            current = spec.path
            uid, gid = _owner_ids(spec.owner, spec.group)
            if spec.content == PASSWORD:
                owner = spec.key_spec.path if spec.key_spec else spec.path
                if owner not in passwords:  # an encrypted key's new random password
                    passwords[owner] = new_password()
                    REDACT.add_password(passwords[owner])
                data = (passwords[owner] + "\n").encode("utf-8")
            elif spec.content == "encrypted-key":
                data = encrypt_key(bundle.content("key", spec.path), passwords[spec.path], timeout)
            elif spec.content == "pkcs12":
                data = make_pkcs12(bundle, spec, timeout, passwords.get(spec.path))
            else:
                data = bundle.content(str(spec.content), spec.path).encode("ascii")
            built[spec.path] = Change(spec.path, data, spec.mode, uid, gid)
    except (OSError, UnicodeEncodeError) as exc:
        raise RolloutFailure("write", EXIT_WRITE,
                             "cannot stage {}: {}".format(current or "files", _os_error(exc))) from None
    return [built[spec.path] for spec in target.files]


def check_targets(target: Target) -> None:
    """Before anything is fetched or written: every file's directory exists, and no file
    (nor a keystore's password file) is a directory."""
    for spec in target.files:
        if not os.path.isdir(os.path.dirname(spec.path)):
            raise RolloutFailure("write", EXIT_WRITE, f"directory of {spec.path} does not exist")
        extra = [spec.password_file] if spec.content == "pkcs12" and spec.password_file else []
        for path in [spec.path] + extra:
            if os.path.isdir(path):
                raise RolloutFailure("write", EXIT_WRITE,
                                     f"{path} is a directory, not a file: refusing to install over it")


def _os_error(exc: BaseException) -> str:
    if isinstance(exc, OSError):
        text = str(exc.strerror or exc)
        if exc.filename:
            where = str(exc.filename)
            if getattr(exc, "filename2", None):
                where += " -> " + str(exc.filename2)
            text = where + ": " + text
        return text
    return type(exc).__name__


# --------------------------------------------------------------------------- state, lock, journal
#
# How the set of files of one target changes as one unit. Two designs were weighed:
#   certbot (certbot/_internal/storage.py): every version is kept in archive/ and live/ holds
#     one symlink per file; update_all_links_to() re-points the links ONE AT A TIME, keeps the
#     previous links while it does, and on its next start repairs a lineage whose links point
#     at different versions. It needs the server to read symlinks the installer owns, and the
#     set is still not swapped in one step (nor locked: "TODO: consider locking").
#   consul-template (renderer/renderer.go AtomicWrite): write a temp file beside the destination,
#     fsync, keep one ".bak", rename over. Atomic per file, nothing for a set of files.
# We follow consul-template per file (operators name any path; servers read plain files; a
# rename beside the file is atomic on one file system) and add what neither has: a lock per
# target (fcntl.flock), a write-ahead journal that makes the set one unit, and recovery by the
# next command (certbot's "repair on next start", done before anything else). Recovery rolls
# a half-done change BACK to the complete old set: the simple, safe choice.
#
# State directory (node-local, mode 0700, owned by the installer's user, root in production):
#   $CERT_ROLLOUT_STATE_DIR (default /var/lib/cert-rollout) / <targetId> /
#     lock          flock'ed by the running command (one install or rollback at a time)
#     journal.json  the running transaction (0600, fsynced BEFORE any live file changes): txn
#                   id, action, the paths, and the pre-image (each file's bytes, mode, owner,
#                   or "absent")
#     backup.json   ONE generation: the pre-image of the last committed install (0600); what
#                   `rollback` restores. Commit = os.replace(journal.json, backup.json): one
#                   atomic step, so a kill leaves either the journal (revert) or the backup.
# Backups live here, not beside the live file: no key copy in the server's directory, one
# generation by construction. Staged files live beside the live file as
# "<path>.rollout-<txn>.new" (one file system, so the rename is atomic); their names follow from
# the journal, so recovery removes them. CERT_ROLLOUT_STATE_DIR is the node's environment (the
# SSM agent's), never a document parameter: the inventory cannot move it.

JOURNAL = "journal.json"
BACKUP = "backup.json"
EXIT_LOCK = 16
EXIT_OLDER = 17
EXIT_STATE = 18
_TXN_NAME = re.compile(r"[0-9a-f]{16}")


def _fault(point: str) -> None:
    """Test hook: SIGKILL this process at ``point`` when CERT_ROLLOUT_FAULT is "crash-<point>".
    Honoured only with CERT_ROLLOUT_TEST_HOOKS=1 AND CERT_ROLLOUT_STATE_DIR set (tests and the
    local cloud's nodes): node environment variables that no document parameter, and so no
    inventory item, can set (the document exports only ROLLOUT_* names)."""
    if os.environ.get("CERT_ROLLOUT_TEST_HOOKS") != "1" or not os.environ.get("CERT_ROLLOUT_STATE_DIR"):
        return
    if os.environ.get("CERT_ROLLOUT_FAULT") == "crash-" + point:
        log(f"test fault: killed at {point}")
        import signal

        os.kill(os.getpid(), signal.SIGKILL)


def _read_json(path: str) -> dict[str, Any] | None:
    data = _read(path)
    if data is None:
        return None
    try:
        value = json.loads(data.decode("utf-8"))
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


class _LockWait(Exception):
    pass


def _lock_alarm(signum: int, frame: Any) -> None:
    raise _LockWait()


class StateDir:
    """The node-local state of one target: lock, journal, one backup generation."""

    def __init__(self, target: Target) -> None:
        self.base = os.environ.get("CERT_ROLLOUT_STATE_DIR", "").strip() or DEFAULT_STATE_DIR
        name = target.target_id
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}", name):
            import hashlib

            name = "_" + hashlib.sha256("\n".join(f.path for f in target.files).encode()).hexdigest()[:16]
        self.path = os.path.join(self.base, name)
        self.fd = -1

    @staticmethod
    def _safe_dir(path: str) -> None:
        if not os.path.isdir(path):
            os.makedirs(path, 0o700, exist_ok=True)
        st = os.lstat(path)
        if not os.path.isdir(path) or os.path.islink(path) or st.st_uid != os.geteuid() or st.st_mode & 0o022:
            raise RolloutFailure("write", EXIT_STATE,
                                 f"state-dir-unsafe: {path} must be a directory owned by uid {os.geteuid()} "
                                 "and not writable by group or others: nothing changed", reason="state-dir-unsafe")

    def lock(self, wait: float) -> None:
        """Create the state directory (0700) and take its lock (fcntl.flock, blocking, bounded
        by a timer of ``wait`` seconds). Raises RolloutFailure lock-timeout (exit 16) when
        another command holds it that long, state-dir-unsafe (exit 18) for a directory
        another user could change."""
        import fcntl
        import signal

        try:
            self._safe_dir(self.base)
            self._safe_dir(self.path)
            os.chmod(self.path, 0o700)
            self.fd = os.open(self.file("lock"), os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o600)
        except OSError as exc:
            raise RolloutFailure("write", EXIT_STATE, f"state-dir-unsafe: cannot use {self.path}: {_os_error(exc)}",
                                 reason="state-dir-unsafe") from None
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            log(f"waiting up to {wait:g} s for the lock of {self.path}")
        previous = signal.signal(signal.SIGALRM, _lock_alarm)
        try:
            signal.setitimer(signal.ITIMER_REAL, max(wait, 0.001))
            fcntl.flock(self.fd, fcntl.LOCK_EX)
        except _LockWait:
            raise RolloutFailure("write", EXIT_LOCK, f"lock-timeout: another install or rollback of this target "
                                 f"held {self.path}/lock for {wait:g} s: nothing changed",
                                 reason="lock-timeout") from None
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)

    def file(self, name: str) -> str:
        return os.path.join(self.path, name)

    def journal(self) -> dict[str, Any] | None:
        return _read_json(self.file(JOURNAL))


def _staged_name(path: str, txn: str) -> str:
    return f"{path}.rollout-{txn}.new"


class Change:
    """One file of a transaction: the bytes to place at ``path`` (None = remove it), mode/owner."""

    def __init__(self, path: str, data: bytes | None, mode: int = 0o600, uid: int = -1, gid: int = -1) -> None:
        self.path = path
        self.data = data
        self.mode = mode
        self.uid = uid
        self.gid = gid


def pre_image(paths: list[str]) -> list[dict[str, Any]]:
    """The current files at ``paths`` for the journal: [{path, data (base64) or null when
    absent, mode, uid, gid}]."""
    entries: list[dict[str, Any]] = []
    for path in paths:
        data = _read(path)
        if data is None:
            entries.append({"path": path, "data": None})
            continue
        st = os.stat(path)
        entries.append({"path": path, "data": base64.b64encode(data).decode("ascii"),
                        "mode": st.st_mode & 0o7777, "uid": st.st_uid, "gid": st.st_gid})
    return entries


def changes_of(entries: list[dict[str, Any]]) -> list[Change]:
    """A journal's or backup's entries -> the Changes that put those files back."""
    return [Change(str(e["path"]), None if e.get("data") is None else base64.b64decode(e["data"]),
                   int(e.get("mode", 0o600)), int(e.get("uid", -1)), int(e.get("gid", -1))) for e in entries]


def _chown_ok(uid: int, gid: int) -> tuple[int, int]:
    """Owner ids to restore: only when this process may set them (root), else unchanged."""
    return (uid, gid) if os.geteuid() == 0 else (-1, -1)


def apply_changes(changes: list[Change], txn: str, point: str) -> None:
    """Write every change beside its path ("<path>.rollout-<txn>.new", fsynced), then rename
    them over (or remove the path), then fsync each directory once. ``point``: the test fault
    prefix (crash-after-<point>-<n> after the n-th rename)."""
    for change in changes:
        if change.data is not None:
            uid, gid = _chown_ok(change.uid, change.gid)
            write_file(_staged_name(change.path, txn), change.data, change.mode, uid, gid)
    _fault(f"after-stage-{point}")
    for n, change in enumerate(changes, 1):
        if change.data is None:
            _unlink(change.path)
        else:
            os.replace(_staged_name(change.path, txn), change.path)
        _fault(f"after-{point}-{n}")
    for directory in sorted({os.path.dirname(c.path) for c in changes}):
        _fsync_dir(os.path.join(directory, "."))


def remove_staged(paths: list[str], txn: str) -> None:
    for path in paths:
        _unlink(_staged_name(path, txn))


_UNREADABLE: PublicKeyId = ("unreadable",)


def _first_block(raw: bytes, wanted: str) -> str | None:
    """The first PEM block of ``raw`` whose label is ``wanted`` (CERTIFICATE) or, for
    ``wanted`` = _PK, ends with it (a private key of any form)."""
    for label, block in pem_blocks(raw.decode("ascii", "replace")):
        if label == wanted or (wanted == _PK and label.endswith(_PK)):
            return block
    return None


def _openssl_read(argv: list[str], raw: bytes, password: str, timeout: float, what: str) -> str | None:
    """Run openssl on ``raw`` (through a pipe) with ``password`` (through a pipe); its stdout
    text, or None when openssl is missing or fails (the caller reports "cannot be read")."""
    try:
        out = _openssl(argv, b"", timeout, what, key_pipe=raw, password=password)
    except RolloutFailure:
        return None
    text = _decode(out)
    REDACT.add_secret_text(text)
    return text


def _leaf_key_id(spec: FileSpec, raw: bytes, password: str | None, timeout: float) -> PublicKeyId | None:
    """The public key of the leaf a certificate-bearing file holds; None for other files."""
    if spec.content in ("fullchain", "leaf", "combined"):
        block = _first_block(raw, "CERTIFICATE")
        info = cert_info(block) if block else None
        return info.key_id if info else _UNREADABLE
    if spec.content == "pkcs12" and password:
        text = _openssl_read(["pkcs12", "-in", "{keyfd}", "-passin", "{passfd}", "-nokeys", "-clcerts"],
                             raw, password, timeout, "the keystore's certificate")
        block = _first_block((text or "").encode("ascii", "replace"), "CERTIFICATE")
        info = cert_info(block) if block else None
        return info.key_id if info else _UNREADABLE
    return None


def _private_key_id(spec: FileSpec, raw: bytes, password: str | None, timeout: float) -> PublicKeyId | None:
    """The public key of the private key a key-bearing file holds (an encrypted key and a
    keystore read with the system openssl and their password); None for other files."""
    if spec.content in ("key", "combined"):
        block = _first_block(raw, _PK)
        return (key_public_id(block) if block else None) or _UNREADABLE
    if spec.content == "encrypted-key" and password:
        text = _openssl_read(["pkey", "-in", "{keyfd}", "-passin", "{passfd}", "-pubout"], raw, password, timeout,
                             "the encrypted key's public key")
        der = _pem_der(text.strip()) if text else None
        try:
            _, start, end = _tlv(der, 0) if der else (0, 0, 0)
            return _spki_id(der, start, end) if der else _UNREADABLE
        except (IndexError, ValueError):
            return _UNREADABLE
    if spec.content == "pkcs12" and password:
        text = _openssl_read(["pkcs12", "-in", "{keyfd}", "-passin", "{passfd}", "-nocerts", "-nodes"], raw,
                             password, timeout, "the keystore's key")
        block = _first_block((text or "").encode("ascii", "replace"), _PK)
        return (key_public_id(block) if block else None) or _UNREADABLE
    return None


def _file_password(spec: FileSpec, data: dict[str, bytes | None], passwords: dict[str, str]) -> str | None:
    """The password of an encrypted key or keystore: its password file's first line (from the
    set being checked, else on disk), else the password read from Secrets Manager."""
    if spec.password_file:
        raw = data[spec.password_file] if spec.password_file in data else _read(spec.password_file)
        lines = (raw or b"").decode("utf-8", "replace").splitlines()
        if lines and lines[0].strip():
            return lines[0].strip()
    return passwords.get(spec.path)


def live_pair_problem(target: Target, data: dict[str, bytes | None], passwords: dict[str, str] | None = None,
                      timeout: float = 60.0) -> str | None:
    """Pair check of a set of file contents (path -> bytes, None = absent): the public key of
    the leaf in the first certificate-bearing file (fullchain, leaf, combined, pkcs12) against
    that of the private key in the first key-bearing file (key, combined, encrypted-key, pkcs12).
    Encrypted keys and keystores are read with the system openssl and their password (password
    file, or ``passwords`` {path: password} from Secrets Manager); without a password they are
    not compared. Returns why they are not a pair, or None (a pair, or nothing to compare)."""
    cert_id = key_id = None
    for spec in target.files:
        raw = data.get(spec.path)
        if raw is None:
            continue
        password = _file_password(spec, data, passwords or {}) if spec.content in ("encrypted-key", "pkcs12") \
            else None
        cert_id = cert_id or _leaf_key_id(spec, raw, password, timeout)
        key_id = key_id or _private_key_id(spec, raw, password, timeout)
    if cert_id is None or key_id is None:
        return None
    if cert_id == _UNREADABLE:
        return "the certificate cannot be read"
    if key_id == _UNREADABLE:
        return "the private key cannot be read (an unsupported or malformed key, or a wrong password)"
    if cert_id != key_id:
        return "the private key does not match the certificate's public key"
    return None


def _read_set(target: Target) -> dict[str, bytes | None]:
    return {spec.path: _read(spec.path) for spec in target.files}


class Transaction:
    """The change of one target's set of files, under the state directory's lock."""

    def __init__(self, state: StateDir, target: Target, action: str) -> None:
        self.state = state
        self.target = target
        self.action = action
        self.txn = binascii.hexlify(os.urandom(8)).decode("ascii")
        self.journal: dict[str, Any] = {"txn": self.txn, "action": action, "phase": "swapping",
                                        "paths": [spec.path for spec in target.files]}

    def swap(self, changes: list[Change], serial: str | None) -> None:
        """Write-ahead: the journal with the pre-image (0600, fsynced), then ``changes``."""
        self.journal["serial"] = serial
        self.journal["preImage"] = pre_image(self.journal["paths"])
        tmp = self.state.file(JOURNAL) + ".tmp"  # a kill while writing leaves only this (removed)
        try:
            write_file(tmp, json.dumps(self.journal).encode("utf-8"), 0o600)
            os.replace(tmp, self.state.file(JOURNAL))
        except OSError as exc:
            _unlink(tmp)
            raise RolloutFailure("write", EXIT_STATE, f"state-dir-unsafe: cannot write the journal: "
                                 f"{_os_error(exc)}: nothing changed", reason="state-dir-unsafe") from None
        _fsync_dir(self.state.file(JOURNAL))
        _fault(f"after-journal-{self.action}")
        try:
            apply_changes(changes, self.txn, "rename" if self.action == "install" else "restore")
        except OSError as exc:
            errors = self.revert()
            raise RolloutFailure("write" if self.action == "install" else "rollback",
                                 EXIT_WRITE if self.action == "install" else EXIT_ROLLBACK,
                                 f"cannot install files: {_os_error(exc)}; previous files restored"
                                 + _restore_note(errors)) from None

    def revert(self) -> list[str]:
        """Put the pre-image back, remove staged files and the journal. Error texts, empty = done."""
        return revert_transaction(self.state, self.journal)

    def commit(self, keep_backup: bool) -> None:
        """The new set stays. ``keep_backup`` (an install): the journal, pre-image and all,
        becomes the one backup generation in one rename. Without (a rollback): the journal
        goes, then the backup it restored."""
        _fault(f"in-commit-{self.action}")
        if keep_backup:
            os.replace(self.state.file(JOURNAL), self.state.file(BACKUP))
        else:
            _unlink(self.state.file(JOURNAL))
            _unlink(self.state.file(BACKUP))
        _fsync_dir(self.state.file(BACKUP))
        remove_staged(self.journal["paths"], self.txn)


def revert_transaction(state: StateDir, journal: dict[str, Any]) -> list[str]:
    """Undo a journal's change: put its pre-image back (idempotent: the same bytes again where
    nothing was renamed yet), remove its staged files and the journal. Error texts, empty = done."""
    txn = str(journal.get("txn"))
    paths = [str(p) for p in journal.get("paths", [])]
    errors: list[str] = []
    try:
        apply_changes(changes_of(journal.get("preImage") or []), txn, "revert")
    except (OSError, ValueError, TypeError) as exc:
        errors.append(f"cannot restore the previous files: {_os_error(exc)}")
    remove_staged(paths, txn)
    if not errors:
        _unlink(state.file(JOURNAL))
        _fsync_dir(state.file(JOURNAL))
    return errors


def recover(state: StateDir, target: Target, runner: Runner) -> dict[str, Any] | None:
    """Before anything else: a transaction a killed command left behind is rolled back to the
    complete old set, then tested and reloaded (the server may have loaded the new set) when the
    restored pair checks. Returns what was done (ROLLOUT_RESULT "recovered"), None when there was
    nothing. Raises RolloutFailure recovery-failed (exit 18) when the old set cannot be restored."""
    for spec in target.files:  # a plain key an installer before the journal left beside the file
        _unlink(spec.path + NEW_SUFFIX)
    _unlink(state.file(JOURNAL) + ".tmp")
    journal = state.journal()
    if journal is None:
        if os.path.exists(state.file(JOURNAL)):
            raise RolloutFailure("write", EXIT_STATE, f"recovery-failed: unreadable journal in {state.path}",
                                 reason="recovery-failed")
        return None
    txn = str(journal.get("txn"))
    if not _TXN_NAME.fullmatch(txn) or not isinstance(journal.get("paths"), list):
        raise RolloutFailure("write", EXIT_STATE, f"recovery-failed: unreadable journal in {state.path}",
                             reason="recovery-failed")
    errors = revert_transaction(state, journal)
    if errors:
        raise RolloutFailure("write", EXIT_STATE, "recovery-failed: " + "; ".join(errors), reason="recovery-failed")
    done: dict[str, Any] = {"txn": txn, "action": journal.get("action"), "serial": journal.get("serial"),
                            "result": "reverted"}
    problem = live_pair_problem(target, _read_set(target), None, runner.timeout)
    done["pairCheck"] = problem or "ok"
    for label, argv in (("test-after-recovery", target.test_command),
                        ("reload-after-recovery", target.reload_command)):
        if argv and not problem:
            done[label] = "ok" if runner.run(label, argv).ok else "failed"
    log(f"recovered: the interrupted {journal.get('action')} (transaction {txn}) was rolled back")
    return done


def load_backup(state: StateDir) -> dict[str, Any] | None:
    """The one backup generation (backup.json: a committed install's journal), or None."""
    backup = _read_json(state.file(BACKUP))
    if backup is None or not isinstance(backup.get("preImage"), list):
        return None
    return backup


# --------------------------------------------------------------------------- actions


def parse_allow_older(text: str) -> int | None:
    """ROLLOUT_ALLOW_OLDER: the one serial (canonical colon hex) the operator asked for by name,
    which may replace a newer certificate of the same lineage; empty = None."""
    try:
        return parse_expected_serial(text)
    except RolloutFailure:
        raise RolloutFailure("write", EXIT_PARAMS, "ROLLOUT_ALLOW_OLDER must be canonical lowercase colon hex "
                                                   f"(like \"0f:ac:01\") or empty, got {text.strip()[:80]!r}") from None


def installed_leaf(target: Target) -> str | None:
    """The leaf now installed: the first certificate of the first fullchain, leaf or combined
    file on disk (a keystore cannot be read without its password); None when there is none."""
    for spec in target.files:
        if spec.content in ("fullchain", "leaf", "combined"):
            data = _read(spec.path)
            found = [b for label, b in pem_blocks((data or b"").decode("ascii", "replace")) if label == "CERTIFICATE"]
            if found:
                return found[0]
    return None


def check_not_older(target: Target, bundle: Bundle, allow_older: int | None, result: dict[str, Any]) -> None:
    """The serial guard. ACM private certificate serials are random, so "older" is decided by
    notBefore, not by the serial's value: a bundle whose leaf has the same issuer and subject
    as the installed leaf (one certificate's renewals) and an EARLIER notBefore is refused
    (older-than-installed, exit 17, nothing changed), unless ROLLOUT_ALLOW_OLDER names exactly
    its serial (an operator's manual request for that serial). The same notBefore (the same
    certificate again) and another lineage (the target moved to another certificate) pass."""
    live = installed_leaf(target)
    old = cert_info(live) if live else None
    new = cert_info(bundle.leaf)
    if old is None or new is None:
        return
    result["previousSerial"] = format_serial(old.serial)
    if (old.issuer, old.subject) != (new.issuer, new.subject) or new.not_before >= old.not_before:
        return
    if allow_older is not None and allow_older == new.serial:
        log(f"installing serial {format_serial(new.serial)} over the newer {format_serial(old.serial)}: "
            "ROLLOUT_ALLOW_OLDER names it")
        return
    raise RolloutFailure("write", EXIT_OLDER,
                         f"older-than-installed: the bundle's serial {format_serial(new.serial)} (notBefore "
                         f"{new.not_before}Z) is older than the installed {format_serial(old.serial)} (notBefore "
                         f"{old.not_before}Z): nothing changed", reason="older-than-installed")


# --------------------------------------------------------------------------- verifyFrom: node
#
# A target the Lambda cannot reach (on-premises, another VPC) says verifyFrom "node": its
# config then carries "verify": {"host", "port", "sni", "probes"} and this node probes it
# itself, after the install's (or the rollback's) reload and once before the install. The node
# only gathers evidence: what was served (the chain, certificates are public), which serials,
# how many handshakes in a row showed the wanted one; VerifyTarget decides on it in the Lambda
# (rollout_core/logic/verify_node.py). Never raises: an unreachable target is an error text.
# A target with a probeNode is probed the same way (node_evidence) by that other node, through
# the read-only "probe" action (do_probe), after its install succeeded; its own node does not.
#
# Time: the probe after the reload uses the slot the document's time split keeps for the
# reload after a restore (rollout_core/domain/command_timeouts.py): at most one
# ROLLOUT_COMMAND_TIMEOUT, and never past the execution deadline less RESTORE_MARGIN.
# The chain is hex DER, not base64: a certificate holds its key's public half (an RSA modulus),
# which also sits in the private key's base64 body that REDACT (and the local cloud's leak
# check) match by base64 windows, so a base64 chain would be redacted by alignment chance.

SERVED_MAX_CHARS = 12000  # the "served" evidence in ROLLOUT_RESULT; SSM keeps 24,000 of stdout
RESULT_MAX_CHARS = 23000  # the whole ROLLOUT_RESULT line (GetCommandInvocation StandardOutputContent: 24,000)
SERVED_SERIALS_KEPT = 20  # the last handshakes' serials reported
HANDSHAKE_TIMEOUT = 5.0  # seconds per handshake (connect + TLS)
PROBE_INTERVAL = 0.2  # seconds between handshakes (nginx serves new files ~20 ms after a reload)
MAX_NODE_PROBES = 20


class VerifySpec:
    """Where and how this node probes its target: host, port, SNI name (None: no SNI), and how
    many handshakes in a row must show the wanted serial (1..MAX_NODE_PROBES)."""

    def __init__(self, raw: Any) -> None:
        if not isinstance(raw, dict):
            raise RolloutFailure("write", EXIT_PARAMS, "target config verify must be an object")
        host, port, sni, probes = raw.get("host"), raw.get("port"), raw.get("sni"), raw.get("probes", 3)
        if not isinstance(host, str) or not host or any(c.isspace() for c in host):
            raise RolloutFailure("write", EXIT_PARAMS, "target config verify.host must be a host name or IP address")
        if type(port) is not int or not 1 <= port <= 65535:
            raise RolloutFailure("write", EXIT_PARAMS, "target config verify.port must be an integer 1-65535")
        if sni is not None and (not isinstance(sni, str) or not sni):
            raise RolloutFailure("write", EXIT_PARAMS, "target config verify.sni must be a host name or null")
        if type(probes) is not int or not 1 <= probes <= MAX_NODE_PROBES:
            raise RolloutFailure("write", EXIT_PARAMS,
                                 f"target config verify.probes must be an integer 1-{MAX_NODE_PROBES}")
        self.host, self.port, self.sni, self.probes = host.strip("[]"), port, sni, probes


def served_chain(host: str, port: int, sni: str | None, timeout: float) -> tuple[list[bytes], bool]:
    """One TLS handshake (no verification: a served chain is evidence, judged elsewhere; SNI
    ``sni`` when given): (the served certificates as DER, leaf first; whether that is the whole
    chain the server sent). Python >= 3.13: SSLSocket.get_unverified_chain(); 3.10-3.12 its
    private _sslobj twin; older: the leaf only (getpeercert(binary_form=True)), complete False.
    Raises OSError (ssl.SSLError included) when the target cannot be reached or the handshake fails."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with socket.create_connection((host, port), timeout=timeout) as sock, \
            context.wrap_socket(sock, server_hostname=sni) as tls:
        getter = getattr(tls, "get_unverified_chain", None)
        if getter is None:
            getter = getattr(getattr(tls, "_sslobj", None), "get_unverified_chain", None)
        if getter is not None:
            chain = [c if isinstance(c, bytes) else c.public_bytes(2) for c in (getter() or [])]  # 2: _ssl.ENCODING_DER
            if chain:
                return chain, True
        leaf = tls.getpeercert(binary_form=True)
        return ([leaf] if leaf else []), False


def der_cert_serial(der: bytes) -> int | None:
    """The serial of a DER certificate, None when it cannot be read."""
    pem = "-----BEGIN CERTIFICATE-----\n" + base64.b64encode(der).decode() + "\n-----END CERTIFICATE-----\n"
    return der_serial(pem)


def _utc_now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def probe_served(spec: VerifySpec, deadline: float, want: Any, handshakes: int | None = None) -> dict[str, Any]:
    """Handshakes with the target until ``spec.probes`` in a row serve a leaf whose serial
    satisfies ``want(serial)``, or until ``deadline`` (time.monotonic()), or ``handshakes``
    attempts. Returns the evidence (ROLLOUT_RESULT "served"): {"chain": [hex DER, leaf first]
    (the last chain served), "chainComplete", "serialsSeen" (the last SERVED_SERIALS_KEPT
    serials, colon hex, null for an unreadable leaf), "probes" (handshakes in a row at the end
    that satisfied want), "required" (spec.probes), "attempts", "error" (the last handshake's
    failure text, or null), "at" (UTC ISO 8601)}; capped to SERVED_MAX_CHARS (cap_served)."""
    seen: list[str | None] = []
    chain: list[bytes] = []
    complete, error, run, attempts = False, None, 0, 0
    while True:
        attempts += 1
        left = deadline - time.monotonic()
        try:
            chain, complete = served_chain(spec.host, spec.port, spec.sni, max(0.1, min(HANDSHAKE_TIMEOUT, left)))
            serial = der_cert_serial(chain[0]) if chain else None
            seen.append(format_serial(serial) if serial is not None else None)
            error = None if chain else "the server sent no certificate"
            run = run + 1 if serial is not None and want(serial) else 0
        except (OSError, ValueError) as exc:  # refused, timed out, reset, handshake failure
            error = f"{spec.host}:{spec.port} (SNI {spec.sni or '-'}): {type(exc).__name__}: {exc}"[:300]
            run = 0
        if run >= spec.probes or (handshakes is not None and attempts >= handshakes):
            break
        if time.monotonic() + PROBE_INTERVAL >= deadline:
            break
        time.sleep(PROBE_INTERVAL)
    return cap_served({"chain": [c.hex() for c in chain], "chainComplete": complete,
                       "serialsSeen": seen[-SERVED_SERIALS_KEPT:], "probes": run, "required": spec.probes,
                       "attempts": attempts, "error": error, "at": _utc_now()})


def cap_served(served: dict[str, Any], limit: int = SERVED_MAX_CHARS) -> dict[str, Any]:
    """``served`` with certificates dropped from the end of its chain (the leaf last) until its
    JSON is at most ``limit`` characters; "chainTruncated" says how many were dropped."""
    chain = list(served.get("chain") or [])
    dropped = 0
    while chain and len(json.dumps(dict(served, chain=chain, chainTruncated=dropped))) > limit:
        chain.pop()
        dropped += 1
    if dropped:
        served = dict(served, chain=chain, chainTruncated=dropped, chainComplete=False)
    return served


def node_probe_deadline(timeout: float) -> float:
    """time.monotonic() deadline of the probe after a reload: one ROLLOUT_COMMAND_TIMEOUT
    (``timeout``), never past the execution deadline less RESTORE_MARGIN."""
    budget = timeout
    left = time_left("write")
    if left is not None:
        budget = min(budget, left - RESTORE_MARGIN)
    return time.monotonic() + max(0.0, budget)


def verify_on_node(target: Target, action: str, timeout: float, result: dict[str, Any]) -> None:
    """After a successful install (or rollback) of a verifyFrom-node target: probe until the
    expected serial (ROLLOUT_EXPECTED_SERIAL; after a rollback: any other serial) is served
    ``probes`` times in a row, or the deadline; the evidence goes to result["served"]."""
    if target.verify is not None:
        result["served"] = node_evidence(target.verify, action, timeout)


def node_evidence(spec: VerifySpec, action: str, timeout: float) -> dict[str, Any]:
    """The one node-side probe (verifyFrom node, and a probe node's "probe" action): probe_served
    until the serial ROLLOUT_EXPECTED_SERIAL is served (after a "rollback": any other serial)
    ``spec.probes`` times in a row, within node_probe_deadline(``timeout``). Never raises: a
    failure is the evidence's error."""
    expected = parse_expected_serial(os.environ.get("ROLLOUT_EXPECTED_SERIAL", ""))
    if action == "rollback":
        def want(serial: int) -> bool:
            return expected is None or serial != expected
    else:
        def want(serial: int) -> bool:
            return expected is None or serial == expected
    try:
        return probe_served(spec, node_probe_deadline(timeout), want)
    except Exception as exc:  # never fail the command for its evidence
        return {"chain": [], "chainComplete": False, "serialsSeen": [], "probes": 0, "required": spec.probes,
                "attempts": 0, "at": _utc_now(), "error": f"node probe failed: {type(exc).__name__}"}


def do_probe(raw: dict[str, Any], runner: Runner, result: dict[str, Any]) -> int:
    """ROLLOUT_ACTION "probe": this node is another target's probe node (its inventory item's
    probeNode), sent after that target's install succeeded. Read-only: the target config carries
    only "verify" (no files, no commands are run), nothing is fetched (ROLLOUT_SECRET_ARN is
    ignored: this node is no target of the certificate, the staged bundle's policy denies it),
    no lock or state is touched, the node policy is not needed. result["served"] is the same
    evidence verifyFrom node reports (node_evidence). Exit 0 with the evidence, whatever it
    shows (VerifyTarget decides); exit 2 for a config without "verify"."""
    if raw.get("files") or raw.get("testCommand") or raw.get("reloadCommand"):
        raise RolloutFailure("probe", EXIT_PARAMS, "a probe's target config carries no files or commands")
    spec = VerifySpec(raw.get("verify"))
    result["served"] = node_evidence(spec, "probe", runner.timeout)
    return EXIT_OK


def probe_before_install(target: Target, timeout: float, result: dict[str, Any]) -> None:
    """One handshake before the install: result["servedBefore"], the serial served (colon hex)
    or null when the target did not answer (the Lambda's pre-install probe, from the node)."""
    spec = target.verify
    if spec is None:
        return
    try:
        evidence = probe_served(spec, time.monotonic() + min(HANDSHAKE_TIMEOUT, timeout), lambda s: True, handshakes=1)
        seen = evidence["serialsSeen"]
        result["servedBefore"] = seen[-1] if seen and not evidence["error"] else None
    except Exception:  # evidence only
        result["servedBefore"] = None


def cap_result(result: dict[str, Any]) -> dict[str, Any]:
    """``result`` whose JSON fits RESULT_MAX_CHARS: the served chain goes first (chainTruncated),
    then serverOutput is cut (SSM keeps 24,000 characters of stdout)."""
    if len(json.dumps(result)) <= RESULT_MAX_CHARS:
        return result
    served = result.get("served")
    if isinstance(served, dict) and served.get("chain"):
        result = dict(result, served=dict(served, chain=[], chainComplete=False,
                                          chainTruncated=len(served["chain"]) + int(served.get("chainTruncated") or 0)))
    excess = len(json.dumps(result)) - RESULT_MAX_CHARS
    if excess > 0:
        result = dict(result, serverOutput=str(result.get("serverOutput") or "")[excess + 20:])
    return result


def lock_wait(target: Target, timeout: float) -> float:
    """Seconds to wait for the target's lock: one command timeout, and never into the time the
    swap needs to test, reload and restore."""
    left = time_left("write")
    if left is None:
        return timeout
    steps = (1 if target.test_command else 0) + (2 if target.reload_command else 0)
    return max(0.0, min(timeout, left - steps * timeout - RESTORE_MARGIN))


def _begin(target: Target, runner: Runner, result: dict[str, Any]) -> StateDir:
    """Lock the target and recover a transaction a killed command left behind."""
    state = StateDir(target)
    state.lock(lock_wait(target, runner.timeout))
    recovered = recover(state, target, runner)
    if recovered:
        result["recovered"] = recovered
    return state


def _fetch_bundle(target: Target, runner: Runner, result: dict[str, Any]) -> tuple[Bundle, dict[str, str]]:
    arn = os.environ.get("ROLLOUT_SECRET_ARN", "").strip()
    result["stage"] = "fetch"
    secret = fetch_secret(arn, os.environ.get("ROLLOUT_SECRET_VERSION_ID", "").strip(), runner.timeout, result)
    try:
        bundle = Bundle.from_secret(secret)
        return bundle, fetch_passwords(target, secret)
    finally:
        secret.clear()


def check_bundle(bundle: Bundle, expected: int | None, result: dict[str, Any]) -> None:
    """The leaf's serial is the expected one; the bundle's key belongs to its leaf."""
    serial = der_serial(bundle.leaf)
    if serial is not None:
        result["installedSerial"] = format_serial(serial)
    if expected is not None and serial is None:
        raise RolloutFailure("write", EXIT_WRITE, "cannot read the leaf's serial, so it cannot be checked "
                                                  f"against the expected serial {format_serial(expected)}")
    if expected is not None and serial != expected:
        raise RolloutFailure("write", EXIT_WRITE, f"bundle leaf serial {format_serial(serial or 0)} is not "
                                                  f"the expected serial {format_serial(expected)}")
    if bundle.key is not None and not bundle.key_encrypted:
        problem = pair_problem(bundle.leaf, bundle.key)
        if problem:
            raise RolloutFailure("write", EXIT_WRITE, f"key-mismatch: in the bundle, {problem}: nothing changed",
                                 reason="key-mismatch")


def _after_swap(txn: Transaction, target: Target, runner: Runner, result: dict[str, Any],
                passwords: dict[str, str]) -> None:
    """Pair check of the files now on disk, test, reload; any failure restores the old set."""
    problem = live_pair_problem(target, _read_set(target), passwords, runner.timeout)
    if problem:
        errors = txn.revert()
        raise RolloutFailure("write", EXIT_WRITE, f"key-mismatch: on disk after the swap, {problem}; previous files "
                             f"restored{_restore_note(errors)}", reason="key-mismatch")
    if target.test_command:
        result["stage"] = "test"
        test = runner.run("test", target.test_command)
        if not test.ok:
            errors = txn.revert()
            raise RolloutFailure("test", EXIT_TEST, f"{test.summary()}; previous files restored{_restore_note(errors)}")
    _fault("before-reload")
    if target.reload_command:
        result["stage"] = "reload"
        reload = runner.run("reload", target.reload_command)
        if not reload.ok:
            errors = txn.revert()
            again = runner.run("reload-after-restore", target.reload_command)
            raise RolloutFailure("reload", EXIT_RELOAD, "{}; previous files restored{}{}".format(
                reload.summary(), _restore_note(errors), "" if again.ok else "; reload after restore also failed"))
    _fault("after-reload")


def _restore_note(errors: list[str]) -> str:
    return ("; restore failed: " + "; ".join(errors)) if errors else ""


def do_install(target: Target, runner: Runner, result: dict[str, Any]) -> int:
    """install: lock, recover, fetch, check (serial, pair, not older), build in memory, then one
    transaction: pre-image saved, staged beside, renamed, pair check, test, reload, commit."""
    if not os.environ.get("ROLLOUT_SECRET_ARN", "").strip():
        raise RolloutFailure("fetch", EXIT_PARAMS, "ROLLOUT_SECRET_ARN is not set")
    expected = parse_expected_serial(os.environ.get("ROLLOUT_EXPECTED_SERIAL", ""))
    allow_older = parse_allow_older(os.environ.get("ROLLOUT_ALLOW_OLDER", ""))
    check_targets(target)
    state = _begin(target, runner, result)
    bundle, passwords = _fetch_bundle(target, runner, result)
    result["stage"] = "write"
    check_bundle(bundle, expected, result)
    check_not_older(target, bundle, allow_older, result)
    changes = build_changes(target, bundle, runner.timeout, passwords)
    check_time_to_restore(target, runner.timeout)
    current = _read_set(target)
    if all(current.get(c.path) == c.data for c in changes) and os.path.exists(state.file(BACKUP)):
        # The same bundle again (a retried or duplicate install): keep the backup of what was
        # there before the first attempt, so rollback still works.
        log("the files already hold this bundle; keeping their backup")
        txn = Transaction(state, target, "install")
        _after_swap(txn, target, runner, result, passwords)
        return EXIT_OK
    txn = Transaction(state, target, "install")
    txn.swap(changes, result.get("installedSerial"))
    _after_swap(txn, target, runner, result, passwords)
    txn.commit(keep_backup=True)
    for spec in target.files:  # an older installer's backups beside the file: superseded
        _unlink(spec.path + BAK_SUFFIX)
        _unlink(spec.path + ABSENT_SUFFIX)
    return EXIT_OK


def target_paths(target: Target) -> set[str]:
    return {spec.path for spec in target.files}


def _rollback_done_by_recovery(result: dict[str, Any], expected: int | None) -> bool:
    """A half-done install of the serial being rolled back was just reverted: that is the rollback."""
    done = result.get("recovered") or {}
    if done.get("result") != "reverted" or done.get("action") != "install":
        return False
    if expected is not None and done.get("serial") not in (None, format_serial(expected)):
        return False
    if done.get("pairCheck") not in (None, "ok"):
        raise RolloutFailure("rollback", EXIT_ROLLBACK, "backup-key-mismatch: the files before the interrupted "
                             f"install were restored but {done['pairCheck']}", reason="backup-key-mismatch")
    return True


def do_rollback(target: Target, runner: Runner, result: dict[str, Any]) -> int:
    """rollback: lock, recover; with ROLLOUT_EXPECTED_SERIAL (the serial whose install is rolled
    back) nothing is done when that serial is not the one installed. Else the backup
    generation is pair-checked (a mismatched backup is refused, backup-key-mismatch, the current
    files left as they are) and restored as one transaction, then test and reload."""
    result["stage"] = "rollback"
    expected = parse_expected_serial(os.environ.get("ROLLOUT_EXPECTED_SERIAL", ""))
    state = _begin(target, runner, result)
    if _rollback_done_by_recovery(result, expected):
        return EXIT_OK
    live = installed_leaf(target)
    live_serial = der_serial(live) if live else None
    if expected is not None and live_serial != expected:
        result["nothingToRollBack"] = True
        log(f"serial {format_serial(expected)} is not installed: nothing to roll back")
        return EXIT_OK
    saved = load_backup(state)
    entries = {str(e["path"]): e for e in (saved or {}).get("preImage", [])}
    missing = [p for p in (spec.path for spec in target.files) if p not in entries]
    if saved is None or missing:
        raise RolloutFailure("rollback", EXIT_ROLLBACK, "rollback incomplete: no backup for "
                             + ", ".join(missing or [spec.path for spec in target.files]), reason="no-backup")
    restore = [c for c in changes_of(list(entries.values())) if c.path in target_paths(target)]
    problem = live_pair_problem(target, {c.path: c.data for c in restore}, None, runner.timeout)
    if problem:
        raise RolloutFailure("rollback", EXIT_ROLLBACK, f"backup-key-mismatch: in the backup, {problem}: the "
                             "current files are left as they are", reason="backup-key-mismatch")
    txn = Transaction(state, target, "rollback")
    txn.swap(restore, format_serial(live_serial) if live_serial is not None else None)
    problem = live_pair_problem(target, _read_set(target), None, runner.timeout)
    if problem:
        errors = txn.revert()
        raise RolloutFailure("rollback", EXIT_ROLLBACK, f"backup-key-mismatch: on disk after the restore, {problem}; "
                             f"the files before the rollback were put back{_restore_note(errors)}",
                             reason="backup-key-mismatch")
    txn.commit(keep_backup=False)
    for label, argv in (("test", target.test_command), ("reload", target.reload_command)):
        if argv:
            run = runner.run(label, argv)
            if not run.ok:
                raise RolloutFailure("rollback", EXIT_ROLLBACK, "files restored but " + run.summary())
    return EXIT_OK


# --------------------------------------------------------------------------- check (preflight)
# ROLLOUT_ACTION=check (`cert-rollout nodes check`): every prerequisite of an install, read-only.
# No target file, lock, journal, backup or state directory is created, changed or removed; the
# only things run are the target's testCommand (when the node policy allows it and it is on
# PATH: a config test reads the server's configuration) and one GetSecretValue call.
# ROLLOUT_TARGET is the target's config as for an install, or a config without files (a node
# with no target in the inventory: only python, the node policy file, the state directory and
# the bundle fetch are checked). ROLLOUT_SECRET_ARN names a secret under the staged prefix that
# does not exist (the CLI draws "<SecretPrefix>/staged/preflight/<random>"); ROLLOUT_SECRET_VERSION_ID
# and ROLLOUT_EXPECTED_SERIAL are ignored.
# What the bundle-fetch check proves, from Secrets Manager's answer to GetSecretValue of that id:
#   ResourceNotFoundException  credentials found, the endpoint reached, the signature accepted and
#                              the node's identity policy allows GetSecretValue under the staged
#                              prefix (IAM is evaluated before the secret is looked up): ok
#   anything else              the fetch reason an install would fail with (bundle-credentials-
#                              missing, bundle-access-denied, bundle-endpoint-unreachable, ...)
# What it cannot prove: a rollout's staged secret carries its own resource policy (it denies every
# node that is no target of its certificate, domain/staging.py) and is encrypted with the stack's
# KMS key (kms:Decrypt through Secrets Manager): both exist only while a rollout runs.
# ROLLOUT_RESULT: {action "check", targetId, status ok|failed, stage "check", reason and error of
# the first failed check, checks [{check, ok, reason?, detail}], python, fetchPath, files,
# serverOutput, exitCode}; exit 0 when every check passed, else the exit code an install would end
# with at the first failed check (13, 19, 21, 22, 12, 18, 10).

CHECK_NAMES = ("python", "node-policy", "files-writable", "state-dir", "openssl", "test-command", "reload-command",
               "bundle-fetch")
_NOT_FOUND = re.compile(r"\bResourceNotFoundException\b")


def _check(checks: list[dict[str, Any]], name: str, failure: RolloutFailure | None, detail: str = "") -> bool:
    """Append one check's outcome; True when it passed."""
    entry: dict[str, Any] = {"check": name, "ok": failure is None}
    if failure is not None:
        entry.update(reason=failure.reason or name + "-failed", detail=str(failure), exitCode=failure.code)
    else:
        entry["detail"] = detail
    checks.append(entry)
    return failure is None


def files_writable_problem(target: Target) -> RolloutFailure | None:
    """Why the installer could not write ``target``'s files here (check_targets: each file's
    directory exists and the file is not a directory; and that directory is writable by this
    user, os.access W_OK, as the staged-beside rename needs), None when it could. Read-only."""
    try:
        check_targets(target)
    except RolloutFailure as exc:
        return RolloutFailure("write", exc.code, f"files-not-writable: {exc}", reason="files-not-writable")
    for spec in target.files:
        directory = os.path.dirname(spec.path)
        if not os.access(directory, os.W_OK):
            return RolloutFailure("write", EXIT_WRITE, f"files-not-writable: {directory} (of {spec.path}) is not "
                                  f"writable by uid {os.geteuid()}", reason="files-not-writable")
    return None


def state_dir_problem(target: Target | None) -> RolloutFailure | None:
    """Why the installer could not use its state directory (StateDir._safe_dir's rule: a
    directory owned by this user, not writable by group or others; one that does not exist yet
    needs its nearest existing parent writable to be created), None when it could. Read-only:
    nothing is created."""
    base = os.environ.get("CERT_ROLLOUT_STATE_DIR", "").strip() or DEFAULT_STATE_DIR
    paths = [base] + ([StateDir(target).path] if target is not None else [])
    for path in paths:
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            parent = os.path.dirname(path)
            while parent != "/" and not os.path.exists(parent):
                parent = os.path.dirname(parent)
            if not os.access(parent, os.W_OK):
                return RolloutFailure("write", EXIT_STATE, f"state-dir-unsafe: {path} does not exist and {parent} "
                                      f"is not writable by uid {os.geteuid()}", reason="state-dir-unsafe")
            return None
        except OSError as exc:
            return RolloutFailure("write", EXIT_STATE, f"state-dir-unsafe: cannot use {path}: {_os_error(exc)}",
                                  reason="state-dir-unsafe")
        if (st.st_mode & 0o170000) != 0o040000 or st.st_uid != os.geteuid() or st.st_mode & 0o022:
            return RolloutFailure("write", EXIT_STATE, f"state-dir-unsafe: {path} must be a directory owned by uid "
                                  f"{os.geteuid()} and not writable by group or others", reason="state-dir-unsafe")
    return None


def bundle_fetch_check(secret_id: str, timeout: float, result: dict[str, Any]) -> tuple[RolloutFailure | None, str]:
    """GetSecretValue of ``secret_id`` (a staged name that does not exist) by the fetch path an
    install would take (secret_string): (None, what it proved) on ResourceNotFoundException, else
    (the fetch's RolloutFailure, ""). See the section comment for what it cannot prove."""
    if not secret_id:
        return RolloutFailure("fetch", EXIT_PARAMS, "ROLLOUT_SECRET_ARN is not set"), ""
    try:
        secret_string(secret_id, "", timeout, result)
    except RolloutFailure as exc:
        if exc.reason == "bundle-fetch-failed" and _NOT_FOUND.search(str(exc)):
            return None, (f"{result.get('fetchPath')}: credentials found, endpoint reached and GetSecretValue "
                          "under the staged prefix allowed (ResourceNotFoundException for a name no rollout "
                          "uses); not checked: a rollout's own secret policy and kms:Decrypt")
        return exc, ""
    return None, f"{result.get('fetchPath')}: GetSecretValue answered (the secret exists; its value is dropped)"


def do_check(raw: dict[str, Any], runner: Runner, result: dict[str, Any]) -> int:
    """The preflight (section comment): every check, in CHECK_NAMES order, into result["checks"];
    returns 0 when all passed, else the first failed check's exit code. Touches nothing."""
    checks: list[dict[str, Any]] = []
    result["checks"] = checks
    result["python"] = ".".join(str(v) for v in sys.version_info[:3])
    _check(checks, "python", None, f"{sys.executable} {result['python']}")
    target = Target(raw) if raw.get("files") else None
    if target is not None:
        result["files"] = [f.path for f in target.files]
    policy_ok = False
    try:
        policy = load_node_policy()
        if target is not None:
            check_node_policy(target, policy)
        policy_ok = _check(checks, "node-policy", None, policy.source)
    except RolloutFailure as exc:
        _check(checks, "node-policy", exc)
    missing = prerequisite_problems(target) if target is not None else {}
    if target is not None:
        _check(checks, "files-writable", files_writable_problem(target), ", ".join(result["files"]))
    _check(checks, "state-dir", state_dir_problem(target),
           os.environ.get("CERT_ROLLOUT_STATE_DIR", "").strip() or DEFAULT_STATE_DIR)
    if target is not None:
        needs = any(spec.content in OPENSSL_CONTENTS for spec in target.files)
        _check(checks, "openssl", missing.get("openssl"), (shutil.which("openssl") or "") if needs else "not needed")
        test = target.test_command
        if test is None:
            _check(checks, "test-command", None, "none configured")
        elif "testCommand" in missing:
            _check(checks, "test-command", missing["testCommand"])
        elif not policy_ok:
            _check(checks, "test-command", RolloutFailure("test", EXIT_POLICY, "not run: the node policy check failed",
                                                          reason="node-policy-denied"))
        else:
            run = runner.run("test", test)
            _check(checks, "test-command", None if run.ok else RolloutFailure(
                "test", EXIT_TEST, f"test-failed: {run.summary()}", reason="test-failed"), " ".join(test) + ": exit 0")
        _check(checks, "reload-command", missing.get("reloadCommand"),
               " ".join(target.reload_command) if target.reload_command else "none configured")
    failure, proved = bundle_fetch_check(os.environ.get("ROLLOUT_SECRET_ARN", "").strip(), runner.timeout, result)
    _check(checks, "bundle-fetch", failure, proved)
    failed = [c for c in checks if not c["ok"]]
    if not failed:
        return EXIT_OK
    result["reason"] = failed[0]["reason"]
    result["error"] = "check failed: " + "; ".join(f"{c['check']}: {c['reason']}" for c in failed)
    return int(failed[0]["exitCode"])


def main() -> int:
    action = os.environ.get("ROLLOUT_ACTION", "").strip().lower()
    runner = Runner(60.0)
    result: dict[str, Any] = {
        "action": action or None,
        "targetId": None,
        "status": "failed",
        "stage": "rollback" if action == "rollback" else "fetch",
        "error": None,
        "files": [],
        "serverOutput": "",
    }
    code = EXIT_PARAMS
    try:
        if action not in ("install", "rollback", "check", "probe"):
            raise RolloutFailure(str(result["stage"]), EXIT_PARAMS,
                                 "ROLLOUT_ACTION must be install, rollback, check or probe")
        raw = decode_target(os.environ.get("ROLLOUT_TARGET", ""))
        result["targetId"] = raw.get("targetId")
        files = raw.get("files")
        if isinstance(files, list):
            result["files"] = [f.get("path") for f in files if isinstance(f, dict)]
        if action == "check":  # the preflight: read-only, every check reported
            result["stage"] = "check"
            runner.timeout = command_timeout("check")
            code = do_check(raw, runner, result)
            result["status"] = "ok" if code == EXIT_OK else "failed"
        elif action == "probe":  # another target's probe node: read-only
            result["stage"] = "probe"
            runner.timeout = command_timeout("probe")
            code = do_probe(raw, runner, result)
            result["status"] = "ok"
        else:
            target = Target(raw)
            result["files"] = [f.path for f in target.files]
            check_node_policy(target, load_node_policy())  # before the lock, the fetch or any file
            check_prerequisites(target)  # so are the programs the target's settings need
            runner.timeout = command_timeout("rollback" if action == "rollback" else "write")
            time_left("rollback" if action == "rollback" else "write")  # a bad deadline fails here, early
            do_action = do_install if action == "install" else do_rollback
            if action == "install":
                probe_before_install(target, runner.timeout, result)  # verifyFrom: node
            code = do_action(target, runner, result)
            result["status"] = "ok"
            verify_on_node(target, action, runner.timeout, result)  # verifyFrom: node
    except RolloutFailure as exc:
        code = exc.code
        result["stage"] = {"rollback": "rollback", "check": "check", "probe": "probe"}.get(action, exc.stage)
        result["error"] = str(exc)
        if exc.reason:
            result["reason"] = exc.reason
    except Exception as exc:  # never a traceback with secrets on stdout
        code = EXIT_ROLLBACK if action == "rollback" else {
            "fetch": EXIT_FETCH, "write": EXIT_WRITE, "test": EXIT_TEST, "reload": EXIT_RELOAD,
        }.get(str(result["stage"]), EXIT_WRITE)
        result["error"] = f"internal error: {type(exc).__name__}"
    result["exitCode"] = code
    result["serverOutput"] = runner.server_output()
    result = cap_result(REDACT.value(result))  # every string, before JSON escapes could hide a secret
    line = "ROLLOUT_RESULT " + json.dumps(result, sort_keys=False)
    checked = str(REDACT(line, runs=False))  # key blocks and lines, once more, on the line
    try:
        json.loads(checked[len("ROLLOUT_RESULT "):])
        line = checked
    except ValueError:
        pass  # a redaction broke a JSON escape: keep the line built from redacted values
    sys.stdout.write(line + "\n")
    sys.stdout.flush()
    return code


if __name__ == "__main__":
    sys.exit(main())
