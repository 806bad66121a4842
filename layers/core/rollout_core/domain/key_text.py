"""Text-form private key material: recognise it, redact it, and name the values it shows.

``openssl pkey -text -noout`` (also ``openssl rsa|ec -text``, ``openssl x509 -text`` for the
public half) prints a key as labelled blocks of colon-separated hex, 15 bytes a line, each line
indented four spaces, e.g. for RSA 2048 (openssl 3.0)::

    Private-Key: (2048 bit, 2 primes)
    modulus:
        00:f8:e3:78:55:f9:d7:10:41:fb:0a:0e:70:82:2b:
        ...
        22:2f
    publicExponent: 65537 (0x10001)
    privateExponent:
        21:7e:5f:...
    prime1: / prime2: / exponent1: / exponent2: / coefficient:

EC P-256 / P-384 print ``priv:`` (the private scalar) and ``pub:`` (the point), Ed25519 prints
``priv:`` (the 32-byte seed) and ``pub:``. A test or reload command that prints the installed key
this way (a common "show me what was installed" debugging step) puts the key's primes into the
SSM output, the execution report and the notification (issue 11, item 5).

Two rules, both applied by :func:`redact_key_text`:

1. A labelled block: a line that is only one of the labels above (``modulus``,
   ``privateExponent``, ``prime<N>``, ``exponent<N>``, ``coefficient<N>``, ``priv``, ``pub``;
   any case, any indentation) followed by indented colon-hex lines: every such line is
   replaced, however short (an Ed25519 block's last line holds 2 bytes).
2. Any run of colon-separated hex of at least :data:`KEY_TEXT_MIN_BYTES` (24) bytes, label or
   not, wrapped over lines or not (a colon may be followed by whitespace, newlines and
   indentation, or by a JSON-escaped ``\\n``): a key pasted without its label, or one whose
   label was cut off by a tail of the output.

Why 24 bytes: the smallest secret openssl prints whole is 32 bytes (a P-256 scalar, an Ed25519
or X25519 seed; a P-384 scalar is 48, RSA 2048 primes 128), so 24 catches every whole value and
any piece of two or more 15-byte lines. Public colon-hex values an operator does need stay
below it: a certificate serial is at most 20 octets (RFC 5280 section 4.1.2.2; the serials
this product reports are colon hex), key identifiers and SHA-1 fingerprints are 20 bytes.
A SHA-256 fingerprint (32 bytes, ``openssl x509 -fingerprint -sha256``) and a signature value
are redacted too: they are public, so redacting them costs the reader a fingerprint in a
server's output (the product never needs one from there: it compares serials), while a
threshold above 32 bytes would let a whole EC private key through. Missing a key is not
harmless; redacting a fingerprint is.

Not recognised: hex without colons (``openssl asn1parse``'s ``INTEGER :C5A3...``), hex with
spaces (``xxd``). The leak check (``cert_rollout.localcloud.leaks``) still finds the rollout's
own keys in those forms, by value.

The node installer (``installer/install_bundle.py``) is standard library only and ships alone,
so it holds a copy of this module's patterns and :func:`redact_key_text`;
``tests/unit/test_key_text.py`` feeds both the same corpus and requires identical results.
"""

from __future__ import annotations

import re

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa, x448, x25519
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

__all__ = [
    "KEY_TEXT_MIN_BYTES",
    "KEY_TEXT_REDACTED",
    "redact_key_text",
    "private_key_text_labels",
    "colon_hex_digits",
    "private_key_text_values",
]

#: A colon-hex run this many bytes long is redacted even without a label (module docstring).
KEY_TEXT_MIN_BYTES = 24
#: What a redacted block or run is replaced with.
KEY_TEXT_REDACTED = "[redacted key text]"

# A separator between two hex bytes: a colon, then any whitespace (a wrapped line's newline and
# indentation) or JSON-escaped \n \r \t (any number of backslashes: escaped more than once).
_SEP = r":(?:\s|\\+[nrt])*"
# Labels openssl prints before a key's hex blocks (RSA, EC, DSA/DH priv/pub, Ed/X25519/448).
_LABELS = r"(?:modulus|privateExponent|prime\d*|exponent\d*|coefficient\d*|priv|pub)"
# Rule 1: the label line, then every indented colon-hex line after it.
_KEY_TEXT_BLOCK = re.compile(
    r"(?im)^([ \t]*" + _LABELS + r"[ \t]*:)[ \t]*\r?\n"
    r"(?:[ \t]+[0-9a-f]{2}(?::[0-9a-f]{2})*:?[ \t]*(?:\r?\n|\Z))+")
