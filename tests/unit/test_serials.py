"""S1: serials compare as integers whatever their text form."""

from __future__ import annotations

import pytest
from rollout_core.domain.errors import InvalidSerial, RolloutError
from rollout_core.domain.serials import canonical_serial, parse_serial, serials_equal

from tests.unit.pki_fixtures import pki

ACM_SERIAL = "08:04:e5:3a:9b:00:11:7c:de:ad:be:ef:01:02:03:04"
SERIAL_INT = 0x0804E53A9B00117CDEADBEEF01020304


def test_acm_colon_hex_equals_decimal_serial() -> None:
    moto_decimal = str(SERIAL_INT)
    assert serials_equal(ACM_SERIAL, moto_decimal)
    assert parse_serial(moto_decimal) == SERIAL_INT


def test_acm_colon_hex_equals_x509_integer_serial() -> None:
    assert serials_equal(ACM_SERIAL, SERIAL_INT)
    leaf = pki("RSA_2048").leaf_cert
    assert serials_equal(canonical_serial(leaf.serial_number), leaf.serial_number)


def test_uppercase_colon_hex_equals_lowercase() -> None:
    assert parse_serial(ACM_SERIAL.upper()) == SERIAL_INT


def test_leading_zero_byte_is_kept_in_canonical_form() -> None:
    assert canonical_serial(SERIAL_INT) == ACM_SERIAL
    assert canonical_serial(str(SERIAL_INT)) == ACM_SERIAL


def test_canonical_form_is_minimal_lowercase_two_digits_per_byte() -> None:
    assert canonical_serial("0x00000804E5") == "08:04:e5"
    assert canonical_serial("00:08:04:E5") == "08:04:e5"
    assert canonical_serial(0) == "00"
    assert canonical_serial(255) == "ff"
    assert canonical_serial(256) == "01:00"


def test_all_forms_give_one_canonical_form() -> None:
    forms = [
        ACM_SERIAL,
        ACM_SERIAL.upper(),
        str(SERIAL_INT),
        SERIAL_INT,
        hex(SERIAL_INT),
        "0804e53a9b00117cdeadbeef01020304",
    ]
    assert {canonical_serial(f) for f in forms} == {ACM_SERIAL}


def test_plain_hex_with_0x_prefix_is_hex() -> None:
    assert parse_serial("0x10") == 16
    assert parse_serial("0X1F") == 31


def test_string_with_hex_letter_is_hex() -> None:
    assert parse_serial("804e5") == 0x804E5
    assert parse_serial("0f") == 15


def test_digits_only_without_colon_is_decimal() -> None:
    assert parse_serial("10") == 10
    assert parse_serial("525541") == 525541


def test_colon_hex_groups_of_one_digit_are_padded() -> None:
    assert parse_serial("8:4:e5") == 0x0804E5
    assert parse_serial("01:10") == 0x0110


def test_trailing_colon_is_an_empty_group() -> None:
    with pytest.raises(InvalidSerial, match="colon group 2"):
        parse_serial("08:04:")


def test_single_byte_with_leading_zero_reads_the_same_both_ways() -> None:
    assert parse_serial("08") == 8
    assert parse_serial("09") == 9


def test_leading_zero_digit_string_is_refused_as_ambiguous() -> None:
    with pytest.raises(InvalidSerial, match="ambiguous"):
        parse_serial("0804")


def test_explicit_assumption_resolves_ambiguity() -> None:
    assert parse_serial("0804", assume="hex") == 0x0804
    assert parse_serial("0804", assume="decimal") == 804


def test_surrounding_whitespace_is_ignored() -> None:
    assert parse_serial("  08:04:e5\n") == 0x0804E5


def test_serials_equal_is_false_for_different_serials() -> None:
    assert not serials_equal("08:04:e5", "08:04:e6")


@pytest.mark.parametrize(
    "bad",
    ["", "   ", "08::04", "080:04", "xyz", "08:04:zz", "0x", "0x08:04", "-5", "1.5", "0804e5g"],
)
def test_unparseable_serial_raises_invalid_serial_naming_the_value(bad: str) -> None:
    with pytest.raises(InvalidSerial) as info:
        parse_serial(bad)
    if bad.strip():
        assert repr(bad)[:20] in str(info.value) or bad in str(info.value)


def test_negative_int_serial_is_refused() -> None:
    with pytest.raises(InvalidSerial, match="negative"):
        parse_serial(-1)


def test_serial_longer_than_20_octets_is_refused() -> None:
    assert parse_serial(2**160 - 1) == 2**160 - 1
    with pytest.raises(InvalidSerial, match="20 octets"):
        parse_serial(2**160)
    with pytest.raises(InvalidSerial, match="20 octets"):
        parse_serial(":".join(["ff"] * 21))


@pytest.mark.parametrize("bad", [True, None, 1.0, b"08:04"])
def test_non_str_non_int_serial_is_refused(bad: object) -> None:
    with pytest.raises(InvalidSerial):
        parse_serial(bad)  # type: ignore[arg-type]


def test_serials_equal_raises_rather_than_saying_not_equal_on_garbage() -> None:
    with pytest.raises(InvalidSerial):
        serials_equal("08:04", "garbage")


def test_invalid_serial_is_a_rollout_error() -> None:
    assert issubclass(InvalidSerial, RolloutError)
    assert InvalidSerial("x").code == "InvalidSerial"
