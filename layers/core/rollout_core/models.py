"""Shapes shared by the functions: the inventory's Target, outcomes, decisions.

Field names are camelCase because they are the DynamoDB attribute names and the state
machine's JSON keys as well.
"""

from __future__ import annotations

import difflib
import ipaddress
import re
import unicodedata
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

# Every pattern is matched whole (re.fullmatch, \A...\Z): "$" would also match before a
# trailing newline, so "web-1\n" would pass a "^...$" pattern used with re.match.
TARGET_ID_PATTERN = r"\A[A-Za-z0-9][A-Za-z0-9._-]{0,63}\Z"
INSTANCE_ID_PATTERN = r"\A(i|mi)-[0-9a-f]{8,17}\Z"
CERTIFICATE_ARN_PATTERN = r"\Aarn:aws(-[a-z]+)*:acm:[a-z0-9-]+:[0-9]{12}:certificate/[A-Za-z0-9-]{1,128}\Z"
# One DNS label (RFC 1123 section 2.1 / RFC 952): 1-63 letters, digits or hyphens, not
# starting or ending with a hyphen. ASCII only: internationalized names use their A-label.
DNS_LABEL_PATTERN = r"\A[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\Z"
ALIAS_PATTERN = r"\A[A-Za-z0-9._-]{1,64}\Z"
MODE_PATTERN = r"\A0?[0-7]{3,4}\Z"  # chmod's octal forms: "640", "0640", "4755", "04755"
# A Secrets Manager secret name or ARN (the characters of both, ':' for the ARN); never
# starting with '-' (it is an argument of the node's `aws` CLI).
PASSWORD_SECRET_PATTERN = r"\A[A-Za-z0-9/_+=.@:-]{1,512}\Z"
_TARGET_ID = re.compile(TARGET_ID_PATTERN)
_INSTANCE_ID = re.compile(INSTANCE_ID_PATTERN)
_CERTIFICATE_ARN = re.compile(CERTIFICATE_ARN_PATTERN)
_DNS_LABEL = re.compile(DNS_LABEL_PATTERN)
_ALIAS = re.compile(ALIAS_PATTERN)
_MODE = re.compile(MODE_PATTERN)
_PASSWORD_SECRET = re.compile(PASSWORD_SECRET_PATTERN)

#: File contents that carry private key material (the key itself, or a keystore holding it).
KEY_MATERIAL_CONTENTS = frozenset({"key", "combined", "encrypted-key", "pkcs12"})
#: Contents with a password: in a password file (default ``<path>.pass``, the installer's) and/or
#: in a Secrets Manager secret (``passwordSecret``).
PASSWORD_CONTENTS = frozenset({"encrypted-key", "pkcs12"})
PASSWORD_SUFFIX = ".pass"
#: Mode bits a key-material file must not have: setuid/setgid/sticky (07000), owner execute
#: (0100), group write/execute (0030), any bit for others (0007). Leaves at most 0640.
KEY_MODE_FORBIDDEN = 0o7137
DEFAULT_KEY_MODE = "0600"
DEFAULT_MODE = "0644"
SPECIAL_MODE_BITS = 0o7000
WORLD_WRITABLE = 0o002  # no installed file is writable by others (0666 is refused)
MAX_PATH = 1024
# Unicode bidirectional formatting characters (UAX #9 section 2): a path holding one reads
# differently in a report from what it is.
_BIDI = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")

ServerKind = Literal["embedded", "nginx", "apache", "haproxy", "java", "generic"]
FileContent = Literal["fullchain", "leaf", "chain", "key", "encrypted-key", "combined", "pkcs12"]


class Decision(StrEnum):
    """What ValidateEvent decided for an event (also the report's event outcome, before notify)."""

    ROLLOUT = "ROLLOUT"
    ALREADY_DEPLOYED = "ALREADY_DEPLOYED"
    IGNORED = "IGNORED"
    RENEWAL_FAILED = "RENEWAL_FAILED"
    NO_TARGETS = "NO_TARGETS"
    REJECTED = "REJECTED"
    EXPORT_FAILED = "EXPORT_FAILED"
    LEASE_FAILED = "LEASE_FAILED"  # the certificate's lease could not be taken (logic/lease.py): nothing installed
    # An AWS Health expiry notice while ACM holds no serial newer than the deployed ones
    # (logic/validate.py): nothing exported or installed, the expiry is notified.
    EXPIRY_NOTICE = "EXPIRY_NOTICE"


