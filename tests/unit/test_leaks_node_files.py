"""The leak check's node_files surface (localcloud/leaks.py): files the installer leaves on a node
are scanned for key material outside the configured key paths; the one backup generation in the
installer's state directory is skipped only while it is protected (0600 in a 0700 directory)."""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path

from boto3.dynamodb.types import TypeSerializer
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from cert_rollout.localcloud.leaks import SecretRegistry, node_files, scan


def _key_pem() -> bytes:
    return ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())


def _inventory(directory: Path) -> dict:
    ser = TypeSerializer()
    item = {"targetId": "web-1", "instanceId": "mi-0123456789abcdef0",
            "files": [{"path": str(directory / "fullchain.pem"), "content": "fullchain"},
                      {"path": str(directory / "privkey.pem"), "content": "key"}]}
    return {"inventory": [{k: ser.serialize(v) for k, v in item.items()}]}


def _setup(tmp_path: Path) -> tuple[Path, Path, bytes]:
    target, state = tmp_path / "target", tmp_path / "state" / "web-1"
    target.mkdir()
    state.mkdir(parents=True)
    os.chmod(state, 0o700)
    key = _key_pem()
    (target / "fullchain.pem").write_text("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
    (target / "privkey.pem").write_bytes(key)  # a configured key path: allowed
    (target / "server.log").write_bytes(key)   # not the installer's: not scanned here
    backup = state / "backup.json"
    backup.write_text(json.dumps({"preImage": [{"path": "x", "data": base64.b64encode(key).decode()}]}))
    os.chmod(backup, 0o600)
    return target, state, key


def _findings(tmp_path: Path, target: Path, key: bytes) -> list:
    surfaces = {"node_files": node_files(_inventory(target), [str(tmp_path / "state")])}
    return scan(surfaces, SecretRegistry(key_pems=[key]))


def test_a_clean_node_has_no_finding(tmp_path: Path) -> None:
    target, _, key = _setup(tmp_path)
    assert _findings(tmp_path, target, key) == []


def test_a_staged_key_beside_the_files_is_found(tmp_path: Path) -> None:
    target, _, key = _setup(tmp_path)
    (target / "privkey.pem.rollout-0123456789abcdef.new").write_bytes(key)
    findings = _findings(tmp_path, target, key)
    assert findings and all("rollout-0123456789abcdef.new" in f.where for f in findings)


def test_a_journal_left_behind_is_found_through_its_decoded_pre_image(tmp_path: Path) -> None:
    target, state, key = _setup(tmp_path)
    (state / "journal.json").write_text(json.dumps(
        {"txn": "0123456789abcdef", "preImage": [{"path": "x", "data": base64.b64encode(key).decode()}]}))
    findings = _findings(tmp_path, target, key)
    assert any(f.where.endswith("journal.json") and f.what == "PEM private key block" for f in findings)


def test_an_unprotected_backup_is_found(tmp_path: Path) -> None:
    target, state, key = _setup(tmp_path)
    os.chmod(state / "backup.json", 0o644)
    assert any(f.where.endswith("backup.json") for f in _findings(tmp_path, target, key))


def test_a_key_in_a_configured_certificate_file_is_found(tmp_path: Path) -> None:
    target, _, key = _setup(tmp_path)
    (target / "fullchain.pem").write_bytes(key)
    assert any(f.where.endswith("fullchain.pem") for f in _findings(tmp_path, target, key))
