"""Júlia: the library. Every operation is an importable async function; nothing here prints."""

from __future__ import annotations

__version__ = "0.1.0"
