"""Text-form private key material (issue 11, item 5): layers/core/rollout_core/domain/key_text.py
and its copy in installer/install_bundle.py (standard library only, shipped alone).

The shapes come from the real ``openssl`` binary (``openssl genpkey ... | openssl pkey -text
-noout``, RSA 2048, EC P-256 / P-384, Ed25519), never written by hand. The two copies are tied:
the same corpus through both gives identical text.
"""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from rollout_core.domain import key_text
from rollout_core.domain.errors import RolloutError
from rollout_core.domain.key_text import (
    KEY_TEXT_REDACTED,
    colon_hex_digits,
    private_key_text_labels,
    private_key_text_values,
    redact_key_text,
)
from rollout_core.logic.commands import redact as redact_command_output

LAYER_FILE = Path(key_text.__file__)
INSTALLER = Path(__file__).resolve().parents[2] / "installer" / "install_bundle.py"
GENPKEY = {
    "rsa-2048": ["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"],
    "ec-p256": ["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"],
    "ec-p384": ["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-384"],
    "ed25519": ["-algorithm", "ED25519"],
}
HEX_LINE = re.compile(r"^[ \t]+[0-9a-f]{2}(:[0-9a-f]{2})*:?$", re.M)


def _installer() -> Any:
    spec = importlib.util.spec_from_file_location("_install_bundle_key_text", INSTALLER)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _openssl(*args: str, data: bytes | None = None) -> bytes:
    openssl = shutil.which("openssl")
    assert openssl, "openssl not installed"
    return subprocess.run([openssl, *args], input=data, capture_output=True, check=True, timeout=60).stdout


@pytest.fixture(scope="module")
def keys() -> dict[str, dict[str, Any]]:
    """name -> {pem, key, text (pkey -text -noout), text_with_pem (pkey -text)}."""
    out = {}
    for name, args in GENPKEY.items():
        pem = _openssl("genpkey", *args)
        out[name] = {"pem": pem, "key": serialization.load_pem_private_key(pem, password=None),
                     "text": _openssl("pkey", "-text", "-noout", data=pem).decode(),
                     "text_with_pem": _openssl("pkey", "-text", data=pem).decode()}
    return out


@pytest.fixture(scope="module")
def certificate_text(tmp_path_factory: pytest.TempPathFactory, keys: dict[str, dict[str, Any]]) -> dict[str, str]:
    """A self-signed certificate's ``x509 -text`` and its SHA-1 / SHA-256 fingerprints (public data)."""
    directory = tmp_path_factory.mktemp("cert")
    key_file = directory / "key.pem"
    key_file.write_bytes(keys["ec-p256"]["pem"])
    cert = _openssl("req", "-x509", "-new", "-key", str(key_file), "-subj", "/CN=web.internal.example",
                    "-days", "1")
    return {"text": _openssl("x509", "-text", "-noout", data=cert).decode(),
            "sha1": _openssl("x509", "-noout", "-fingerprint", "-sha1", data=cert).decode(),
            "sha256": _openssl("x509", "-noout", "-fingerprint", "-sha256", data=cert).decode()}


def _windows(value: bytes, size: int = 16) -> list[str]:
    """Hex windows of ``size`` bytes covering ``value`` (the last one aligned to its end)."""
    starts = sorted({*range(0, max(1, len(value) - size + 1), size), max(0, len(value) - size)})
    return [value[s:s + size].hex() for s in starts]


