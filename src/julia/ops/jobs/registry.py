"""The job registry: a job is a name, a schedule, and the library function it runs.

    @job("fila_rescue", "Rescue stuck queue messages", lambda s: Every(s.fila_rescue_interval_s),
    async def fila_rescue(app: App) -> Done:
        ...

Schedules read the settings, so intervals are knobs. ``Every`` interval triggers are
anchored at midnight of 2026-01-01 in the business time zone, so every scheduler on
every machine computes the same ticks (10:00, 10:15, ...) whenever it started; that
shared tick is what makes "once per tick" checkable (``job_executions.tick``).
Importing :mod:`julia.ops.catalog` registers Júlia's jobs; the registry itself
imports no capability, so every floor below may be scheduled without a cycle.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from julia.core.app import App
from julia.core.errors import InvalidInput, UnknownJob

if TYPE_CHECKING:
    from julia.settings import Settings

_ANCHOR = (2026, 1, 1)


@dataclass(frozen=True)
class Every:
    """Every ``seconds``, on ticks aligned across schedulers."""

    seconds: float

    def trigger(self, tz: ZoneInfo) -> BaseTrigger:
        start = datetime(*_ANCHOR, tzinfo=tz)
        return IntervalTrigger(seconds=self.seconds, start_date=start, timezone=tz)

    @property
    def period_s(self) -> float:
        return self.seconds

    def __str__(self) -> str:
        s = self.seconds
        if s % 3600 == 0:
            return f"every {s / 3600:g} h"
        if s % 60 == 0:
            return f"every {s / 60:g} min"
        return f"every {s:g} s"


@dataclass(frozen=True)
class At:
    """Daily at ``HH:MM`` in the business time zone, or monthly on ``day``."""

    time: str
    day: int | None = None

    def _hm(self) -> tuple[int, int]:
        try:
            hour, minute = (int(p) for p in self.time.split(":"))
        except ValueError:
            raise InvalidInput(f"bad time {self.time!r}: use HH:MM") from None
        if not (0 <= hour < 24 and 0 <= minute < 60):
            raise InvalidInput(f"bad time {self.time!r}: use HH:MM")
        return hour, minute

    def trigger(self, tz: ZoneInfo) -> BaseTrigger:
        hour, minute = self._hm()
        return CronTrigger(
            day=self.day if self.day is not None else "*", hour=hour, minute=minute, timezone=tz
        )

    @property
    def period_s(self) -> float:
        return 86400.0 if self.day is None else 31 * 86400.0

    def __str__(self) -> str:
        return f"daily {self.time}" if self.day is None else f"monthly, day {self.day} {self.time}"


Schedule = Every | At


@dataclass(frozen=True)
class Done:
    """What a job reports: how many items it handled, and facts for the execution row."""

    items: int
    details: dict[str, Any] = field(default_factory=dict)


JobFn = Callable[[App], Awaitable[Done | int | None]]


@dataclass(frozen=True)
class Job:
    name: str
    description: str
    schedule: Callable[[Settings], Schedule]
    run: JobFn


#: Every job by name (filled by importing :mod:`julia.ops.catalog`).
JOBS: dict[str, Job] = {}


def job(
    name: str,
    description: str,
    schedule: Callable[[Settings], Schedule],
) -> Callable[[JobFn], JobFn]:
    """Register the decorated coroutine as the job ``name``."""

    def register(fn: JobFn) -> JobFn:
        JOBS[name] = Job(name, description, schedule, fn)
        return fn

    return register


def get(name: str) -> Job:
    try:
        return JOBS[name]
    except KeyError:
        raise UnknownJob(f"no job {name!r}; known: {', '.join(sorted(JOBS))}") from None


def current_tick(schedule: Schedule, tz: ZoneInfo, now: datetime) -> datetime | None:
    """The latest scheduled fire time at or before ``now`` (None if none in the last period)."""
    trig = schedule.trigger(tz)
    t = trig.get_next_fire_time(None, now - timedelta(seconds=schedule.period_s))
    if t is None or t > now:
        return None
    while True:
        nxt = trig.get_next_fire_time(t, t + timedelta(microseconds=1))
        if nxt is None or nxt > now:
            return t  # type: ignore[no-any-return]
        t = nxt


def next_run(schedule: Schedule, tz: ZoneInfo, now: datetime) -> datetime | None:
    fire: datetime | None = schedule.trigger(tz).get_next_fire_time(None, now)
    return fire
