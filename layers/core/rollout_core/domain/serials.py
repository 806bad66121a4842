"""Certificate serial numbers: parse every form we meet, compare as integers (S1).

Forms met in this project:

* ACM ``DescribeCertificate``/``ExportCertificate`` show the serial as colon hex, two
  digits per byte, leading zero kept: ``"08:04:e5:..."`` (lowercase; uppercase also
  accepted).
* X.509 (``cryptography``'s ``Certificate.serial_number``, the served certificate): int.
* moto's ACM returns the serial as a decimal string: ``"4578204316..."``.
* ``openssl x509 -serial`` and Python's ``hex()``: plain hex, e.g. ``"0x8a3f"``.

RFC 5280 section 4.1.2.2 ("Serial Number"): the serial is a positive INTEGER of at most
20 octets; certificate users SHOULD handle values up to 20 octets. We accept 0 (some
non-conforming test certificates use it, and a served certificate must still be
reportable) and up to 20 octets of magnitude; negative values and longer values raise
:class:`InvalidSerial`.

Ambiguity rule for strings (documented, applied by :func:`parse_serial` when
``assume="auto"``):

1. a ``0x``/``0X`` prefix -> hex;
2. any ``:`` -> colon hex (each group 1-2 hex digits);
3. any letter ``a-f``/``A-F`` -> plain hex;
4. all decimal digits -> decimal (moto, ``str(int)``), EXCEPT
5. all decimal digits with a leading ``0`` and more than 2 characters (e.g. ``"0804"``)
   is refused as ambiguous: decimal writers never emit a leading zero, but reading it as
   decimal would silently give the wrong serial. A single byte such as ``"08"`` or
   ``"0f"`` is the same value in both readings and is accepted. Pass ``assume="hex"`` or
   ``assume="decimal"`` when the producer is known.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Literal

from .errors import InvalidSerial

__all__ = ["MAX_SERIAL_OCTETS", "parse_serial", "canonical_serial", "serials_equal"]

#: RFC 5280 4.1.2.2: serialNumber values up to 20 octets.
MAX_SERIAL_OCTETS = 20

_HEX = re.compile(r"[0-9a-fA-F]+")
_DEC = re.compile(r"[0-9]+")
_COLON_GROUP = re.compile(r"[0-9a-fA-F]{1,2}")

SerialAssumption = Literal["auto", "hex", "decimal"]


def _quote(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 120 else text[:117] + "..."


def _checked(number: int, original: object) -> int:
    if number < 0:
        raise InvalidSerial(
            f"serial {_quote(original)} is negative; RFC 5280 4.1.2.2 requires a positive integer"
        )
    if number.bit_length() > MAX_SERIAL_OCTETS * 8:
        raise InvalidSerial(
            f"serial {_quote(original)} is longer than {MAX_SERIAL_OCTETS} octets (RFC 5280 4.1.2.2)"
        )
    return number


def _parse_hex_digits(digits: str, original: object) -> int:
    if not _HEX.fullmatch(digits):
        raise InvalidSerial(f"serial {_quote(original)} is not hexadecimal")
    return int(digits, 16)


def _parse_prefixed_hex(text: str, original: str) -> int:
    """``"0x804e5"`` (stripped ``text`` with a 0x/0X prefix) -> 0x804e5; refuses colons."""
    if ":" in text:
        raise InvalidSerial(f"serial {_quote(original)} mixes a 0x prefix with colons")
    return _parse_hex_digits(text[2:], original)


def _parse_colon_hex(text: str, original: str) -> int:
    """``"08:04:e5"`` -> 0x0804e5: each colon group 1-2 hex digits (a 1-digit group is one byte)."""
    groups = text.split(":")
    for position, group in enumerate(groups):
        if not _COLON_GROUP.fullmatch(group):
            raise InvalidSerial(
                f"serial {_quote(original)}: colon group {position} ({group!r}) must be 1-2 hex digits"
            )
    return int("".join(g.zfill(2) for g in groups), 16)


def _parse_decimal(text: str, original: str) -> int:
    """``assume="decimal"``: digits only, read in base 10."""
    if not _DEC.fullmatch(text):
        raise InvalidSerial(f"serial {_quote(original)} is not decimal")
    return int(text, 10)


def _parse_auto(text: str, original: str) -> int:
    """``assume="auto"``: rules 3-5 of the module docstring for a prefix-less, colon-less string."""
    if _DEC.fullmatch(text):
        if len(text) > 2 and text[0] == "0":
            raise InvalidSerial(
                f"serial {_quote(original)} is ambiguous: digits only with a leading zero could be hex or "
                "decimal; use colon hex, a 0x prefix, or pass assume='hex'/'decimal'"
            )
        return int(text, 10)
    if _HEX.fullmatch(text):
        return int(text, 16)
    raise InvalidSerial(f"serial {_quote(original)} is neither colon hex, 0x hex, plain hex nor decimal")


#: How each ``assume`` reads a prefix-less, colon-less string: (stripped text, original) -> int.
_PLAIN_READERS: dict[str, Callable[[str, str], int]] = {
    "auto": _parse_auto,
    "hex": _parse_hex_digits,
    "decimal": _parse_decimal,
}


def parse_serial(value: str | int, *, assume: SerialAssumption = "auto") -> int:
    """Parse a certificate serial number in any supported form into an int.

    Shapes: ``"08:04:e5"`` / ``"08:04:E5"`` (colon hex) -> 0x0804e5; ``"0x804e5"`` -> 0x804e5;
    ``"804e5"`` (has a hex letter) -> 0x804e5; ``"525541"`` (moto's decimal) -> 525541;
    ``525541`` (int) -> 525541. Surrounding whitespace is ignored. ``assume`` forces the
    base of a prefix-less, colon-less string (``"hex"`` or ``"decimal"``); the module
    docstring gives the ``"auto"`` ambiguity rule.

    Raises :class:`InvalidSerial` (quoting the offending value, which is public) for:
    a bool or other type, an empty string, characters that fit no form, an empty colon
    group or one longer than 2 digits, an ambiguous leading-zero decimal string, a
    negative value, or more than 20 octets. Rule source: RFC 5280 section 4.1.2.2.
    """
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise InvalidSerial(f"serial must be a str or int, got {type(value).__name__}")
    if isinstance(value, int):
        return _checked(value, value)

    text = value.strip()
    if not text:
        raise InvalidSerial("serial is empty")
    if text[:2] in ("0x", "0X"):
        return _checked(_parse_prefixed_hex(text, value), value)
    if ":" in text:
        return _checked(_parse_colon_hex(text, value), value)
    reader = _PLAIN_READERS.get(assume) if isinstance(assume, str) else None
    if reader is None:
        raise InvalidSerial(f"unknown serial assumption {assume!r}; use 'auto', 'hex' or 'decimal'")
    return _checked(reader(text, value), value)


def canonical_serial(value: str | int, *, assume: SerialAssumption = "auto") -> str:
    """Return the one canonical display form: lowercase colon hex, 2 digits per byte.

    Shapes: ``0x0804e5`` / ``"525541"`` / ``"08:04:E5"`` -> ``"08:04:e5"``; ``0`` -> ``"00"``.
    Minimal byte length of the magnitude (no extra ``00`` sign octet), which is the form
    ACM shows in DescribeCertificate's ``Serial``. Raises :class:`InvalidSerial` as
    :func:`parse_serial`. Rule source: RFC 5280 4.1.2.2 (serial is a positive integer of
    up to 20 octets); ACM API reference, CertificateDetail.Serial.
    """
    number = parse_serial(value, assume=assume)
    length = max(1, (number.bit_length() + 7) // 8)
    return ":".join(f"{byte:02x}" for byte in number.to_bytes(length, "big"))


def serials_equal(a: str | int, b: str | int) -> bool:
    """True when two serials in any supported form denote the same integer (S1).

    Shapes: ``serials_equal("08:04:e5", 525541)`` -> True. Raises :class:`InvalidSerial`
    when either side cannot be parsed (a parse failure is never silently "not equal").
    Rule source: RFC 5280 4.1.2.2 (the serial is an integer; its text form is not).
    """
    return parse_serial(a) == parse_serial(b)
