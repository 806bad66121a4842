#!/usr/bin/env python3
"""Install (or roll back) a certificate bundle on this managed node.

Run ON THE MANAGED NODE by the SSM Run Command document documents/install-bundle.ssm.yaml,
which downloads this file (the InstallerLayer's zip), checks its SHA-256 and runs it with
its parameters as environment variables. Standard library only (python3 >= 3.8) plus the
AWS CLI on PATH (``aws``), called with the node's own identity to read the staged key
material from Secrets Manager.

Parameters (environment variables, exported by the SSM document):
    ROLLOUT_ACTION            install | rollback
    ROLLOUT_SECRET_ARN        Secrets Manager secret holding the bundle (install)
    ROLLOUT_SECRET_VERSION_ID version id of that secret (install; empty = AWSCURRENT)
    ROLLOUT_TARGET            base64 of the target config JSON (below)
    ROLLOUT_EXPECTED_SERIAL   canonical colon hex serial of the new certificate; when
                              set, a bundle whose leaf has another serial is refused
    ROLLOUT_COMMAND_TIMEOUT   seconds for every subprocess (aws, test, reload): an integer
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
     "testCommand": ["argv", ...] or null, "reloadCommand": ["argv", ...] or null}
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
        itself. It is read at the fetch stage with ``aws secretsmanager get-secret-value
        --secret-id NAME --query SecretString --output text`` (the node's identity: keep it
        under the stack's SecretPrefix, e.g. "cert-rollout/keystores/web"; a name is read in
        the bundle secret's region unless AWS_REGION is set); one trailing newline is
        dropped; an empty password, one with NUL, CR or LF, or a secret without SecretString
        fails the install (exit 13, naming the secret, never the value). The password goes
        to openssl through a pipe (``-passout fd:N``), never an argument, and is written to
        passwordFile only when one is given (0600, installed, backed up and restored with
        the keystore or key); without passwordFile no password file is written.

Secret string (JSON): {"certificate": PEM, "chain": PEM, "privateKey": PEM plain PKCS#8,
"serial": "..."}.

install: fetch -> build and normalize every file's PEM -> write "<path>.rollout-new"
beside each file -> keep one backup "<path>.rollout-bak" of each current file (or a
marker "<path>.rollout-absent" when there was none) -> os.replace new over path ->
testCommand -> reloadCommand. A failed test restores every file (exit 10); a failed
reload restores, reloads again best effort (exit 11).
rollback: restore every file from its backup (remove it if it was absent before the
install), then testCommand and reloadCommand (exit 20 on any failure).

Exit codes: 0 ok, 2 invalid parameters, 10 test failed (restored), 11 reload failed
(restored), 12 files could not be built or written, or too little time left (nothing
changed), 13 secret fetch (bundle or password) failed, 20 rollback failed. (14 and 15 are the
document's bootstrap: installer download failed, installer checksum mismatch.)

stdout carries exactly one line, the last: ``ROLLOUT_RESULT {json}`` with
{action, targetId, status: ok|failed, stage: fetch|write|test|reload|rollback,
error, files, serverOutput, exitCode}. Progress goes to stderr. Key material, the
secret string and passphrases are never printed; every reported text is redacted of any
private key block, of every line of the key, and of any run of 16 or more base64
characters that shares a 16-character window with the key's base64 body (plain or
encrypted) or with a password the installer wrote or read.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from typing import Any

EXIT_OK = 0
EXIT_PARAMS = 2
EXIT_TEST = 10
EXIT_RELOAD = 11
EXIT_WRITE = 12
EXIT_FETCH = 13
EXIT_ROLLBACK = 20

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
_B64_RUN = re.compile(r"[A-Za-z0-9+/=]{%d,}" % REDACT_WINDOW)
_PEM_ARMOR = re.compile(r"-----[A-Z0-9 ]*-----")
_KEY_BLOCK = re.compile(r"-----BEGIN [A-Z0-9 ]*" + _PK + r"-----.*?(?:-----END [A-Z0-9 ]*" + _PK
                        + r"-----|\Z)", re.S)


class RolloutFailure(Exception):
    """A failure at one stage, with its exit code. The message never holds secrets."""

    def __init__(self, stage: str, code: int, message: str) -> None:
        super().__init__(message)
        self.stage = stage
        self.code = code


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


def der_serial(cert_block: str) -> int | None:
    """Serial (RFC 5280 4.1.2.2) of a PEM certificate block, read from its DER with a
    minimal parser: Certificate ::= SEQUENCE { tbs SEQUENCE { [0] version?, serial INTEGER ..."""
    body = "".join(ln for ln in cert_block.split("\n") if ln and not ln.startswith("-----"))
    try:
        der = base64.b64decode(body, validate=True)
    except (binascii.Error, ValueError):
        return None

    def header(pos: int) -> tuple[int, int, int]:
        tag = der[pos]
        length = der[pos + 1]
        pos += 2
        if length & 0x80:
            n = length & 0x7F
            length = int.from_bytes(der[pos:pos + n], "big")
            pos += n
        return tag, length, pos

    try:
        tag, _, pos = header(0)  # Certificate
        if tag != 0x30:
            return None
        tag, _, pos = header(pos)  # tbsCertificate
        if tag != 0x30:
            return None
        tag, length, inner = header(pos)
        if tag == 0xA0:  # [0] EXPLICIT version
            pos = inner + length
            tag, length, inner = header(pos)
        if tag != 0x02:
            return None
        return int.from_bytes(der[inner:inner + length], "big", signed=True)
    except IndexError:
        return None


def parse_expected_serial(text: str) -> int | None:
    """Canonical colon hex ("0f:ac:01": lowercase, two digits per byte, minimal bytes, as
    the state machine sends it) -> int; empty -> None. Anything else is refused (exit 2)."""
    value = text.strip()
    if not value:
        return None
    refused = RolloutFailure("write", EXIT_PARAMS,
                             "ROLLOUT_EXPECTED_SERIAL must be canonical lowercase colon hex "
                             '(like "0f:ac:01"), got {!r}'.format(value[:80]))
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


class FileSpec:
    def __init__(self, raw: dict[str, Any], index: int) -> None:
        where = f"files[{index}]"
        path = raw.get("path")
        if not isinstance(path, str) or not os.path.isabs(path):
            raise RolloutFailure("write", EXIT_PARAMS, f"{where}.path must be an absolute path")
        self.path = os.path.normpath(path)
        self.content = raw.get("content")
        if self.content not in CONTENTS:
            raise RolloutFailure("write", EXIT_PARAMS,
                                 "{}.content must be one of {}".format(where, "|".join(CONTENTS)))
        mode = raw.get("mode")
        if mode is None or mode == "":
            self.mode = 0o600 if self.content in KEY_CONTENTS else 0o644
        elif isinstance(mode, str) and re.fullmatch(r"(?:0o)?[0-7]{1,5}", mode.strip()):
            self.mode = int(mode.strip(), 8)
        elif isinstance(mode, int) and not isinstance(mode, bool):
            self.mode = mode
        else:
            raise RolloutFailure("write", EXIT_PARAMS,
                                 f'{where}.mode must be an octal string like "0644" or an integer')
        if not 0 <= self.mode <= 0o7777:
            raise RolloutFailure("write", EXIT_PARAMS, f"{where}.mode out of range")
        if self.content in KEY_CONTENTS and self.mode & KEY_MODE_FORBIDDEN:
            raise RolloutFailure(
                "write", EXIT_PARAMS,
                f"{where}.mode {self.mode:04o} is refused for {self.path} ({self.content}): key files "
                "must not be readable by others: mode & 0o7137 must be 0 (0600, 0640, 0400 or 0440)")
        if self.mode & SPECIAL_MODE_BITS:
            raise RolloutFailure("write", EXIT_PARAMS,
                                 f"{where}.mode {self.mode:04o} is refused for {self.path}: "
                                 "setuid, setgid and sticky bits are not allowed")
        self.owner = raw.get("owner")
        self.group = raw.get("group")
        for name, value in (("owner", self.owner), ("group", self.group)):
            if value is not None and not (
                    (isinstance(value, str) and value.strip() == value)
                    or (isinstance(value, int) and not isinstance(value, bool) and value >= 0)):
                raise RolloutFailure("write", EXIT_PARAMS,
                                     f"{where}.{name} must be a name, a non-negative id or null")
        self.password_file = None  # type: str | None
        self.alias = None  # type: str | None
        secret = raw.get("passwordSecret")
        self.password_secret = secret  # type: str | None
        if secret is not None and (
                self.content not in ("encrypted-key", "pkcs12") or not isinstance(secret, str)
                or not _PASSWORD_SECRET.fullmatch(secret) or ".." in secret or secret.startswith("-")):
            raise RolloutFailure("write", EXIT_PARAMS,
                                 f"{where}.passwordSecret must be a Secrets Manager secret name or ARN "
                                 "(1-512 of A-Za-z0-9/_+=.@:-, no '..', not starting with '-'), "
                                 "for encrypted-key and pkcs12 files only")
        if self.content in ("encrypted-key", "pkcs12"):
            pw = raw.get("passwordFile")
            if pw in (None, "") and secret is None:
                pw = self.path + PASSWORD_SUFFIX
            if pw in (None, ""):
                pw = None  # the password comes from passwordSecret; no file is written
            elif not isinstance(pw, str) or not os.path.isabs(pw):
                raise RolloutFailure("write", EXIT_PARAMS, f"{where}.passwordFile must be an absolute path")
            else:
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
                             "{}, got {!r}".format(MAX_COMMAND_TIMEOUT, text[:40]))
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


def _secret_string(secret_id: str, version_id: str, timeout: float, what: str, region_arn: str = "") -> str:
    """`aws secretsmanager get-secret-value ... --query SecretString --output text` -> its
    stdout. Output is captured, never printed. The region is the ARN's (``secret_id``'s,
    else ``region_arn``'s) unless AWS_REGION/AWS_DEFAULT_REGION is set. Raises
    RolloutFailure(fetch, 13) naming ``what`` with the CLI's (redacted) error text."""
    argv = ["aws", "secretsmanager", "get-secret-value", "--secret-id", secret_id]
    if version_id:
        argv += ["--version-id", version_id]
    argv += ["--query", "SecretString", "--output", "text"]
    for arn in (secret_id, region_arn):
        parts = arn.split(":")
        if len(parts) > 3 and parts[0] == "arn" and parts[3]:
            if not (os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")):
                argv += ["--region", parts[3]]
            break
    try:
        proc = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True,
                              timeout=timeout)
    except FileNotFoundError:
        raise RolloutFailure("fetch", EXIT_FETCH, f"{what} fetch failed: aws CLI not found on PATH") from None
    except subprocess.TimeoutExpired:
        raise RolloutFailure("fetch", EXIT_FETCH,
                             f"{what} fetch failed: aws CLI timed out after {timeout:g} s") from None
    if proc.returncode != 0:
        err = str(REDACT(_decode(proc.stderr).strip()))[-500:]
        raise RolloutFailure("fetch", EXIT_FETCH, f"{what} fetch failed (exit {proc.returncode}): {err}")
    return _decode(proc.stdout)


def fetch_password(secret_id: str, timeout: float, region_arn: str = "") -> str:
    """The password kept in the Secrets Manager secret ``secret_id`` (its SecretString, one
    trailing newline dropped); added to the redaction set at once. Refused (fetch, 13,
    naming the secret, never the value): empty, NUL/CR/LF inside, no SecretString."""
    what = f"password secret {secret_id!r}"
    log(f"fetching {what}")
    password = _secret_string(secret_id, "", timeout, what, region_arn)
    if password.endswith("\n"):
        password = password[:-1]
    for part in [password] + password.splitlines():
        REDACT.add_password(part)
    if not password:
        raise RolloutFailure("fetch", EXIT_FETCH, f"{what} is empty")
    if password == "None":  # `--output text` of a secret with only SecretBinary
        raise RolloutFailure("fetch", EXIT_FETCH, f"{what} has no SecretString (a binary secret?)")
    if any(ch in password for ch in "\x00\r\n"):
        raise RolloutFailure("fetch", EXIT_FETCH,
                             f"{what} holds a NUL, CR or newline character: the password must be one line")
    return password


def fetch_secret(arn: str, version_id: str, timeout: float) -> dict[str, Any]:
    """`aws secretsmanager get-secret-value` -> parsed secret JSON. Output is captured,
    never printed. Raises RolloutFailure(fetch, 13) with the CLI's error text."""
    log("fetching secret version %s" % (version_id or "AWSCURRENT"))
    text = _secret_string(arn, version_id, timeout, "secret").rstrip("\n")
    try:
        secret = json.loads(text)
    except ValueError:
        raise RolloutFailure("fetch", EXIT_FETCH,
                             "secret fetch failed: the secret string is not JSON") from None
    finally:
        del text
    if not isinstance(secret, dict):
        raise RolloutFailure("fetch", EXIT_FETCH,
                             "secret fetch failed: the secret string is not a JSON object")
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


def copy_file(src: str, dst: str) -> None:
    """Atomically make ``dst`` a copy of ``src`` (content, mode, owner)."""
    st = os.stat(src)
    directory = os.path.dirname(dst) or "."
    fd, tmp = tempfile.mkstemp(prefix=".rollout-", dir=directory)
    os.close(fd)
    try:
        shutil.copyfile(src, tmp)
        try:
            os.chown(tmp, st.st_uid, st.st_gid)
        except OSError:
            pass
        os.chmod(tmp, st.st_mode & 0o7777)
        os.replace(tmp, dst)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    _fsync_dir(dst)


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
        raise RolloutFailure("write", EXIT_WRITE, f"cannot build {what}: openssl not found on PATH")
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


def fetch_passwords(target: Target, timeout: float, region_arn: str = "") -> dict[str, str]:
    """{file path: password} of every file whose password is kept in Secrets Manager."""
    return {spec.path: fetch_password(spec.password_secret, timeout, region_arn)
            for spec in target.files if spec.password_secret}


def stage_files(target: Target, bundle: Bundle, timeout: float = 60.0,
                passwords: dict[str, str] | None = None) -> list[tuple[FileSpec, str]]:
    """Build every file's content and write it to "<path>.rollout-new". ``passwords``:
    fetch_passwords' {path: password}. On any error, remove what was staged and raise
    RolloutFailure(write, 12): nothing changed."""
    staged: list[tuple[FileSpec, str]] = []
    passwords = dict(passwords or {})
    current = ""
    try:
        check_targets(target)
        # password files first: the encrypted key is built with its staged password file
        ordered = sorted(target.files, key=lambda f: 0 if f.content == PASSWORD else 1)
        for spec in ordered:
            current = spec.path
            uid, gid = _owner_ids(spec.owner, spec.group)
            new = spec.path + NEW_SUFFIX
            if spec.content == PASSWORD:
                owner = spec.key_spec.path
                if owner not in passwords:  # an encrypted key's new random password
                    passwords[owner] = new_password()
                    REDACT.add_password(passwords[owner])
                data = (passwords[owner] + "\n").encode("utf-8")
            elif spec.content == "encrypted-key":
                data = encrypt_key(bundle.content("key", spec.path), passwords[spec.path], timeout)
            elif spec.content == "pkcs12":
                data = make_pkcs12(bundle, spec, timeout, passwords.get(spec.path))
            else:
                data = bundle.content(spec.content, spec.path).encode("ascii")
            write_file(new, data, spec.mode, uid, gid)
            staged.append((spec, new))
        order = {spec.path: i for i, spec in enumerate(target.files)}
        staged.sort(key=lambda item: order[item[0].path])
    except BaseException as exc:
        # every staged or partially written "<path>.rollout-new" goes: it may hold key material
        for spec in target.files:
            try:
                _unlink(spec.path + NEW_SUFFIX)
            except OSError:
                pass
        if isinstance(exc, (OSError, UnicodeEncodeError)):
            raise RolloutFailure("write", EXIT_WRITE,
                                 "cannot stage {}: {}".format(current or "files", _os_error(exc))) from None
        raise
    return staged


def check_targets(target: Target) -> None:
    """Before anything is fetched or written: every file's directory exists, and no file
    (nor its staging name, nor a keystore's password file) is a directory."""
    for spec in target.files:
        if not os.path.isdir(os.path.dirname(spec.path)):
            raise RolloutFailure("write", EXIT_WRITE, f"directory of {spec.path} does not exist")
        extra = [spec.password_file] if spec.content == "pkcs12" and spec.password_file else []
        for path in [spec.path, spec.path + NEW_SUFFIX] + extra:
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


def swap_in(staged: list[tuple[FileSpec, str]]) -> list[tuple[str, bool]]:
    """For each staged file: keep one backup of the current file (or an absent marker),
    then os.replace new -> path. Returns [(path, existed_before)]. On an error, what
    was already swapped is restored and RolloutFailure(write, 12) is raised."""
    done: list[tuple[str, bool]] = []
    marker = ""
    try:
        for spec, new in staged:
            path = spec.path
            current = _read(path)
            existed = current is not None
            new_data = _read(new)
            bak, absent = path + BAK_SUFFIX, path + ABSENT_SUFFIX
            has_backup = os.path.exists(bak) or os.path.exists(absent)
            if current == new_data and has_backup:
                # Same bundle again (a retried or duplicate install): keep the backup of
                # what was there before the first attempt, so rollback still works.
                log(f"{path} already holds this bundle; keeping its backup")
            elif existed:
                copy_file(path, bak)
                _unlink(absent)
            else:
                _unlink(bak)
                write_file(absent, b"", 0o600)
                marker = absent
            os.replace(new, path)
            _fsync_dir(path)
            done.append((path, existed))
            marker = ""
            log(f"installed {path}")
    except OSError as exc:
        for _, new in staged:
            _unlink(new)
        if marker:
            _unlink(marker)  # made for a file that was never replaced
        errors = restore([p for p, _ in done])
        restore_note = ("; restore failed: " + "; ".join(errors)) if errors else ""
        raise RolloutFailure("write", EXIT_WRITE,
                             f"cannot install files: {_os_error(exc)}{restore_note}") from None
    return done


def restore(paths: list[str]) -> list[str]:
    """Restore each path from "<path>.rollout-bak", or remove it when the marker says
    it did not exist. Returns error texts (empty = all restored)."""
    errors = []
    for path in paths:
        bak, absent = path + BAK_SUFFIX, path + ABSENT_SUFFIX
        try:
            if os.path.exists(bak):
                copy_file(bak, path)
                log(f"restored {path}")
            elif os.path.exists(absent):
                _unlink(path)
                _fsync_dir(path)
                log(f"removed {path} (it did not exist before the install)")
            else:
                errors.append(f"no backup for {path}")
        except OSError as exc:
            errors.append(f"cannot restore {path}: {_os_error(exc)}")
    return errors


# --------------------------------------------------------------------------- actions


def do_install(target: Target, runner: Runner, result: dict[str, Any]) -> int:
    arn = os.environ.get("ROLLOUT_SECRET_ARN", "").strip()
    if not arn:
        raise RolloutFailure("fetch", EXIT_PARAMS, "ROLLOUT_SECRET_ARN is not set")
    version_id = os.environ.get("ROLLOUT_SECRET_VERSION_ID", "").strip()
    expected = parse_expected_serial(os.environ.get("ROLLOUT_EXPECTED_SERIAL", ""))
    check_targets(target)

    result["stage"] = "fetch"
    secret = fetch_secret(arn, version_id, runner.timeout)
    try:
        bundle = Bundle.from_secret(secret)
    finally:
        secret.clear()
    passwords = fetch_passwords(target, runner.timeout, arn)

    result["stage"] = "write"
    serial = der_serial(bundle.leaf)
    if serial is not None:
        result["installedSerial"] = format_serial(serial)
    if expected is not None and serial is None:
        raise RolloutFailure("write", EXIT_WRITE, "cannot read the leaf's serial, so it cannot be checked "
                                                  f"against the expected serial {format_serial(expected)}")
    if expected is not None and serial != expected:
        raise RolloutFailure("write", EXIT_WRITE, f"bundle leaf serial {format_serial(serial)} is not "
                                                  f"the expected serial {format_serial(expected)}")
    staged = stage_files(target, bundle, runner.timeout, passwords)
    try:
        check_time_to_restore(target, runner.timeout)
    except RolloutFailure:
        for _, new in staged:  # staged files may hold key material
            _unlink(new)
        raise
    swap_in(staged)
    paths = [spec.path for spec in target.files]

    if target.test_command:
        result["stage"] = "test"
        test = runner.run("test", target.test_command)
        if not test.ok:
            errors = restore(paths)
            raise RolloutFailure("test", EXIT_TEST, "{}; previous files restored{}".format(
                test.summary(), ("; restore failed: " + "; ".join(errors)) if errors else ""))

    if target.reload_command:
        result["stage"] = "reload"
        reload = runner.run("reload", target.reload_command)
        if not reload.ok:
            errors = restore(paths)
            again = runner.run("reload-after-restore", target.reload_command)
            raise RolloutFailure("reload", EXIT_RELOAD, "{}; previous files restored{}{}".format(
                reload.summary(),
                ("; restore failed: " + "; ".join(errors)) if errors else "",
                "" if again.ok else "; reload after restore also failed"))
    return EXIT_OK


def do_rollback(target: Target, runner: Runner, result: dict[str, Any]) -> int:
    result["stage"] = "rollback"
    paths = [spec.path for spec in target.files]
    errors = restore(paths)
    if errors:
        raise RolloutFailure("rollback", EXIT_ROLLBACK, "rollback incomplete: " + "; ".join(errors))
    for label, argv in (("test", target.test_command), ("reload", target.reload_command)):
        if argv:
            run = runner.run(label, argv)
            if not run.ok:
                raise RolloutFailure("rollback", EXIT_ROLLBACK, "files restored but " + run.summary())
    return EXIT_OK


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
        if action not in ("install", "rollback"):
            raise RolloutFailure(str(result["stage"]), EXIT_PARAMS,
                                 "ROLLOUT_ACTION must be install or rollback")
        raw = decode_target(os.environ.get("ROLLOUT_TARGET", ""))
        result["targetId"] = raw.get("targetId")
        files = raw.get("files")
        if isinstance(files, list):
            result["files"] = [f.get("path") for f in files if isinstance(f, dict)]
        target = Target(raw)
        result["files"] = [f.path for f in target.files]
        runner.timeout = command_timeout("rollback" if action == "rollback" else "write")
        time_left("rollback" if action == "rollback" else "write")  # a bad deadline fails here, early
        do_action = do_install if action == "install" else do_rollback
        code = do_action(target, runner, result)
        result["status"] = "ok"
    except RolloutFailure as exc:
        code = exc.code
        result["stage"] = "rollback" if action == "rollback" else exc.stage
        result["error"] = str(exc)
    except Exception as exc:  # never a traceback with secrets on stdout
        code = EXIT_ROLLBACK if action == "rollback" else {
            "fetch": EXIT_FETCH, "write": EXIT_WRITE, "test": EXIT_TEST, "reload": EXIT_RELOAD,
        }.get(str(result["stage"]), EXIT_WRITE)
        result["error"] = f"internal error: {type(exc).__name__}"
    result["exitCode"] = code
    result["serverOutput"] = runner.server_output()
    result = REDACT.value(result)  # every string, before JSON escapes could hide a secret
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
