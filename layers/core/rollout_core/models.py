"""Shapes shared by the functions: the inventory's Target, outcomes, decisions.

Field names are camelCase because they are the DynamoDB attribute names and the state
machine's JSON keys as well.
"""

from __future__ import annotations

import ipaddress
import re
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

TARGET_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
INSTANCE_ID_PATTERN = r"^(i|mi)-[0-9a-f]{8,17}$"
HOSTNAME_PATTERN = re.compile(r"^(?=.{1,253}$)([A-Za-z0-9*]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?$")

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


class TargetFile(BaseModel):
    """One file the installer writes on the node."""

    model_config = ConfigDict(extra="forbid")

    path: str = Field(pattern=r"^/[^\x00]*$", max_length=1024)
    content: FileContent
    mode: str = Field(default="0644", pattern=r"^0?[0-7]{3}$")
    owner: str | None = None
    group: str | None = None
    # encrypted-key / pkcs12: where the node keeps the password (mode 0600; default "<path>.pass")
    passwordFile: str | None = Field(default=None, pattern=r"^/[^\x00]*$", max_length=1024)
    alias: str | None = Field(default=None, pattern=r"^[A-Za-z0-9._-]{1,64}$")  # pkcs12 friendly name


class Target(BaseModel):
    """One host:port that must serve a certificate, and how files get there (inventory item).

    Raises pydantic.ValidationError naming the field: a bad port, an unknown server kind, a
    missing SNI name for an IP-address host, a bad managed-node id.
    """

    model_config = ConfigDict(extra="ignore")

    certificateArn: str = Field(pattern=r"^arn:aws[a-z-]*:acm:[a-z0-9-]+:\d{12}:certificate/[A-Za-z0-9-]+$")
    targetId: str = Field(pattern=TARGET_ID_PATTERN)
    host: str
    port: int = Field(ge=1, le=65535)
    sni: str | None = None
    server: ServerKind = "generic"
    instanceId: str = Field(pattern=INSTANCE_ID_PATTERN)
    files: list[TargetFile] = Field(default_factory=list)
    testCommand: list[str] | None = None
    reloadCommand: list[str] | None = None
    # state written by the rollout (not part of the settings)
    lastDeployedSerial: str | None = None
    lastDeployedAt: str | None = None
    lastOutcome: str | None = None

    @field_validator("host")
    @classmethod
    def _host_is_name_or_ip(cls, value: str) -> str:
        if _is_ip(value) or HOSTNAME_PATTERN.match(value):
            return value
        raise ValueError(f"host {value!r} is neither a DNS name nor an IP address")

    @model_validator(mode="after")
    def _settings_complete(self) -> Target:
        if self.sni is None:
            if _is_ip(self.host):
                raise ValueError(
                    f"target {self.targetId}: host {self.host} is an IP address, so an SNI name "
                    "is required (the name the server selects its certificate by, RFC 6066 s3)")
            self.sni = self.host
        elif _is_ip(self.sni):
            raise ValueError("sni must be a DNS name: RFC 6066 s3 forbids IP addresses in SNI")
        if not self.files:
            raise ValueError(f"target {self.targetId}: no files to install")
        if self.server == "generic" and self.reloadCommand is None:
            raise ValueError(f"target {self.targetId}: a generic target needs a reloadCommand")
        return self

    @property
    def endpoint(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    def install_settings(self) -> dict:
        """The installer's view of this target: paths, modes and commands, never key material."""
        return {
            "targetId": self.targetId,
            "server": self.server,
            "files": [f.model_dump() for f in self.files],
            "testCommand": self.testCommand,
            "reloadCommand": self.reloadCommand,
        }


def _is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True
