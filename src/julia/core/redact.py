"""Masking of personal data and secrets: the one place logs and CLIs take it from."""

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
