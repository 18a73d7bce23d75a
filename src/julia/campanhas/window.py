"""A campaign's send window and its pace: when each message is due.

The window is days and hours in business time (``seg-sex 09:00-18:00``; default the
business hours), between optional start and end dates. Each window hour holds at most
``per_hour`` messages: hour *h* of a day's window is cut into ``per_hour`` equal
slots and message *k* is due at a random point in the first ``jitter`` share of its
slot, so two messages are never closer than ``(1 - jitter)`` of a slot and no hour
ever holds more than the pace. A day holds at most its quota (what the chip pool may
still send that day); what does not fit before the end date is not scheduled.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from julia.core.errors import InvalidInput

DIAS = {"seg": 0, "ter": 1, "qua": 2, "qui": 3, "sex": 4, "sab": 5, "sáb": 5, "dom": 6}
_HOURS = re.compile(r"^(\d{1,2}:\d{2})\s*-\s*(\d{1,2}:\d{2})$")


@dataclass(frozen=True)
class Janela:
    dias: frozenset[int]  # 0 = Monday
    inicio: time
    fim: time
    tz: ZoneInfo
    start: datetime | None = None
    end: datetime | None = None

    def is_open(self, at: datetime) -> bool:
        local = at.astimezone(self.tz)
        if (self.start and at < self.start) or (self.end and at >= self.end):
            return False
        return local.weekday() in self.dias and self.inicio <= local.time() < self.fim

    def stretches(self, since: datetime) -> Iterator[tuple[datetime, datetime, datetime]]:
        """Each day's (opening, from, closing) from ``since`` on, in UTC; ``from`` is the
        later of the opening, ``since`` and the start date."""
        since = max(since, self.start) if self.start else since
        day = since.astimezone(self.tz).date()
        for _ in range(3660):  # ten years: an end date or the caller stops sooner
            if day.weekday() in self.dias:
                opening = datetime.combine(day, self.inicio, self.tz).astimezone(UTC)
                closing = datetime.combine(day, self.fim, self.tz).astimezone(UTC)
                if self.end is not None:
                    if opening >= self.end:
                        return
                    closing = min(closing, self.end)
                if closing > since:
                    yield opening, max(opening, since), closing
            day += timedelta(days=1)


def parse_dias(text: str) -> frozenset[int]:
    out: set[int] = set()
    for part in text.lower().replace(" ", "").split(","):
        a, _, b = part.partition("-")
        if a not in DIAS or (b and b not in DIAS):
            raise InvalidInput(f"bad days {text!r}: use e.g. seg-sex or seg,qua,sex")
        lo, hi = DIAS[a], DIAS[b] if b else DIAS[a]
        out |= set(range(lo, hi + 1)) if lo <= hi else set(range(lo, 7)) | set(range(0, hi + 1))
    return frozenset(out)


def parse(
    text: str | None,
    *,
    tz: str,
    default_days: list[int],
    default_start: str,
    default_end: str,
    inicio: datetime | None = None,
    fim: datetime | None = None,
) -> Janela:
    """``seg-sex 09:00-18:00``, ``09:00-12:00`` (business days) or ``seg,qua`` (business
    hours); None: business days and hours."""
    days, hours = frozenset(default_days), (default_start, default_end)
    for token in (text or "").split():
        if m := _HOURS.match(token):
            hours = (m.group(1), m.group(2))
        else:
            days = parse_dias(token)
    try:
        start, end = time.fromisoformat(hours[0].zfill(5)), time.fromisoformat(hours[1].zfill(5))
    except ValueError:
        raise InvalidInput(f"bad hours in the window {text!r}: use HH:MM-HH:MM") from None
    if not start < end:
        raise InvalidInput(f"the window {text!r} ends before it starts")
    if inicio is not None and fim is not None and fim <= inicio:
        raise InvalidInput("the campaign ends (--fim) before it starts (--inicio)")
    return Janela(days, start, end, ZoneInfo(tz), inicio, fim)


def parse_date(text: str | None, tz: str, *, end: bool = False) -> datetime | None:
    """A date (a whole day; an end date includes its day) or a date and time, in business time."""
    if not text:
        return None
    try:
        if len(text.strip()) == 10:
            d = date.fromisoformat(text.strip())
            value = datetime.combine(d + timedelta(days=1 if end else 0), time(), ZoneInfo(tz))
        else:
            value = datetime.fromisoformat(text.strip())
    except ValueError:
        raise InvalidInput(f"bad date {text!r}: use YYYY-MM-DD or YYYY-MM-DDTHH:MM") from None
    return value if value.tzinfo else value.replace(tzinfo=ZoneInfo(tz))


def plan(
    n: int,
    janela: Janela,
    *,
    since: datetime,
    per_hour: int,
    first_day_quota: int,
    day_quota: int,
    jitter: float,
    rng: random.Random | None = None,
) -> list[datetime]:
    """Due times for up to ``n`` messages from ``since`` on; may return fewer."""
    rng = rng or random.Random()
    out: list[datetime] = []
    if n <= 0 or per_hour <= 0:
        return out
    gap = timedelta(seconds=3600 / per_hour)
    first = True
    for opening, start, closing in janela.stretches(since):
        quota = first_day_quota if first else day_quota
        first = False
        if quota <= 0:
            continue
        k = max(0, int((start - opening) / gap))
        while len(out) < n and quota > 0:
            base = opening + k * gap
            k += 1
            if base >= closing:
                break
            if base < since:
                continue
            at = base + gap * (rng.random() * jitter)
            if at >= closing:
                break
            out.append(at)
            quota -= 1
        if len(out) >= n:
            break
    return out
