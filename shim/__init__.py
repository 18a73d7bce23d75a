"""Júlia's webhook shim: a thin Starlette app over :mod:`julia.inbox`."""

from __future__ import annotations

from shim.app import create_app

__all__ = ["create_app"]
