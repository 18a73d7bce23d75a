from __future__ import annotations

import pytest

from julia.core import phones
from julia.core.errors import InvalidPhone


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("(11) 99999-8888", "+5511999998888"),
        ("+55 11 99999 8888", "+5511999998888"),
        ("11999998888", "+5511999998888"),
        ("5511999998888", "+5511999998888"),
        ("0055 11 99999-8888", "+5511999998888"),
        ("011 99999-8888", "+5511999998888"),
        ("5511999998888@s.whatsapp.net", "+5511999998888"),
        ("5511999998888:12@s.whatsapp.net", "+5511999998888"),
        # WhatsApp still writes many mobiles without the ninth digit.
        ("556481140676", "+5564981140676"),
        ("556481140676@s.whatsapp.net", "+5564981140676"),
        ("(64) 8114-0676", "+5564981140676"),
        # Landlines keep 8 digits.
        ("(11) 3333-4444", "+551133334444"),
        ("+55 51 3222-1100", "+555132221100"),
        # Area code 55 (RS) is not confused with the country code.
        ("(55) 99988-7766", "+5555999887766"),
        ("55999887766", "+5555999887766"),
    ],
)
def test_normalize(raw: str, expected: str) -> None:
    assert phones.normalize(raw) == expected


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("", "empty"),
        ("123", "wrong number of digits"),
        ("(20) 99999-8888", "unknown area code 20"),
        ("(11) 89999-8888", "must be a mobile starting with 9"),
        ("(11) 1999-8888", r"landline \(2-5\) or mobile \(6-9\)"),
        ("+1 415 555 0100", "not a Brazilian number"),
        ("11 9999x8888", "not digits"),
        ("551199999888877", "wrong number of digits"),
    ],
)
def test_impossible_numbers_are_errors(raw: str, reason: str) -> None:
    with pytest.raises(InvalidPhone, match=reason):
        phones.normalize(raw)


def test_invalid_phone_message_never_holds_the_full_number() -> None:
    with pytest.raises(InvalidPhone) as info:
        phones.normalize("(20) 99999-8888")
    assert "999998888" not in str(info.value)


def test_variants_with_and_without_ninth_digit() -> None:
    assert phones.variants("+5564981140676") == ["5564981140676", "556481140676"]
    assert phones.variants("+551133334444") == ["551133334444"]
    assert phones.is_valid("11999998888") and not phones.is_valid("abc")
