"""Structured logs through structlog: JSON off a terminal, readable on one.

Every line carries ``event`` (a stable name tests can assert), level, time and
the current trace id. Phones are logged only through :func:`julia.core.redact.mask_phone`;
as a safety net, any value under a key named like a phone or a secret is masked here,
and every other string value (``error`` texts, a gateway's error body, nested values)
goes through :func:`julia.core.redact.mask_text`, which masks by pattern.
"""

from __future__ import annotations

import logging
import sys
import uuid
from collections.abc import Iterator, MutableMapping
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import date, datetime, time
from decimal import Decimal
from pathlib import Path
from typing import Any
from uuid import UUID

import structlog

from julia.core.redact import mask_phone, mask_secret, mask_text

trace_id_var: ContextVar[str | None] = ContextVar("julia_trace_id", default=None)

_PHONE_KEYS = frozenset({"telefone", "phone", "number", "numero", "remote_jid"})
_SECRET_KEYS = frozenset({"token", "apikey", "api_key", "password", "secret", "authorization"})


def new_trace_id() -> str:
    """Start a trace (a webhook, a CLI command, a job run) and return its id."""
    tid = uuid.uuid4().hex[:16]
    trace_id_var.set(tid)
    return tid


@contextmanager
def traced(trace_id: str | None = None) -> Iterator[str]:
    """Run a block under ``trace_id`` (a new one when None), restoring the previous
    id after: a webhook request, or a stored message whose trace is carried on."""
    tid = trace_id or uuid.uuid4().hex[:16]
    token = trace_id_var.set(tid)
    try:
        yield tid
    finally:
        trace_id_var.reset(token)


def _add_trace_id(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    tid = trace_id_var.get()
    if tid and "trace_id" not in event:
        event["trace_id"] = tid
    return event


_KEEP = frozenset({"timestamp", "level", "trace_id", "logger"})


def _plain_values(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Times, dates, decimals and paths as text (ISO 8601), never a Python repr."""
    for key, value in list(event.items()):
        if isinstance(value, datetime | date | time):
            event[key] = value.isoformat()
        elif isinstance(value, Decimal | Path | UUID):
            event[key] = str(value)
    return event


def _redact(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for key, value in list(event.items()):
        lowered = key.lower()
        if lowered in _KEEP:
            continue
        if isinstance(value, str) and lowered in _PHONE_KEYS and "..." not in value:
            event[key] = mask_phone(value)
        elif isinstance(value, str) and lowered in _SECRET_KEYS:
            event[key] = mask_secret(value)
        else:
            event[key] = _masked(value)
    return event


def _masked(value: Any) -> Any:
    """Every string inside ``value`` masked by pattern (dicts, lists and tuples walked)."""
    if isinstance(value, str):
        return mask_text(value)
    if isinstance(value, dict):
        return {k: _masked(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_masked(v) for v in value]
    if isinstance(value, BaseException):
        return mask_text(f"{type(value).__name__}: {value}")
    return value


class _StderrLogger:
    """Writes to whatever ``sys.stderr`` is at call time (test runners swap it)."""

    def msg(self, message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    log = debug = info = warn = warning = error = critical = exception = fatal = msg


def configure(level: str = "INFO", fmt: str = "auto") -> None:
    """Configure structlog and stdlib logging once per process (logs go to stderr)."""
    as_json = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())
    renderer: Any = (
        structlog.processors.JSONRenderer() if as_json else structlog.dev.ConsoleRenderer()
    )
    numeric = logging.getLevelName(level.upper())
    if not isinstance(numeric, int):
        numeric = logging.INFO
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            _add_trace_id,
            structlog.processors.format_exc_info,  # before masking: tracebacks quote values
            _plain_values,
            _redact,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=lambda *_: _StderrLogger(),
        cache_logger_on_first_use=False,
    )
    logging.basicConfig(level=max(numeric, logging.WARNING), stream=sys.stderr)


def get_logger(name: str) -> Any:
    return structlog.get_logger(name)