class RolloutOutcome(StrEnum):
    """The outcome of one event: what the notification and the report say."""

    ROLLED_OUT = "ROLLED_OUT"
    PARTIAL = "PARTIAL"
    FAILED = "FAILED"
    IGNORED = "IGNORED"
    ALREADY_DEPLOYED = "ALREADY_DEPLOYED"
    RENEWAL_FAILED = "RENEWAL_FAILED"
    NO_TARGETS = "NO_TARGETS"
    REJECTED = "REJECTED"
    EXPIRY_NOTICE = "EXPIRY_NOTICE"  # information, not a failure: the execution ends SUCCEEDED (ExpiryNotified)
    # Every target VERIFIED or SUPERSEDED, at least one SUPERSEDED: a newer rollout of the
    # certificate covers the rest (logic/notify.py rollout_outcome).
    SUPERSEDED = "SUPERSEDED"


class TargetOutcome(StrEnum):
    """One target's outcome in one rollout (logic.outcome.classify)."""

    VERIFIED = "VERIFIED"
    ROLLED_BACK = "ROLLED_BACK"
    FAILED = "FAILED"
    # Not installed by this rollout: a rollout of a newer request holds or waits for the
    # certificate's lease and installs on this target instead (logic/lease.py). Neither
    # verified nor failed.
    SUPERSEDED = "SUPERSEDED"


def _show(value: Any) -> str:
    """A value for a message: strings cut to 100 characters (repr escapes controls), small
    numbers as such, booleans as "the boolean true", anything else by type only (never repr of a container or a huge int)."""
    if isinstance(value, str):
        return repr(value[:100]) + (f"... ({len(value)} characters)" if len(value) > 100 else "")
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if value is None:
        return "null"
    if isinstance(value, float) or (isinstance(value, int) and abs(value) < 10**15):
        return repr(value)
    return f"a {type(value).__name__}"


def default_mode(content: Any) -> str:
    """The mode of a file whose entry gives none: 0600 for key material, else 0644 (the
    installer's own default, installer/install_bundle.py)."""
    return DEFAULT_KEY_MODE if isinstance(content, str) and content in KEY_MATERIAL_CONTENTS else DEFAULT_MODE


def _refuse_unknown_keys(data: Any, allowed: set[str], what: str) -> None:
    """Unknown keys are refused naming them (and the closest known key: "testcommand" ->
    "testCommand"), so a typo never silently drops a setting."""
    if not isinstance(data, dict):
        return
    unknown = [k for k in data if k not in allowed]
    if not unknown:
        return
    parts = []
    lowered = {a.lower(): a for a in allowed}
    for key in sorted(unknown, key=_show)[:10]:
        text = key if isinstance(key, str) else ""
        guess = lowered.get(text.lower()) or next(iter(difflib.get_close_matches(text[:100], allowed, n=1)), None)
        parts.append(_show(key) + (f" (did you mean {guess!r}?)" if guess else ""))
    more = f" and {len(unknown) - 10} more" if len(unknown) > 10 else ""
    raise ValueError(
        f"{what}: unknown field(s) {', '.join(parts)}{more}; allowed fields: {', '.join(sorted(allowed))}"
    )


#: Never an inventory file path (product rule; the node policy's deny list is the authority:
#: installer/install_bundle.py NODE_DENIED_*, the same lists, tied by tests/unit/test_node_policy.py).
SENSITIVE_FILES = ("/etc/shadow", "/etc/shadow-", "/etc/gshadow", "/etc/gshadow-", "/etc/passwd",
                   "/etc/passwd-", "/etc/group", "/etc/group-", "/etc/sudoers",
                   "/etc/crontab", "/etc/ld.so.preload")
