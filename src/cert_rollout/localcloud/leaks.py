"""The leak check: no private key (plain or encrypted), no key DER bytes and no export
passphrase on any surface an operator or attacker can read (DESIGN.md hard rules).

Surfaces scanned: every execution history event, every function log line, every SNS message,
every SSM command's parameters and output, every DynamoDB item, the run report itself
(report.finalize), and the files left on the local managed nodes (node_files): every configured
non-key file of a target, every "*.rollout-*" file beside a target's files (staged files, an
older installer's backups), and every file of each node's working directory (the cwd of its
commands, as SSM's orchestration directory on a real node; it holds the installer's state
directory) with a journal's base64 pre-image decoded. The
one place a key may rest outside a configured key path is the state directory's single backup
generation (backup.json, mode 0600 in a 0700 directory; installer/install_bundle.py): it is
skipped only while it is that protected. The secrets searched for are
the ones the local cloud saw: every passphrase passed to ExportCertificate, every key ACM held
(PEM, base64 DER, hex DER, and its text form: the secret values ``openssl pkey -text`` prints,
found by 16-byte windows in any colon-hex wrapping or as plain hex) and every encrypted key
ExportCertificate returned. Any text-form private key block (a private label such as ``prime1:``
or ``priv:`` followed by colon hex) is a finding whosever key it is, like a PEM key block.
"""

from __future__ import annotations

import base64
import json
import os
import re
import stat
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives import serialization
from rollout_core.domain.key_text import colon_hex_digits, private_key_text_labels, private_key_text_values

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

    def text_form_needles(self) -> list[tuple[str, str]]:
        """(label, lowercase hex) 16-byte windows covering each secret value that ``openssl
        pkey -text`` prints for each registered key (key_text.private_key_text_values); matched
        against a text's colon-hex digits and its plain hex (scan). Labels never hold a secret."""
        out: list[tuple[str, str]] = []
        for i, pem in enumerate(self.key_pems):
            key = serialization.load_pem_private_key(pem, password=None)
            for name, value in private_key_text_values(key):
                starts = {*range(0, max(1, len(value) - TEXT_WINDOW + 1), TEXT_WINDOW),
                          max(0, len(value) - TEXT_WINDOW)}
                out += [(f"private key #{i + 1} (text form, {name})", value[s:s + TEXT_WINDOW].hex())
                        for s in sorted(starts)]
        return out


#: Bytes of a secret value the leak check looks for at a time (a partial dump is still found).
TEXT_WINDOW = 16


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
    text_needles = registry.text_form_needles()
    findings: list[Finding] = []
    for surface, items in surfaces.items():
        for where, text in items:
            if PEM_KEY_MARKER.search(text):
                findings.append(Finding(surface, where, "PEM private key block"))
            if private_key_text_labels(text):
                findings.append(Finding(surface, where, "text-form private key block"))
            for label, needle in needles:
                if needle in text:
                    findings.append(Finding(surface, where, label))
            forms = colon_hex_digits(text) + "|" + text.lower()
            for label in dict.fromkeys(label for label, window in text_needles if window in forms):
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
    items_by_table = cloud.dynamodb_items()
    for table, items in items_by_table.items():
        surfaces["dynamodb"].extend((f"{table} item {i + 1}", json.dumps(item)) for i, item in enumerate(items))
    surfaces["node_files"] = node_files(items_by_table, [n.workdir for n in cloud.fleet.nodes.values()])
    return surfaces


KEY_CONTENTS = {"key", "combined", "encrypted-key", "pkcs12"}


def _target_files(items_by_table: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Every file spec of every inventory item (DynamoDB JSON, items with instanceId and files)."""
    from boto3.dynamodb.types import TypeDeserializer

    des = TypeDeserializer()
    specs: list[dict[str, Any]] = []
    for items in items_by_table.values():
        for item in items:
            if "instanceId" in item and "files" in item:
                files = des.deserialize(item["files"])
                specs.extend(f for f in files if isinstance(f, dict) and isinstance(f.get("path"), str))
    return specs


def _protected_backup(path: str) -> bool:
    parent = os.path.dirname(path)
    return (os.path.basename(path) == "backup.json" and stat.S_IMODE(os.stat(path).st_mode) == 0o600
            and stat.S_IMODE(os.stat(parent).st_mode) == 0o700)


def _file_text(path: str) -> str:
    """A file's text, with the base64 contents of an installer journal's pre-image decoded."""
    with open(path, "rb") as f:
        raw = f.read()
    text = raw.decode("utf-8", "replace")
    if path.endswith(".json"):
        try:
            entries = json.loads(text).get("preImage") or []
            text += "".join("\n" + base64.b64decode(e["data"]).decode("utf-8", "replace")
                            for e in entries if isinstance(e, dict) and e.get("data"))
        except (ValueError, AttributeError, TypeError, KeyError):
            pass
    return text


def node_files(items_by_table: dict[str, list[dict[str, Any]]], node_dirs: list[str]) -> list[tuple[str, str]]:
    """(where, text) of every file on the local nodes where no key may rest (module docstring).
    ``node_dirs``: each node's working directory (or just its installer state directory), walked
    whole."""
    specs = _target_files(items_by_table)
    key_paths = {f["path"] for f in specs if f.get("content") in KEY_CONTENTS}
    key_paths |= {f["passwordFile"] for f in specs if isinstance(f.get("passwordFile"), str)}
    paths = {f["path"] for f in specs if f["path"] not in key_paths and os.path.isfile(f["path"])}
    for directory in {os.path.dirname(f["path"]) for f in specs}:
        if os.path.isdir(directory):
            paths |= {os.path.join(directory, n) for n in os.listdir(directory) if ".rollout-" in n}
    for state in node_dirs:
        for root, _dirs, names in os.walk(state) if state else ():
            paths |= {os.path.join(root, n) for n in names}
    found = []
    for path in sorted(paths):
        if os.path.isfile(path) and not _protected_backup(path):
            found.append((f"node file {path}", _file_text(path)))
    return found
