"""The keyed hash kept of a doctor's phone erased under LGPD, in Python and in SQL alike.

``julia medicos esquecer`` keeps only this hash (``medicos_esquecidos``); the guardrails
stop any message to it and the doctors import refuses it, each computing it the same way.
"""

from __future__ import annotations

import hashlib

from julia.core import phones
from julia.core.app import App
from julia.core.settings import secret


def pepper(app: App) -> str:
    return secret(app.settings.guardrails_forget_pepper) or ""


def phone_hash(app: App, telefone: str) -> str:
    return hashlib.sha256((pepper(app) + phones.normalize(telefone)).encode()).hexdigest()


def hash_sql(column: str) -> str:
    """The same hash of ``column`` (a normalized phone), the pepper bound as ``%(pepper)s``."""
    return f"encode(sha256(convert_to(%(pepper)s || {column}, 'UTF8')), 'hex')"
