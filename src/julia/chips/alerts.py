"""Pool alerts, through the one alerts module (:mod:`julia.notify.alerts`): an ``alerts`` row,
deduplicated per kind and subject (the same alert at most once per
``JULIA_ALERT_COOLDOWN_MIN``, 30 minutes by default), and Slack when configured."""

from __future__ import annotations

from typing import Any

from julia.core.app import App
from julia.core.logs import get_logger
from julia.notify import alerts

log = get_logger(__name__)


async def raise_alert(
    app: App,
    kind: str,
    severity: str,
    message: str,
    *,
    key: str | None = None,
    details: dict[str, Any] | None = None,
) -> bool:
    """Raise one chip alert; True when it is new (False: the same one is recent)."""
    raised = await alerts.raise_alert(
        app, kind, message, severity=severity, details=details, key=key or ""
    )
    if raised.new:
        log.warning("chip.alert", kind=kind, severity=severity, key=key, alert=message)
    else:
        log.info("chip.alert_suppressed", kind=kind, key=key)
    return raised.new
