"""Business hours (Monday–Friday 08:00–20:00 in America/Sao_Paulo by default)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from julia.core.errors import ConfigError

if TYPE_CHECKING:
    from julia.settings import Settings


@dataclass(frozen=True)
class BusinessHours:
    start: time
    end: time
    days: frozenset[int]  # 0 = Monday
    tz: ZoneInfo

    @classmethod
    def from_settings(cls, settings: Settings) -> BusinessHours:
        try:
            start = time.fromisoformat(settings.business_hours_start)
            end = time.fromisoformat(settings.business_hours_end)
            tz = ZoneInfo(settings.timezone)
        except (ValueError, KeyError) as exc:
            raise ConfigError(f"invalid business hours or timezone: {exc}") from exc
        if not start < end or not settings.business_days:
            raise ConfigError("business hours need start < end and at least one business day")
        return cls(start, end, frozenset(settings.business_days), tz)

    def is_open(self, at: datetime) -> bool:
        local = at.astimezone(self.tz)
        return local.weekday() in self.days and self.start <= local.time() < self.end

    def next_open(self, at: datetime) -> datetime:
        """``at`` itself when open, otherwise the next opening (in UTC)."""
        if self.is_open(at):
            return at
        local = at.astimezone(self.tz)
        day = local.date()
        for _ in range(8):
            opening = datetime.combine(day, self.start, self.tz)
            if day.weekday() in self.days and opening > local:
                return opening.astimezone(UTC)
            day += timedelta(days=1)
        raise ConfigError("no business day in the week")  # unreachable with days set