def _corpus(keys: dict[str, dict[str, Any]], certificate_text: dict[str, str]) -> list[str]:
    items: list[str] = []
    for k in keys.values():
        items += [k["text"], k["text_with_pem"], k["text"].replace("\n", "\r\n"), json.dumps(k["text"]),
                  json.dumps(json.dumps(k["text"])), k["text"].upper(),
                  "configuration test is successful\n" + k["text"][len(k["text"]) // 2:],  # a tail: label cut off
                  "".join(line.strip() for line in k["text"].splitlines() if HEX_LINE.match(line))]
    items += [certificate_text["text"], certificate_text["sha1"], certificate_text["sha256"],
              "serial 0f:ac:00:11:22:33:44:55:66:77:88:99:aa:bb:cc:dd:ee:ff:01:02 installed\n",
              "listen [fe80::1ff:fe23:4567:890a]:443 at 12:34:56\n", "nothing here\n", ""]
    return items


def test_openssl_prints_exactly_the_values_the_leak_check_derives(keys: dict[str, dict[str, Any]]) -> None:
    expected_labels = {"rsa-2048": ["privateexponent", "prime1", "prime2", "exponent1", "exponent2", "coefficient"],
                       "ec-p256": ["priv"], "ec-p384": ["priv"], "ed25519": ["priv"]}
    for name, k in keys.items():
        values = private_key_text_values(k["key"])
        assert [label.lower() for label, _ in values] == expected_labels[name]
        assert private_key_text_labels(k["text"]) == expected_labels[name], name
        digits = colon_hex_digits(k["text"])
        for label, value in values:
            assert value.hex() in digits, (name, label)


def test_every_private_value_and_every_hex_line_is_redacted(keys: dict[str, dict[str, Any]]) -> None:
    for name, k in keys.items():
        windows = [w for _, v in private_key_text_values(k["key"]) for w in _windows(v)]
        for text in (k["text"], k["text_with_pem"], json.dumps(k["text"]), k["text"].replace("\n", "\r\n")):
            redacted = redact_key_text(text)
            assert KEY_TEXT_REDACTED in redacted
            assert not HEX_LINE.search(redacted.replace("\r", "")), (name, redacted)  # even an Ed25519 2-byte line
            leftover = colon_hex_digits(redacted) + redacted.lower()
            assert not [w for w in windows if w in leftover], name
            assert private_key_text_labels(redacted) == []


def test_labels_stay_and_a_label_cut_off_tail_is_still_redacted(keys: dict[str, dict[str, Any]]) -> None:
    rsa = keys["rsa-2048"]
    redacted = redact_key_text(rsa["text"])
    assert "prime1:\n    " + KEY_TEXT_REDACTED + "\n" in redacted
    assert "publicExponent: 65537 (0x10001)" in redacted  # a public value on the label's line
    tail = rsa["text"][-300:]  # starts inside coefficient's hex: no label before it
    assert not [w for w in _windows(private_key_text_values(rsa["key"])[-1][1]) if w in colon_hex_digits(
        redact_key_text(tail))]


def test_public_colon_hex_below_24_bytes_stays_and_a_sha256_fingerprint_goes(certificate_text: dict[str, str]) -> None:
    serial = "0f:ac:00:11:22:33:44:55:66:77:88:99:aa:bb:cc:dd:ee:ff:01:02"  # 20 octets: RFC 5280 maximum
    assert redact_key_text(f"serial {serial}\n") == f"serial {serial}\n"
    assert redact_key_text(certificate_text["sha1"]) == certificate_text["sha1"]
    assert redact_key_text(certificate_text["sha256"]) == "sha256 Fingerprint=" + KEY_TEXT_REDACTED + "\n"
    ipv6 = "listen [fe80::1ff:fe23:4567:890a]:443 at 12:34:56\n"
    assert redact_key_text(ipv6) == ipv6
    x509_text = redact_key_text(certificate_text["text"])
    assert "Serial Number:" in x509_text and "Subject: CN" in x509_text and "X509v3 Subject Key Identifier" in x509_text
    assert "pub:\n    " + KEY_TEXT_REDACTED in x509_text  # the public point: harmless to redact


def test_installer_copy_gives_identical_results_to_the_layer(keys: dict[str, dict[str, Any]],
                                                             certificate_text: dict[str, str]) -> None:
    """installer/install_bundle.py redact_key_text == layers/core/rollout_core/domain/key_text.py redact_key_text."""
    ib = _installer()
    assert (ib.KEY_TEXT_MIN_BYTES, ib.KEY_TEXT_REDACTED) == (key_text.KEY_TEXT_MIN_BYTES, key_text.KEY_TEXT_REDACTED)
    corpus = _corpus(keys, certificate_text)
    changed = 0
    for text in corpus:
        layer = redact_key_text(text)
        assert ib.redact_key_text(text) == layer, (LAYER_FILE.name, INSTALLER.name, text[:200])
        changed += layer != text
    assert changed >= len(keys) * 7, "the corpus must exercise the redaction"


def test_installer_redactor_removes_key_text_from_command_output(keys: dict[str, dict[str, Any]]) -> None:
    ib = _installer()
    for k in keys.values():
        out = str(ib.Redactor()("configuration test is successful\n" + k["text"]))
        assert out.startswith("configuration test is successful\n")
        assert private_key_text_labels(out) == [] and not HEX_LINE.search(out)


def test_layer_redacts_key_text_from_server_output_and_error_messages(keys: dict[str, dict[str, Any]]) -> None:
    text = keys["ec-p384"]["text"]
    priv = private_key_text_values(keys["ec-p384"]["key"])[0][1]
    for redacted in (redact_command_output("test failed:\n" + text), str(RolloutError("test failed:\n" + text))):
        assert private_key_text_labels(redacted) == []
        assert not [w for w in _windows(priv) if w in colon_hex_digits(redacted)]
