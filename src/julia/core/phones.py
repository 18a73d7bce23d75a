"""Brazilian phone numbers → E.164 (``+5511999998888``).

Accepts the common writings ("(11) 99999-8888", "+55 11 99999 8888",
"11999998888", "5511999998888", WhatsApp JIDs "5511...@s.whatsapp.net") and the
old mobile form without the ninth digit that WhatsApp still uses for many
numbers (``556481140676`` → ``+5564981140676``). Anything that cannot be a
Brazilian number raises :class:`~julia.errors.InvalidPhone`.
"""

from __future__ import annotations

import re

from julia.core.errors import InvalidPhone

#: Every area code (DDD) in use in Brazil.
DDDS = frozenset(
    {11, 12, 13, 14, 15, 16, 17, 18, 19, 21, 22, 24, 27, 28}
    | {31, 32, 33, 34, 35, 37, 38, 41, 42, 43, 44, 45, 46, 47, 48, 49}
    | {51, 53, 54, 55, 61, 62, 63, 64, 65, 66, 67, 68, 69, 71, 73, 74, 75, 77, 79}
    | {81, 82, 83, 84, 85, 86, 87, 88, 89, 91, 92, 93, 94, 95, 96, 97, 98, 99}
)

_SEPARATORS = re.compile(r"[\s().\-/]")
_ASCII_DIGITS = re.compile(r"[0-9]+")


def ascii_digits(text: str, *, max_len: int | None = None) -> bool:
    """True when ``text`` is only ASCII ``0-9`` (at most ``max_len`` of them).

    ``str.isdigit`` also accepts Arabic-Indic, fullwidth and superscript digits, which
    ``int()`` may read or reject and which the tables' CHECKs refuse: every phone (and
    every digit string from outside) is judged here, by parsing, imports and the CLI.
    """
    if max_len is not None and len(text) > max_len:
        return False
    return _ASCII_DIGITS.fullmatch(text) is not None


def normalize(raw: str) -> str:
    """The number in E.164, or :class:`InvalidPhone` saying why it cannot be one."""
    text = (raw or "").strip()
    if "@" in text:  # a WhatsApp JID: 5511999998888@s.whatsapp.net (or :device@...)
        text = text.split("@", 1)[0].split(":", 1)[0]
    text = _SEPARATORS.sub("", text)
    if text.startswith("+"):
        if not text.startswith("+55"):
            raise InvalidPhone(raw, "not a Brazilian number (+55)")
        text = text[1:]
    elif text.startswith("00"):  # international prefix
        text = text[2:]
    if not text:
        raise InvalidPhone(raw, "empty")
    if not ascii_digits(text):
        raise InvalidPhone(raw, "contains characters that are not digits 0-9")
    national = _national(text, raw)
    ddd, subscriber = int(national[:2]), national[2:]
    if ddd not in DDDS:
        raise InvalidPhone(raw, f"unknown area code {national[:2]}")
    if len(subscriber) == 9:
        if subscriber[0] != "9":
            raise InvalidPhone(raw, "a 9-digit number must be a mobile starting with 9")
    elif len(subscriber) == 8:
        if subscriber[0] in "6789":  # a mobile written without the ninth digit
            subscriber = "9" + subscriber
        elif subscriber[0] not in "2345":
            raise InvalidPhone(raw, "an 8-digit number must be a landline (2-5) or mobile (6-9)")
    else:
        raise InvalidPhone(raw, "wrong number of digits")
    return f"+55{ddd}{subscriber}"


def _national(digits: str, raw: str) -> str:
    """Area code + subscriber, with country code and trunk prefix removed."""
    if digits.startswith("55") and len(digits) in (12, 13):
        return digits[2:]
    if digits.startswith("0") and len(digits) in (11, 12):  # trunk prefix: 011 99999 8888
        return digits[1:]
    if len(digits) in (10, 11):
        return digits
    raise InvalidPhone(raw, "wrong number of digits")


def is_valid(raw: str) -> bool:
    try:
        normalize(raw)
    except InvalidPhone:
        return False
    return True


def digits(e164: str) -> str:
    """``+5511999998888`` → ``5511999998888``, the form the gateways take."""
    return e164.lstrip("+")


def variants(e164: str) -> list[str]:
    """Both WhatsApp forms of a mobile: with and without the ninth digit (digits only)."""
    d = digits(e164)
    if len(d) == 13 and d[4] == "9":
        return [d, d[:4] + d[5:]]
    return [d]
