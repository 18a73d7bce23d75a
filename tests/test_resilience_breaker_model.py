"""Property-based: random sequences of successes, counted failures, ignored errors and
clock moves drive a breaker (through Redis's Lua, and through the local fallback) and a
small reference model written from the specification; they must agree at every step."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from julia.core.app import App
from julia.core.clock import FrozenClock
from julia.core.errors import CircuitOpen
from julia.resilience._shared import redis_health
from julia.resilience.breaker import TRANSITIONS, BreakerConfig, breakers
from julia.settings import Settings

CFG = BreakerConfig(
    failure_threshold=3,
    failure_rate=0.5,
    window_calls=6,
    min_calls=4,
    open_base_s=60,
    open_factor=2,
    open_max_s=300,
    half_open_calls=1,
    half_open_retry_s=5,
)


@dataclass
class Model:
    """The breaker as the issue describes it, for calls made one at a time."""

    now: float = 0.0
    state: str = "closed"
    consec: int = 0
    window: list[bool] = field(default_factory=list)
    reopens: int = 0
    open_until: float = 0.0
    moves: list[tuple[str, str]] = field(default_factory=list)

    def _go(self, to: str) -> None:
        self.moves.append((self.state, to))
        self.state = to

    def _open(self) -> None:
        self.open_until = self.now + min(CFG.open_max_s, CFG.open_base_s * 2**self.reopens)
        self.window = []
        self._go("open")

    def call(self, outcome: str) -> float | None:
        """Returns None when let through, else the retry time."""
        if self.state == "open":
            if self.now < self.open_until:
                return self.open_until
            self._go("half_open")
        if self.state == "half_open":  # one trial; calls are sequential, so it is free
            if outcome == "ok":
                self.consec, self.reopens, self.window = 0, 0, []
                self._go("closed")
            elif outcome == "fail":
                self.consec += 1
                self.reopens += 1
                self._open()
            return None
        if outcome == "ok":
            self.consec = 0
            self.window = [*self.window, False][-CFG.window_calls :]
        elif outcome == "fail":
            self.consec += 1
            self.window = [*self.window, True][-CFG.window_calls :]
            rate = sum(self.window) / len(self.window)
            if self.consec >= CFG.failure_threshold or (
                len(self.window) >= CFG.min_calls and rate >= CFG.failure_rate
            ):
                self.reopens = 0
                self._open()
        return None


ERRORS = {"ok": None, "fail": httpx.ConnectError("down"), "ignore": httpx.ReadTimeout("slow")}
steps = st.lists(
    st.one_of(
        st.sampled_from(["ok", "fail", "ignore"]),
        st.sampled_from([1, 30, 59, 60, 61, 119, 120, 240, 300, 400]),
    ),
    min_size=1,
    max_size=40,
)


@pytest.fixture
def loop_app(settings: Settings) -> Iterator[tuple[asyncio.AbstractEventLoop, App, FrozenClock]]:
    """One App on its own loop for every example (hypothesis runs sync examples)."""
    loop = asyncio.new_event_loop()
    clock = FrozenClock(datetime(2026, 1, 5, 12, tzinfo=UTC))
    cm = App.open(settings, clock=clock)
    app = loop.run_until_complete(cm.__aenter__())
    yield loop, app, clock
    loop.run_until_complete(cm.__aexit__(None, None, None))
    loop.close()


async def run(app: App, clock: FrozenClock, ops: list[str | int], backend: str) -> None:
    if backend == "local":
        redis_health(app).down_until = datetime.max.replace(tzinfo=UTC)
    b = breakers(app).get(f"m{uuid.uuid4().hex[:8]}", config=CFG)
    model = Model()
    t0 = clock.now()
    moves: list[tuple[str, str]] = []

    async def noted(res):  # type: ignore[no-untyped-def]
        moves.extend((f, t) for f, t, *_ in res.transitions)
        return []

    b._note = noted  # type: ignore[method-assign]  # observe transitions, skip Postgres
    for op in ops:
        if isinstance(op, int):
            clock.advance(op)
            model.now += op
            continue
        expected = model.call(op)
        try:
            async with b.guard():
                if ERRORS[op] is not None:
                    raise ERRORS[op]  # type: ignore[misc]
            got = None
        except CircuitOpen as refused:
            assert refused.retry_at is not None
            got = (refused.retry_at - t0).total_seconds()
        except (httpx.ConnectError, httpx.ReadTimeout):
            got = None
        assert got == expected, (op, model)
        st_ = await b.status()
        assert st_.backend == backend
        shown = st_.state
        if model.state == "open" and shown == "open":
            assert st_.open_until == t0 + timedelta(seconds=model.open_until)
        assert shown == model.state, (ops, model)
        assert st_.consecutive_failures == model.consec
    assert moves == model.moves
    assert all(t in TRANSITIONS[f] for f, t in moves)


@pytest.mark.parametrize("backend", ["redis", "local"])
@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(ops=steps)
def test_breaker_agrees_with_the_reference_model(
    loop_app: tuple[asyncio.AbstractEventLoop, App, FrozenClock], backend: str, ops: list[str | int]
) -> None:
    loop, app, clock = loop_app
    loop.run_until_complete(run(app, clock, ops, backend))
