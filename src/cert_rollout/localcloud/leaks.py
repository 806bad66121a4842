"""The leak check: no private key (plain or encrypted), no key DER bytes and no export
passphrase on any surface an operator or attacker can read (DESIGN.md hard rules).

Surfaces scanned: every execution history event, every function log line, every SNS message,
every SSM command's parameters and output, every DynamoDB item. The secrets searched for are
the ones the local cloud saw: every passphrase passed to ExportCertificate, every key ACM held
(PEM, base64 DER, hex DER) and every encrypted key ExportCertificate returned.
"""

from __future__ import annotations

import base64
import json
import re
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives import serialization

PEM_KEY_MARKER = re.compile(r"-----BEGIN (?:ENCRYPTED |RSA |EC )?PRIVATE KEY-----")


@dataclass
class SecretRegistry:
    """What must never appear: filled by the local cloud as it exports and issues."""

    passphrases: list[bytes] = field(default_factory=list)
    key_pems: list[bytes] = field(default_factory=list)

    def needles(self) -> list[tuple[str, str]]:
        """(label, text) pairs to search for; labels never contain the secret."""
        out: list[tuple[str, str]] = []
        for i, p in enumerate(self.passphrases):
            text = p.decode("ascii", "replace")
            out.append((f"export passphrase #{i + 1}", text))
            out.append((f"export passphrase #{i + 1} (base64)", base64.b64encode(p).decode()))
        for i, pem in enumerate(self.key_pems):
            key = serialization.load_pem_private_key(pem, password=None)
            der = key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption())
            b64 = base64.b64encode(der).decode()
            # Whole 64-character PEM lines (PEM wraps base64 at 64): they match the key printed
            # as PEM (with or without its BEGIN/END lines) and as one unbroken base64 string.
            out.append((f"private key #{i + 1} (base64 DER, line 2)", b64[64:128]))
            out.append((f"private key #{i + 1} (base64 DER, line 5)", b64[256:320]))
            out.append((f"private key #{i + 1} (hex DER)", der[16:48].hex()))
            body_lines = [line for line in pem.decode().splitlines() if line and not line.startswith("-----")]
            if len(body_lines) > 2:
                out.append((f"private key #{i + 1} (PEM body line)", body_lines[2]))
        return [(label, text) for label, text in out if len(text) >= 8]


@dataclass
class Finding:
    surface: str
    where: str
    what: str

    def as_dict(self) -> dict[str, str]:
        return {"surface": self.surface, "where": self.where, "what": self.what}


def scan(surfaces: dict[str, list[tuple[str, str]]], registry: SecretRegistry) -> list[Finding]:
    """Search every (where, text) of every surface for a PEM private-key block or a registered
    secret. Returns findings naming the surface, the place and the kind of secret (never the
    secret itself)."""
    needles = registry.needles()
    findings: list[Finding] = []
    for surface, items in surfaces.items():
        for where, text in items:
            if PEM_KEY_MARKER.search(text):
                findings.append(Finding(surface, where, "PEM private key block"))
            for label, needle in needles:
                if needle in text:
                    findings.append(Finding(surface, where, label))
    return findings


def collect_surfaces(cloud: Any, execution_arns: list[str]) -> dict[str, list[tuple[str, str]]]:
    """Everything readable after a run, as (where, text) pairs per surface."""
    surfaces: dict[str, list[tuple[str, str]]] = {"history": [], "logs": [], "sns": [], "ssm": [], "dynamodb": []}
    for arn in execution_arns:
        for event in cloud.history(arn):
            surfaces["history"].append((f"{arn.rsplit(':', 1)[-1]} event {event['id']} {event['type']}",
                                        json.dumps(event, default=str)))
        description = cloud.client("stepfunctions").describe_execution(executionArn=arn)
        surfaces["history"].append((f"{arn} input/output", json.dumps(description, default=str)))
    for group, lines in cloud.function_logs().items():
        surfaces["logs"].extend((f"{group} line {i + 1}", line) for i, line in enumerate(lines))
    for m in cloud.sns_messages():
        surfaces["sns"].append((f"message {m['MessageId']}", json.dumps(m)))
    for c in cloud.ssm_commands():
        surfaces["ssm"].append((f"command {c['CommandId']} parameters", json.dumps(c["Parameters"]) + c["Comment"]))
        for inv in c["Invocations"]:
            surfaces["ssm"].append((f"command {c['CommandId']} output on {inv['InstanceId']}",
                                    str(inv.get("StandardOutputContent", "")) + str(inv.get("StandardErrorContent", ""))))
    for table, items in cloud.dynamodb_items().items():
        surfaces["dynamodb"].extend((f"{table} item {i + 1}", json.dumps(item)) for i, item in enumerate(items))
    return surfaces