SENSITIVE_DIRECTORIES = ("/etc/sudoers.d", "/etc/ssh", "/etc/pam.d", "/etc/security", "/etc/cron.d",
                         "/etc/systemd", "/etc/cert-rollout", "/root", "/boot", "/proc", "/sys", "/dev",
                         "/bin", "/sbin", "/lib", "/lib64",
                         "/usr/bin", "/usr/sbin", "/usr/lib", "/usr/lib64", "/usr/libexec", "/var/lib/cert-rollout")
SENSITIVE_NAMES = ("authorized_keys", "authorized_keys2")
SSH_DIRECTORY_NAME = ".ssh"
#: Part of every name the installer gives its own staged, backup and marker files
#: ("<path>.rollout-<txn>.new", "<path>.rollout-bak", ...): never an inventory file's name.
RESERVED_NAME_PART = ".rollout-"
#: Programs that run an inline script with -c: a test or reload command is argv, never a script.
SHELLS = frozenset({"sh", "bash", "dash", "zsh", "ksh", "mksh", "ash", "csh", "tcsh", "fish", "busybox"})
_SHELL_SCRIPT_OPTION = re.compile(r"\A-[A-Za-z]*c[A-Za-z]*\Z")  # -c, -ec, -lc, ...


def _sensitive_problem(path: str) -> str | None:
    """Why ``path`` (absolute, one '/' between names) names a file the product never writes."""
    if path in SENSITIVE_FILES:
        return "is a system account or privilege file: never written"
    for directory in SENSITIVE_DIRECTORIES:
        if path == directory or path.startswith(directory + "/"):
            return f"is inside {directory}: never written"
    parts = path.split("/")
    if parts[-1] in SENSITIVE_NAMES or SSH_DIRECTORY_NAME in parts:
        return "is an SSH access file or directory: never written"
    if RESERVED_NAME_PART in parts[-1]:
        return f"is named like the installer's own staged or backup files (*{RESERVED_NAME_PART}*)"
    return None


def _shell_script_problem(argv: list[str]) -> str | None:
    """Why ``argv`` runs an inline shell script (a shell followed by -c), None when it does not."""
    for index, arg in enumerate(argv):
        if arg.rsplit("/", 1)[-1] in SHELLS and any(_SHELL_SCRIPT_OPTION.fullmatch(a) for a in argv[index + 1:]):
            return (f"runs an inline shell script ({arg} -c): give the program and its arguments "
                    "(the node policy lists the commands it allows)")
    return None


def _path_problem(value: str) -> str | None:
    """Why ``value`` is not an absolute path to a file (None when it is one)."""
    if not value.startswith("/"):
        return "must be an absolute path (starting with '/')"
    if len(value) > MAX_PATH:
        return f"is longer than {MAX_PATH} characters"
    if any(unicodedata.category(ch) == "Cc" or ch in _BIDI for ch in value):
        return "contains a control or bidi character (NUL, newline, tab, U+202E, ...)"
    if value.strip("/") == "":
        return "is the root directory, not a file"
    if value.endswith("/"):
        return "ends with '/': that names a directory, not a file"
    if any(segment in (".", "..") for segment in value.split("/")):
        return "has a '.' or '..' segment: give the path itself, without relative steps"
    if "//" in value:
        return "has '//': give the canonical path (one '/' between names)"
    return _sensitive_problem(value)


def _same_path(path: str) -> str:
    """The form two paths are compared in: repeated slashes are one (the kernel's view)."""
    return re.sub("/{2,}", "/", path)


# template.yaml InstallBundleDocument: TargetConfig allowedPattern "^[A-Za-z0-9+/=]{1,8000}$".
INSTALL_SETTINGS_MAX_B64 = 8000


