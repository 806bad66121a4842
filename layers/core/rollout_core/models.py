"""Shapes shared by the functions: the inventory's Target, outcomes, decisions.

Field names are camelCase because they are the DynamoDB attribute names and the state
machine's JSON keys as well.
"""

from __future__ import annotations

import difflib
import ipaddress
import posixpath
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
MODE_PATTERN = r"\A[0-7]{3,4}\Z"
_TARGET_ID = re.compile(TARGET_ID_PATTERN)
_INSTANCE_ID = re.compile(INSTANCE_ID_PATTERN)
_CERTIFICATE_ARN = re.compile(CERTIFICATE_ARN_PATTERN)
_DNS_LABEL = re.compile(DNS_LABEL_PATTERN)
_ALIAS = re.compile(ALIAS_PATTERN)
_MODE = re.compile(MODE_PATTERN)

#: File contents that carry private key material (the key itself, or a keystore holding it).
KEY_MATERIAL_CONTENTS = frozenset({"key", "combined", "encrypted-key", "pkcs12"})
#: Contents whose password lives in a password file (default ``<path>.pass``, the installer's).
PASSWORD_CONTENTS = frozenset({"encrypted-key", "pkcs12"})
PASSWORD_SUFFIX = ".pass"
#: Mode bits a key-material file must not have: setuid/setgid/sticky (07000), owner execute
#: (0100), group write/execute (0030), any bit for others (0007). Leaves at most 0640.
KEY_MODE_FORBIDDEN = 0o7137
SPECIAL_MODE_BITS = 0o7000
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


class TargetOutcome(StrEnum):
    VERIFIED = "VERIFIED"
    ROLLED_BACK = "ROLLED_BACK"
    FAILED = "FAILED"


@@MODELS@@