# Rule 2: a colon-hex run of KEY_TEXT_MIN_BYTES or more. It starts neither inside a hex word nor
# right after "xx:" (so a run below the threshold is tried once, not from each of its bytes).
_COLON_HEX_RUN = re.compile(
    r"(?<![0-9A-Fa-f])(?<![0-9A-Fa-f]:)[0-9A-Fa-f]{2}(?:" + _SEP + r"[0-9A-Fa-f]{2}){"
    + str(KEY_TEXT_MIN_BYTES - 1) + r",}")
# Any colon-hex run of two bytes or more (the leak check's normal form).
_ANY_COLON_HEX = re.compile(r"(?<![0-9A-Fa-f])[0-9A-Fa-f]{2}(?:" + _SEP + r"[0-9A-Fa-f]{2})+")
_NOT_HEX = re.compile(r"[^0-9a-f]")  # after lower(): separators, whitespace, the n r t of escapes
# A private label directly followed by colon hex, in raw or JSON-escaped text (where the label
# follows an escaped newline, whose "n" is a letter).
_PRIVATE_LABEL = re.compile(
    r"(?i)(?:(?<![A-Za-z])|(?<=\\[nrt]))(privateExponent|prime\d+|exponent\d+|coefficient\d*|priv)[ \t]*:"
    r"(?:\s|\\+[nrt])*[0-9a-f]{2}:")


def redact_key_text(text: str) -> str:
    """``text`` with every text-form key block and long colon-hex run replaced.

    Shapes: str -> str. A labelled block keeps its label line and loses its hex lines (one
    indented ``[redacted key text]`` line instead); a run of >= 24 colon-separated bytes
    becomes ``[redacted key text]``. Never raises. Rules and the 24-byte threshold: module
    docstring. Rule source: DESIGN.md hard rules (no key material in SSM output), issue 11.
    """
    text = _KEY_TEXT_BLOCK.sub(lambda m: m.group(1) + "\n    " + KEY_TEXT_REDACTED + "\n", text)
    return _COLON_HEX_RUN.sub(KEY_TEXT_REDACTED, text)


def private_key_text_labels(text: str) -> list[str]:
    """The private-value labels (``privateExponent``, ``prime1``, ``priv``, ...) that ``text``
    shows followed by colon hex, lowercased, in order, duplicates kept. Public labels
    (``modulus``, ``pub``) are not listed. Used by the leak check to flag any text-form private
    key, the rollout's or not. Never raises."""
    return [m.group(1).lower() for m in _PRIVATE_LABEL.finditer(text)]


def colon_hex_digits(text: str) -> str:
    """Every colon-hex run of ``text`` (two bytes or more, wrapped or JSON-escaped) as its bare
    lowercase hex digits, runs joined by ``"|"``: ``"x 0A:1b:\\n    2c"`` -> ``"0a1b2c"``.
    A value printed in any wrapping is then a substring. Never raises."""
    return "|".join(_NOT_HEX.sub("", m.group(0).lower()) for m in _ANY_COLON_HEX.finditer(text))


def _magnitude(value: int) -> bytes:
    return value.to_bytes(max(1, (value.bit_length() + 7) // 8), "big")


def private_key_text_values(key: PrivateKeyTypes) -> list[tuple[str, bytes]]:
    """The secret values ``openssl pkey -text`` prints for ``key``, as (openssl's label,
    big-endian bytes without leading zero bytes): RSA ``privateExponent``, ``prime1``,
    ``prime2``, ``exponent1``, ``exponent2``, ``coefficient``; EC and DSA ``priv`` (the private
    scalar); Ed25519 / Ed448 / X25519 / X448 ``priv`` (the raw private key). Public values
    (modulus, point) are left out. Raises TypeError for another key type. Source: openssl 3.0
    ``pkey -text`` output (tests/unit/test_key_text.py compares with the real binary)."""
    if isinstance(key, rsa.RSAPrivateKey):
        n = key.private_numbers()
        return [("privateExponent", _magnitude(n.d)), ("prime1", _magnitude(n.p)), ("prime2", _magnitude(n.q)),
                ("exponent1", _magnitude(n.dmp1)), ("exponent2", _magnitude(n.dmq1)),
                ("coefficient", _magnitude(n.iqmp))]
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return [("priv", _magnitude(key.private_numbers().private_value))]
    if isinstance(key, dsa.DSAPrivateKey):
        return [("priv", _magnitude(key.private_numbers().x))]
    if isinstance(key, ed25519.Ed25519PrivateKey | ed448.Ed448PrivateKey | x25519.X25519PrivateKey
                  | x448.X448PrivateKey):
        raw = key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                                serialization.NoEncryption())
        return [("priv", raw.lstrip(b"\0") or b"\0")]
    raise TypeError(f"no text form known for a {type(key).__name__}")