class TargetFile(BaseModel):
    """One file the installer writes on the node.

    ``mode``: 3-4 octal digits; default 0600 for key material (key, combined,
    encrypted-key, pkcs12), else 0644 (as installer/install_bundle.py). Never setuid, setgid
    or sticky, never writable by others (0666 is refused); key material at most owner read/write + group read (``mode & 0o7137 == 0``:
    0600, 0640, 0400, 0440). ``passwordFile`` (encrypted-key/pkcs12 only; default
    ``<path>.pass``) and ``alias`` (pkcs12 only). ``path`` and ``passwordFile``: canonical absolute
    paths (no '.', '..' or '//'), never a system account, privilege or SSH access file
    (SENSITIVE_*) nor one of the installer's own names (RESERVED_NAME_PART); the node's policy
    (installer/install_bundle.py, README "The node policy") decides the rest.

    ``passwordSecret`` (encrypted-key/pkcs12 only): the name or ARN of a Secrets Manager
    secret whose SecretString is the password itself (plain text, not JSON): 1-512 of
    ``A-Za-z0-9/_+=.@:-``, no "..", not starting with "-". It must live under
    ``<SecretPrefix>/keystores/`` (e.g. "cert-rollout/keystores/web"; encrypt it with the
    default aws/secretsmanager key or the stack's KeyMaterialKey): ExportCertificate reads it
    with its own role (GetSecretValue on ``${SecretPrefix}/keystores/*`` only) and stages it in
    the rollout's bundle, which only the rollout's target nodes may read
    (logic/staging.py); the node never reads the password secret itself. With it the installer uses that password for the keystore
    (or the encrypted key) and writes it to ``passwordFile`` only when one is given (0600,
    installed and rolled back with the file); without it, the password file works as before.

    Raises pydantic.ValidationError naming the field and the rule.
    """

    model_config = ConfigDict(extra="forbid")

    path: str = Field(max_length=MAX_PATH)
    content: FileContent
    mode: str = DEFAULT_MODE  # the before-validator picks 0600 for key material
    owner: str | None = None
    group: str | None = None
    # encrypted-key / pkcs12: where the node keeps the password (mode 0600; default "<path>.pass")
    passwordFile: str | None = Field(default=None, max_length=MAX_PATH)
    alias: str | None = None  # pkcs12 friendly name
    # encrypted-key / pkcs12: Secrets Manager secret (name or ARN, under SecretPrefix) holding the password
    passwordSecret: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _known_keys_and_default_mode(cls, data: Any) -> Any:
        _refuse_unknown_keys(data, set(cls.model_fields), "file")
        if isinstance(data, dict) and data.get("mode") is None:
            content = data.get("content")
            data = {**data, "mode": default_mode(content)}
        return data

    @field_validator("path", "passwordFile")
    @classmethod
    def _absolute_file_path(cls, value: str | None, info: Any) -> str | None:
        if value is None:
            return value
        problem = _path_problem(value)
        if problem:
            raise ValueError(f"{info.field_name} {_show(value)} {problem}")
        return value

    @field_validator("mode", mode="before")
    @classmethod
    def _octal_mode(cls, value: Any) -> Any:
        if not isinstance(value, str) or not _MODE.fullmatch(value):
            raise ValueError(f'mode must be a string of 3-4 octal digits like "0640" (chmod), got {_show(value)}')
        if int(value, 8) & SPECIAL_MODE_BITS:
            raise ValueError(f"mode {value}: setuid, setgid and sticky bits (07000) are not allowed on installed files")
        return value

    @field_validator("alias")
    @classmethod
    def _alias_name(cls, value: str | None) -> str | None:
        if value is not None and not _ALIAS.fullmatch(value):
            raise ValueError(f"alias {_show(value)} must be 1-64 letters, digits, '.', '_' or '-'")
        return value

    @field_validator("passwordSecret", mode="before")
    @classmethod
    def _secret_name(cls, value: Any) -> Any:
        if value is None:
            return value
        if not isinstance(value, str) or not _PASSWORD_SECRET.fullmatch(value):
            raise ValueError(
                f"passwordSecret {_show(value)} must be a Secrets Manager secret name or ARN: "
                "1-512 letters, digits or /_+=.@:- (e.g. \"cert-rollout/keystores/web\")")
        if ".." in value:
            raise ValueError(f"passwordSecret {_show(value)} must not contain '..'")
        if value.startswith("-"):
            raise ValueError(f"passwordSecret {_show(value)} must not start with '-'")
        return value

    @model_validator(mode="after")
    def _key_material_is_private(self) -> TargetFile:
        mode = int(self.mode, 8)
        if self.content in KEY_MATERIAL_CONTENTS and mode & KEY_MODE_FORBIDDEN:
            raise ValueError(
                f"file {self.path} holds key material ({self.content}): mode {self.mode} grants more than "
                "owner read/write and group read (rule: mode & 0o7137 == 0, e.g. 0600, 0640, 0400, 0440)"
            )
        if mode & WORLD_WRITABLE:
            raise ValueError(f"file {self.path}: mode {self.mode} is writable by others (0002, e.g. 0666): "
                             "any user could replace the certificate")
        if self.passwordFile is not None and self.content not in PASSWORD_CONTENTS:
            raise ValueError(
                f"file {self.path}: passwordFile is only used by encrypted-key and pkcs12 files, "
                f"not by {self.content}"
            )
        if self.passwordSecret is not None and self.content not in PASSWORD_CONTENTS:
            raise ValueError(
                f"file {self.path}: passwordSecret is only used by encrypted-key and pkcs12 files, "
                f"not by {self.content}"
            )
        if self.alias is not None and self.content != "pkcs12":
            raise ValueError(f"file {self.path}: alias is the PKCS#12 friendly name, only for pkcs12 files")
        if self.passwordFile is not None and _same_path(self.passwordFile) == _same_path(self.path):
            raise ValueError(f"file {self.path}: passwordFile must not be the file's own path")
        return self

    @property
    def password_path(self) -> str | None:
        """Where the installer keeps this file's password (None: the content has none, or
        the password comes from ``passwordSecret`` and no ``passwordFile`` is named)."""
        if self.content not in PASSWORD_CONTENTS:
            return None
        if self.passwordFile is None and self.passwordSecret is not None:
            return None
        return self.passwordFile or self.path + PASSWORD_SUFFIX


