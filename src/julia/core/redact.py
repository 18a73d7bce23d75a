"""Masking of personal data and secrets: the one place logs and CLIs take it from.

:func:`mask_text` masks by pattern (phone numbers, bearer tokens, JWTs, ``key=value``
secrets, URL passwords, Slack webhook paths) inside any text, for strings whose fields
are not known: error messages, a gateway's error body, every value of a log line.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit

_DIGITS = re.compile(r"\D")


def mask_phone(phone: str | None) -> str:
    """``+5511999998888`` → ``5511...8888``: enough to tell numbers apart, not to dial one."""
    if not phone:
        return ""
    digits = _DIGITS.sub("", phone)
    if len(digits) <= 8:
        return "..." + digits[-2:]
    return f"{digits[:4]}...{digits[-4:]}"


def mask_secret(value: str | None) -> str:
    """A secret shows only that it is set."""
    if not value:
        return ""
    return "****" if len(value) < 12 else f"{value[:2]}****{value[-2:]}"


def mask_url(url: str | None) -> str:
    """The URL with its password (and any token in the query) replaced by ``****``."""
    if not url:
        return ""
    parts = urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, host = netloc.rsplit("@", 1)
        user, _, password = userinfo.partition(":")
        netloc = f"{user}:****@{host}" if password else f"{user}@{host}"
    query = re.sub(r"(?i)(password|token|apikey|key)=[^&]*", r"\1=****", parts.query)
    if (netloc, query) == (parts.netloc, parts.query):
        return url  # nothing secret: keep the exact spelling (unix:///path stays as is)
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


#: A phone: 10-15 digits in a row (E.164, a JID's user part), or a written national form
#: ("(11) 99999-8888", "+55 11 99999 8888"). Not inside a word, a longer number or a hex
#: id (a trace id's digits are not a phone).
_PHONE = re.compile(
    r"(?<![\w])\+?[0-9]{10,15}(?![\w])"
    r"|(?<![\w])(?:\+?55[\s.-]?)?\(?[0-9]{2}\)?[\s.-]?9?[0-9]{4}[\s.-][0-9]{4}(?![\w])"
)
_SECRETS = (
    (re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]{6,}"), r"\1****"),
    (re.compile(r"eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*"), "eyJ****"),
    (re.compile(r"(?i)(https?://hooks\.slack\.com/services/)[^\s\"'<>]+"), r"\1****"),
    (re.compile(r"([a-z][a-z0-9+.-]*://[^/\s:@]*:)[^@\s/]+@"), r"\1****@"),
    (
        re.compile(
            r"(?i)\b((?:access_|api_?|webhook_|auth_)?(?:token|apikey|key|password|passwd|secret)"
            r"[\"']?\s*[=:]\s*[\"']?)([^\s&\"',;}]{4,})"
        ),
        r"\1****",
    ),
)


def mask_text(text: str) -> str:
    """``text`` with every phone number and secret-looking value in it masked."""
    if not text:
        return text
    for pattern, repl in _SECRETS:
        text = pattern.sub(repl, text)
    return _PHONE.sub(lambda m: mask_phone(m.group(0)), text)