MAX_BACKENDS = 32
_BACKEND = re.compile(r"\[([0-9A-Fa-f:.]+)\]:([0-9]{1,5})|([^:\[\]]+):([0-9]{1,5})")


def split_backend(entry: Any, what: str) -> tuple[str, int]:
    """``"host:port"`` (IPv6: ``"[addr]:port"``) -> (host, port). ``host`` an IP address or a DNS
    name (as Target.host), ``port`` 1-65535. Raises ValueError naming ``what`` and the rule."""
    m = _BACKEND.fullmatch(entry) if isinstance(entry, str) else None
    if not m:
        raise ValueError(f"{what} {_show(entry)} is not host:port (IPv6 as [addr]:port)")
    host, port_text = (m.group(1), m.group(2)) if m.group(1) else (m.group(3), m.group(4))
    if m.group(1) and (":" not in host or not _is_ip(host)):
        raise ValueError(f"{what} {_show(entry)}: {host} in brackets is not an IPv6 address")
    if not _is_ip(host):
        problem = _dns_name_problem(host, trailing_dot=True)
        if problem:
            raise ValueError(f"{what} {_show(entry)}: host is neither an IP address nor a DNS name: it {problem}")
    port = int(port_text)
    if not 1 <= port <= 65535:
        raise ValueError(f"{what} {_show(entry)}: port {port} is not in 1-65535")
    return host, port


class Target(BaseModel):
    """One host:port that must serve a certificate, and how files get there (inventory item).

    Settings are checked whole, strictly, and never coerced: ``port`` an integer 1-65535 (not
    "443", 443.0 or true); ``host`` an IP address or a DNS name (RFC 1123: letters, digits,
    hyphens; a last label that is all-numeric, like "256.1.1.1" or "12345", is neither);
    ``sni`` a DNS host name (no IP, no wildcard, no trailing dot: RFC 6066 section 3),
    defaulting to a DNS ``host``; an IP ``host`` without ``sni`` sends none and must be an IP
    address SAN of the certificate (verification, RFC 6125 section 1.7.2); unique file paths and password files; commands, when
    given, non-empty lists of non-empty strings without NUL or newline, never an inline shell
    script (a shell of SHELLS followed by -c; the node policy lists what may run). ``probes``
    (1-20, default 3): TLS handshakes to the endpoint (and to each backend) that must all pass
    verification (a reloading server answers some handshakes from old workers for a while).
    ``backends``: "host:port" (IPv6 as "[addr]:port") of each server behind a load-balanced
    endpoint, each probed on its own with the target's SNI name; at most MAX_BACKENDS, unique,
    port 1-65535. ``probeNode`` (verifyFrom "node" only, not the target's own instanceId): the
    managed node that probes it instead of its own. Unknown fields are
    refused (a "testcommand" typo is not silently dropped); the state the rollout writes on
    the item (lastDeployedSerial, lastDeployedAt, lastOutcome) is accepted.

    Raises pydantic.ValidationError naming the field and the rule.
    """

    model_config = ConfigDict(extra="forbid")

    certificateArn: str
    targetId: str
    host: str
    port: int = Field(strict=True, ge=1, le=65535)
    sni: str | None = None
    server: ServerKind = "generic"
    instanceId: str
    files: list[TargetFile] = Field(default_factory=list)
    testCommand: list[str] | None = None
    reloadCommand: list[str] | None = None
    probes: int = Field(default=3, strict=True, ge=1, le=20)  # handshakes that must all pass
    backends: list[str] | None = None  # "host:port" of each backend behind a load-balanced endpoint, each checked on its own
    #: Where the TLS check runs: "lambda" (VerifyTarget's own handshakes) or "node" (the target's
    #: own managed node probes host:port after the reload and reports the served chain in the
    #: install command's result; VerifyTarget judges that evidence: logic/verify_node.py), for
    #: targets the Lambda cannot reach (on-premises, another network).
    verifyFrom: Literal["lambda", "node"] = "lambda"
    #: With verifyFrom "node": another managed node probes host:port instead of the target's own
    #: (an appliance with no agent of its own, a node that cannot reach its own listener): after
    #: the install succeeded, the install document's read-only "probe" action goes to this node
    #: (logic/commands.py); it gets the probe settings only, never the target's files or key.
    probeNode: str | None = None
    # state written by the rollout (not part of the settings; adapters.dynamo.mark_deployed)
    lastDeployedSerial: str | None = None
    lastDeployedAt: str | None = None
    lastOutcome: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _known_keys(cls, data: Any) -> Any:
        _refuse_unknown_keys(data, set(cls.model_fields), "target")
        return data

    @field_validator("certificateArn")
    @classmethod
    def _certificate_arn(cls, value: str) -> str:
        if not _CERTIFICATE_ARN.fullmatch(value):
            raise ValueError(
                f"certificateArn {_show(value)} is not an ACM certificate ARN "
                "(arn:PARTITION:acm:REGION:ACCOUNT:certificate/ID)"
            )
        return value

    @field_validator("targetId")
    @classmethod
    def _target_id(cls, value: str) -> str:
        if not _TARGET_ID.fullmatch(value):
            raise ValueError(
                f"targetId {_show(value)} must be 1-64 letters, digits, '.', '_' or '-', "
                "starting with a letter or digit"
            )
        return value

    @field_validator("instanceId")
    @classmethod
    def _instance_id(cls, value: str) -> str:
        if not _INSTANCE_ID.fullmatch(value):
            raise ValueError(
                f"instanceId {_show(value)} is not an SSM managed node id (i-/mi- and 8-17 lowercase hex digits)"
            )
        return value

    @field_validator("probeNode")
    @classmethod
    def _probe_node_id(cls, value: str | None) -> str | None:
        if value is not None and not _INSTANCE_ID.fullmatch(value):
            raise ValueError(
                f"probeNode {_show(value)} is not an SSM managed node id (i-/mi- and 8-17 lowercase hex digits)")
        return value

    @field_validator("port", mode="before")
    @classmethod
    def _integer_port(cls, value: Any) -> Any:
        if type(value) is not int or not 1 <= value <= 65535:  # noqa: E721 - bool (an int subclass) is refused
            raise ValueError(f"port must be an integer 1-65535 (not text or a boolean), got {_show(value)}")
        return value

    @field_validator("host")
    @classmethod
    def _host_is_name_or_ip(cls, value: str) -> str:
        if _is_ip(value):
            return value
        problem = _dns_name_problem(value, trailing_dot=True)
        if problem:
            raise ValueError(f"host {_show(value)} is neither an IP address nor a DNS name: it {problem}")
        return value

    @field_validator("sni")
    @classmethod
    def _sni_is_host_name(cls, value: str | None) -> str | None:
        if value is None:
            return value
        if _is_ip(value):
            raise ValueError("sni must be a DNS name: RFC 6066 section 3 forbids IP addresses in SNI")
        problem = _dns_name_problem(value, trailing_dot=False)
        if problem:
            raise ValueError(f"sni {_show(value)} is not a DNS host name (RFC 6066 section 3): it {problem}")
        return value

    @field_validator("backends")
    @classmethod
    def _backends(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return value
        if not value:
            raise ValueError("backends must list at least one host:port, or be left out")
        if len(value) > MAX_BACKENDS:
            raise ValueError(f"backends lists {len(value)} endpoints; at most {MAX_BACKENDS} are probed")
        seen: set[tuple[str, int]] = set()
        for index, entry in enumerate(value):
            host, port = split_backend(entry, f"backends[{index}]")
            if (host.lower(), port) in seen:
                raise ValueError(f"backends[{index}] {_show(entry)} is listed twice")
            seen.add((host.lower(), port))
        return value

    def backend_endpoints(self) -> list[tuple[str, int]]:
        """(host, port) of each backend (``backends`` as validated), in the order listed."""
        return [split_backend(entry, "backend") for entry in self.backends or []]

    @field_validator("testCommand", "reloadCommand")
    @classmethod
    def _command(cls, value: list[str] | None, info: Any) -> list[str] | None:
        if value is None:
            return value
        if not value:
            raise ValueError(f"{info.field_name} must be a non-empty list (argv) or null, got []")
        for index, arg in enumerate(value):
            if not arg:
                raise ValueError(f"{info.field_name}[{index}] is empty: every argument must be a non-empty string")
            if any(ch in arg for ch in "\x00\n\r"):
                raise ValueError(f"{info.field_name}[{index}] contains NUL or a newline: not allowed in an argument")
        problem = _shell_script_problem(value)
        if problem:
            raise ValueError(f"{info.field_name} {problem}")
        return value

    @model_validator(mode="after")
    def _settings_complete(self) -> Target:
        if self.sni is None and not _is_ip(self.host):
            self.sni = self.host.removesuffix(".")  # SNI carries no trailing dot (RFC 6066 s3)
        # An IP host without sni sends no SNI (RFC 6066 s3 forbids IP literals there) and is
        # verified against the certificate's IP address SANs (domain.tls_checks.hostname_problem).
        if not self.files:
            raise ValueError(f"target {self.targetId}: no files to install")
        self._files_are_distinct()
        if self.server == "generic" and self.reloadCommand is None:
            raise ValueError(f"target {self.targetId}: a generic target needs a reloadCommand")
        if self.probeNode is not None and self.verifyFrom != "node":
            raise ValueError(f"target {self.targetId}: probeNode {self.probeNode} needs verifyFrom: node "
                             "(the Lambda probes a verifyFrom lambda target)")
        if self.probeNode is not None and self.probeNode == self.instanceId:
            raise ValueError(f"target {self.targetId}: probeNode {self.probeNode} is the target's own node "
                             "(instanceId): leave probeNode out for verifyFrom: node")
        encoded = len(self.install_settings_b64())
        if encoded > INSTALL_SETTINGS_MAX_B64:
            raise ValueError(
                f"target {self.targetId}: files and commands take {encoded} base64 characters; the SSM "
                f"document's TargetConfig parameter holds at most {INSTALL_SETTINGS_MAX_B64} (shorten paths or commands)")
        return self

    def install_settings_b64(self) -> str:
        """install_settings() as the SSM document's TargetConfig parameter (base64 of compact JSON)."""
        import base64
        import json

        return base64.b64encode(json.dumps(self.install_settings(), separators=(",", ":")).encode()).decode()

    def _files_are_distinct(self) -> None:
        """No two files share a path, and no password file is another file (installs would
        overwrite each other, and a backup/rollback would restore the wrong content)."""
        owners: dict[str, str] = {}
        for index, f in enumerate(self.files):
            key = _same_path(f.path)
            if key in owners:
                raise ValueError(f"files[{index}].path {f.path} is also {owners[key]}: every file needs its own path")
            owners[key] = f"files[{index}].path {f.path}"
        for index, f in enumerate(self.files):
            password = f.password_path
            if password is None:
                continue
            key = _same_path(password)
            field = (f"files[{index}].passwordFile {password}" if f.passwordFile
                     else f"files[{index}]'s default password file {password} (passwordFile not set)")
            if key in owners:
                raise ValueError(f"{field} is also {owners[key]}: a password file must be a file of its own")
            owners[key] = field

    @property
    def endpoint(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    def install_settings(self) -> dict[str, Any]:
        """The installer's view of this target: paths, modes and commands, never key material."""
        return {
            "targetId": self.targetId,
            "server": self.server,
            "files": [f.model_dump(exclude_none=True) for f in self.files],  # small: SSM parameter cap
            "testCommand": self.testCommand,
            "reloadCommand": self.reloadCommand,
            # verifyFrom node: where the node probes (installer/install_bundle.py VerifySpec);
            # with a probeNode that node probes instead (probe_settings), the target's own does not
            **({"verify": self._verify_spec()} if self.verifyFrom == "node" and self.probeNode is None else {}),
        }

    def _verify_spec(self) -> dict[str, Any]:
        return {"host": self.host, "port": self.port, "sni": self.sni, "probes": self.probes}

    def probe_settings(self) -> dict[str, Any]:
        """What the probe node (``probeNode``) is sent for the install document's read-only
        "probe" action: the target's id and where and how to probe, no files, no commands
        (installer/install_bundle.py do_probe). Raises ValueError without a probeNode."""
        if self.probeNode is None:
            raise ValueError(f"target {self.targetId}: no probeNode to send a probe to")
        return {"targetId": self.targetId, "server": self.server, "files": [], "testCommand": None,
                "reloadCommand": None, "verify": self._verify_spec()}

    def probe_settings_b64(self) -> str:
        """probe_settings() as the SSM document's TargetConfig parameter (base64 of compact JSON)."""
        import base64
        import json

        return base64.b64encode(json.dumps(self.probe_settings(), separators=(",", ":")).encode()).decode()


def _is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def _dns_name_problem(name: str, *, trailing_dot: bool) -> str | None:
    """Why ``name`` is not a DNS host name (None when it is one).

    RFC 1123 section 2.1 / RFC 952: labels of 1-63 letters, digits or hyphens, no leading or
    trailing hyphen, at most 253 characters; the last label is not all-numeric (RFC 1123
    section 2.1, RFC 3696 section 2), so "256.1.1.1", "1.2.3" or "12345" are no names. A
    wildcard ("*.example") is a certificate pattern, not a host name (RFC 6066 section 3).
    ``trailing_dot``: accept one final "." (an absolute name; never in SNI).
    """
    if not name:
        return "is empty"
    if name.startswith("*."):
        return "is a wildcard: a host name is literal ('*.' is a certificate pattern, RFC 6066 section 3)"
    if any(not ch.isprintable() or ch.isspace() for ch in name):
        return "contains a space or control character (newline, NUL, tab, ...)"
    if not name.isascii():
        return "has non-ASCII characters (write an internationalized name as its xn-- A-label)"
    body = name[:-1] if trailing_dot and name.endswith(".") else name
    if len(body) > 253:
        return "is longer than 253 characters"
    labels = body.split(".")
    for label in labels:
        if not _DNS_LABEL.fullmatch(label):
            return (f"has the label {_show(label)}: a label is 1-63 letters, digits or hyphens, "
                    "not starting or ending with a hyphen")
    if labels[-1].isdigit():
        return ("ends with an all-numeric label: not a valid IP address, and not a DNS name "
                "(RFC 1123 section 2.1, RFC 3696 section 2)")
    return None
