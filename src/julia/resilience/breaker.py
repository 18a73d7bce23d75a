"""Circuit breakers shared across processes: state in Redis, changed by one Lua script.

    breaker = breakers(app).get("evolution")          # or breakers(app).chip(7)
    async with breaker.guard():                        # CircuitOpen if refused
        await gateway.send_text(...)
    result = await breaker.call(fn, *args)             # the same, for one coroutine

States: ``closed`` → ``open`` (N consecutive counted failures, or a failure rate
over the last calls once enough calls were seen) → ``half_open`` when the open
time is over (trial calls let through) → ``closed`` when every trial succeeds,
``open`` again (for longer) when one fails. ``forced_open`` and ``disabled`` are
operator overrides. Every transition is a ``circuit_transitions`` row, a log
line (``breaker.transition``) and a metric.

If Redis is unreachable a breaker keeps going on local, per-process state (seeded
from the last state it saw in Redis), says ``backend="local"`` in its status, and
never raises because of Redis.

A process that runs :func:`watch` (the worker does) hears every change of every breaker
(``breaker.lua`` publishes each one), so a breaker it saw closed with a clean window lets
calls through without a round trip until it hears of a change, or for at most
``JULIA_BREAKER_TRUST_S``: on the send path the acquire costs nothing while all is well.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import httpx

from julia.core import audit
from julia.core.app import App
from julia.core.errors import CircuitOpen, InvalidInput, StorageError
from julia.core.logs import get_logger
from julia.resilience import metrics
from julia.resilience._shared import REDIS_ERRORS, from_ms, redis_health, script, to_ms

if TYPE_CHECKING:
    from julia.settings import Settings

log = get_logger(__name__)
T = TypeVar("T")

State = Literal["closed", "open", "half_open", "forced_open", "disabled"]
Outcome = Literal["ok", "fail", "ignore"]
#: Turns an exception into whether it counts against the breaker, and its type.
Classifier = Callable[[BaseException], tuple[Outcome, str]]

STATES: tuple[State, ...] = ("closed", "open", "half_open", "forced_open", "disabled")
#: The state machine as data: every transition a breaker may make.
TRANSITIONS: dict[str, frozenset[str]] = {
    "closed": frozenset({"open", "forced_open", "disabled"}),
    "open": frozenset({"half_open", "closed", "forced_open", "disabled"}),
    "half_open": frozenset({"closed", "open", "forced_open", "disabled"}),
    "forced_open": frozenset({"closed", "disabled"}),
    "disabled": frozenset({"closed", "forced_open"}),
}
#: The service breakers every deployment has; ``chip:<id>`` ones are created on demand.
SERVICES = ("evolution", "anthropic", "chatwoot", "slack")
NAME_RE = re.compile(r"^[a-z][a-z0-9_-]*(:[A-Za-z0-9_.-]+)?$")


@dataclass(frozen=True)
class BreakerConfig:
    """How one breaker judges failures and how long it stays open."""

    failure_threshold: int = 5
    failure_rate: float = 0.5  # 0 turns the failure-rate rule off
    window_calls: int = 20
    min_calls: int = 10
    open_base_s: float = 60.0
    open_factor: float = 2.0
    open_max_s: float = 600.0
    half_open_calls: int = 1
    half_open_retry_s: float = 5.0
    #: A trial call that never reports back frees its permit after this long.
    trial_timeout_s: float = 120.0
    count_timeouts: bool = False
    #: 4xx statuses that count as failures (5xx always count).
    count_status: frozenset[int] = frozenset()
    #: Idle lifetime of the Redis state (refreshed by every call).
    ttl_s: float = 7 * 86400.0

    @classmethod
    def for_name(cls, settings: Settings, name: str) -> BreakerConfig:
        """The configuration from settings; chip breakers also count the 4xx listed in
        ``breaker_chip_count_status`` (403/429: WhatsApp restricting the number)."""
        return cls(
            failure_threshold=settings.breaker_failure_threshold,
            failure_rate=settings.breaker_failure_rate,
            window_calls=settings.breaker_window_calls,
            min_calls=settings.breaker_min_calls,
            open_base_s=settings.breaker_open_base_s,
            open_factor=settings.breaker_open_factor,
            open_max_s=settings.breaker_open_max_s,
            half_open_calls=settings.breaker_half_open_calls,
            half_open_retry_s=settings.breaker_half_open_retry_s,
            count_timeouts=settings.breaker_count_timeouts,
            count_status=frozenset(settings.breaker_chip_count_status)
            if name.startswith("chip:")
            else frozenset(),
        )

    def argv(self) -> list[Any]:
        return [
            self.failure_threshold,
            self.failure_rate,
            self.window_calls,
            self.min_calls,
            int(self.open_base_s * 1000),
            self.open_factor,
            int(self.open_max_s * 1000),
            self.half_open_calls,
            int(self.trial_timeout_s * 1000),
            int(self.ttl_s * 1000),
            int(self.half_open_retry_s * 1000),
        ]


def status_code_of(exc: BaseException) -> int | None:
    """The HTTP status an exception carries: ``status_code``/``status`` or an httpx response."""
    for attr in ("status_code", "status"):
        value = getattr(exc, attr, None)
        if isinstance(value, int):
            return value
    if isinstance(exc, httpx.HTTPStatusError):
        return exc.response.status_code
    return None


def classify(exc: BaseException, config: BreakerConfig) -> tuple[Outcome, str]:
    """The default classification: timeouts do not count (unless ``count_timeouts``),
    network errors and 5xx count, 4xx count only when listed in ``count_status``, and
    anything else unexpected counts. Reads ``kind``/``status_code`` attributes, so any
    gateway error class that carries them is classified without being imported here."""
    if isinstance(exc, CircuitOpen):
        return "ignore", "circuit_open"
    kind = getattr(exc, "kind", None)
    if kind == "timeout" or isinstance(exc, TimeoutError | httpx.TimeoutException):
        return ("fail" if config.count_timeouts else "ignore"), "timeout"
    status = status_code_of(exc)
    if status is not None:
        if status >= 500:
            return "fail", f"http_{status}"
        return ("fail" if status in config.count_status else "ignore"), f"http_{status}"
    if kind in ("network", "connection") or isinstance(exc, httpx.TransportError | OSError):
        return "fail", "network"
    if isinstance(exc, InvalidInput):
        return "ignore", type(exc).__name__
    return "fail", str(kind) if isinstance(kind, str) else type(exc).__name__


@dataclass(frozen=True)
class Transition:
    name: str
    from_state: str
    to_state: str
    reason: str
    consecutive_failures: int
    error_type: str | None
    at: datetime
    backend: str
    operador: str | None = None


@dataclass(frozen=True)
class _Result:
    allowed: bool
    state: State
    retry_at: datetime | None
    epoch: int
    trial: bool
    consecutive_failures: int
    reopens: int
    open_until: datetime | None
    window: str
    last_error: str | None
    transitions: list[tuple[str, str, str, int, str]]

    @classmethod
    def parse(cls, raw: list[Any]) -> _Result:
        def s(v: Any) -> str:
            return v.decode() if isinstance(v, bytes) else str(v)

        moves = [
            (s(raw[i]), s(raw[i + 1]), s(raw[i + 2]), int(raw[i + 3]), s(raw[i + 4]))
            for i in range(10, len(raw), 5)
        ]
        retry = int(raw[2])
        open_until = int(raw[7])
        return cls(
            allowed=int(raw[0]) == 1,
            state=s(raw[1]),  # type: ignore[arg-type]
            retry_at=from_ms(retry) if retry >= 0 else None,
            epoch=int(raw[3]),
            trial=int(raw[4]) == 1,
            consecutive_failures=int(raw[5]),
            reopens=int(raw[6]),
            open_until=from_ms(open_until) if open_until > 0 else None,
            window=s(raw[8]),
            last_error=s(raw[9]) or None,
            transitions=moves,
        )


def step(h: dict[str, Any], argv: list[Any]) -> list[Any]:
    """The Lua script in Python, on a dict: the local state when Redis is unreachable.

    Kept line by line equal to ``breaker.lua``; the tests drive both against one model."""
    (op, now, threshold, rate, wsize, min_calls, base, factor, maxo, trials_max) = argv[:10]
    trial_timeout, _ttl, half_open_retry, arg1, arg2, arg3 = argv[10:16]
    st = h.get("state", "closed")
    epoch = int(h.get("epoch", 0))
    consec = int(h.get("consec", 0))
    reopens = int(h.get("reopens", 0))
    open_until = int(h.get("open_until", 0))
    trials = int(h.get("trials", 0))
    trial_ok = int(h.get("trial_ok", 0))
    trial_deadline = int(h.get("trial_deadline", 0))
    window = str(h.get("window", ""))
    last_error = str(h.get("last_error", ""))
    out: list[Any] = []

    def go(to: str, reason: str, err: str) -> None:
        nonlocal st, epoch, trials, trial_ok
        out.extend([st, to, reason, consec, err])
        st, epoch, trials, trial_ok = to, epoch + 1, 0, 0

    def open_(reason: str, err: str) -> None:
        nonlocal open_until, window
        d = min(maxo, int(base * factor**reopens))
        open_until = now + d
        window = ""
        go("open", reason, err)

    def push(bit: str) -> None:
        nonlocal window
        window = (window + bit)[-wsize:]

    allowed, retry_at, trial = 0, -1, 0
    if op == "acquire":
        if st == "open" and now >= open_until:
            go("half_open", "open_timeout", "")
            trial_deadline = now + trial_timeout
        if st in ("disabled", "closed"):
            allowed = 1
        elif st == "open":
            retry_at = open_until
        elif st == "half_open":
            if trials > 0 and now >= trial_deadline:
                trials = 0
            if trials + trial_ok < trials_max:
                allowed, trial, trials = 1, 1, trials + 1
                trial_deadline = now + trial_timeout
            else:
                retry_at = now + half_open_retry
    elif op == "record":
        if int(arg2) == epoch:
            if arg1 == "ok":
                if st == "closed":
                    consec = 0
                    push("0")
                elif st == "half_open":
                    trials = max(0, trials - 1)
                    trial_ok += 1
                    if trial_ok >= trials_max:
                        consec, reopens, window = 0, 0, ""
                        go("closed", "trial_succeeded", "")
            elif arg1 == "fail":
                last_error = arg3
                if st == "closed":
                    consec += 1
                    push("1")
                    fails = window.count("1")
                    if consec >= threshold:
                        reopens = 0
                        open_("consecutive_failures", arg3)
                    elif rate > 0 and len(window) >= min_calls and fails >= rate * len(window):
                        reopens = 0
                        open_("failure_rate", arg3)
                elif st == "half_open":
                    consec += 1
                    reopens += 1
                    open_("trial_failed", arg3)
            elif arg1 == "ignore" and st == "half_open":
                trials = max(0, trials - 1)
    elif op == "force":
        if arg1 == "closed":
            consec, reopens, window = 0, 0, ""
            if st != "closed":
                go("closed", arg3, "")
        elif st != arg1:
            go(arg1, arg3, "")
    h.update(
        state=st, epoch=epoch, consec=consec, reopens=reopens, open_until=open_until,
        trials=trials, trial_ok=trial_ok, trial_deadline=trial_deadline, window=window,
        last_error=last_error, updated=now,
    )  # fmt: skip
    res = [allowed, st, retry_at, epoch, trial, consec, reopens, open_until, window, last_error]
    return res + out


@dataclass
class Permit:
    """A call let through by a breaker; report its outcome exactly once."""

    breaker: Breaker
    epoch: int
    trial: bool
    failure: str | None = None
    #: Closed, no failure in a full window: recording a success would change nothing.
    steady: bool = False

    def fail(self, error_type: str) -> None:
        """Count this call as failed without raising (e.g. a 503 answered as a value)."""
        self.failure = error_type


@dataclass(frozen=True)
class BreakerStatus:
    """What ``julia circuits status`` shows of one breaker."""

    name: str
    state: State
    backend: str  # "redis" (shared) or "local" (this process only: Redis is down)
    consecutive_failures: int
    reopens: int
    open_until: datetime | None
    window_calls: int
    window_failures: int
    last_error: str | None
    redis_error: str | None = None


class Breaker:
    """One named breaker. Get it from :func:`breakers`; do not build one yourself."""

    def __init__(
        self,
        app: App,
        name: str,
        config: BreakerConfig,
        classifier: Classifier | None = None,
    ) -> None:
        self.app = app
        self.name = name
        self.config = config
        self.key = app.keys.key("breaker", name)
        self._keys = [self.key, _channel(app)]
        self._classifier = classifier
        self._local: dict[str, Any] = {}
        self.backend = "redis"
        #: A closed, clean state heard of no change since: (watch stamp, it, until).
        self._trusted: tuple[tuple[int, int], _Result, float] | None = None

    def classify(self, exc: BaseException) -> tuple[Outcome, str]:
        if self._classifier is not None:
            return self._classifier(exc)
        return classify(exc, self.config)

    async def _run(self, op: str, arg1: str = "", arg2: int = 0, arg3: str = "") -> _Result:
        now = self.app.clock.now()
        argv = [op, to_ms(now), *self.config.argv(), arg1, arg2, arg3]
        health = redis_health(self.app)
        if health.usable(now):
            try:
                raw = await script(self.app, "breaker")(keys=self._keys, args=argv)
            except REDIS_ERRORS as exc:
                health.failed(now, exc)
            else:
                health.recovered()
                res = _Result.parse(raw)
                self._seed(res)
                self._set_backend("redis")
                return res
        self._set_backend("local")
        return _Result.parse(step(self._local, argv))

    def _seed(self, res: _Result) -> None:
        """Remember the shared state, so local fallback starts from it."""
        self._local = {
            "state": res.state,
            "epoch": res.epoch,
            "consec": res.consecutive_failures,
            "reopens": res.reopens,
            "open_until": to_ms(res.open_until) if res.open_until else 0,
            "window": res.window,
            "last_error": res.last_error or "",
        }

    def _set_backend(self, backend: str) -> None:
        if backend != self.backend:
            log.warning("breaker.backend", name=self.name, backend=backend)
        self.backend = backend
        metrics.CIRCUIT_LOCAL.set(1 if backend == "local" else 0)

    async def _note(self, res: _Result, operador: str | None = None) -> list[Transition]:
        """Record the transitions this call made: rows, logs, metrics. Never raises."""
        metrics.CIRCUIT_STATE.labels(self.name).set(metrics.STATE_VALUES[res.state])
        if not res.transitions:
            return []
        at = self.app.clock.now()
        moves = [
            Transition(self.name, f, t, r, c, e or None, at, self.backend, operador)
            for f, t, r, c, e in res.transitions
        ]
        for m in moves:
            metrics.CIRCUIT_TRANSITIONS.labels(self.name, m.from_state, m.to_state).inc()
            # An operator's own override is news to nobody at the console: info.
            (log.warning if operador is None else log.info)(
                "breaker.transition", name=self.name, from_state=m.from_state,
                to_state=m.to_state, reason=m.reason, consecutive_failures=m.consecutive_failures,
                error_type=m.error_type, backend=m.backend, retry_at=res.open_until,
            )  # fmt: skip
        if operador is None:
            try:
                async with self.app.pool.connection(timeout=2.0) as conn:
                    await _insert(conn, moves)
            except Exception as exc:  # Postgres down: the breaker still works
                log.error("breaker.transition_not_recorded", name=self.name, error=str(exc))
        return moves

    async def acquire(self) -> Permit:
        """Let one call through, or raise :class:`CircuitOpen` (with ``retry_at``)."""
        (res,), (asked,) = await _acquire_all(self.app, [self])
        if asked:  # a trusted state was noted when it was read
            await self._note(res)
        return self._permit(res)

    def _steady(self, res: _Result) -> bool:
        """Closed with no failure in a full window: a success would change nothing."""
        return (
            res.state == "closed"
            and res.consecutive_failures == 0
            and res.window == "0" * self.config.window_calls
        )

    def _trusted_result(self) -> _Result | None:
        """The closed state last seen, while :func:`watch` has heard no change since."""
        trusted = self._trusted
        if trusted is None:
            return None
        stamp, res, until = trusted
        if time.monotonic() >= until or _watch(self.app).stamp(self.key) != stamp:
            self._trusted = None
            return None
        return res

    def _trust(self, stamp: tuple[int, int] | None, res: _Result) -> None:
        """Remember ``res`` (read after ``stamp`` was taken) when it is closed and clean."""
        seconds = self.app.settings.breaker_trust_s
        if stamp is not None and seconds > 0 and res.allowed and self._steady(res):
            self._trusted = (stamp, replace(res, transitions=[]), time.monotonic() + seconds)
        else:
            self._trusted = None

    def _permit(self, res: _Result) -> Permit:
        if not res.allowed:
            metrics.CIRCUIT_REFUSED.labels(self.name).inc()
            raise CircuitOpen(self.name, res.state, res.retry_at)
        return Permit(self, res.epoch, res.trial, steady=self._steady(res))

    async def record(self, permit: Permit, outcome: Outcome, error_type: str = "") -> None:
        """Report a permitted call's outcome (``guard`` and ``call`` do it for you)."""
        self._trusted = None  # what it changes is heard back; until then, ask
        await self._note(await self._run("record", outcome, permit.epoch, error_type))

    @asynccontextmanager
    async def guard(self) -> AsyncIterator[Permit]:
        """Run the block through the breaker: refused with :class:`CircuitOpen`, its
        exception classified and re-raised, a clean exit counted as a success."""
        permit = await self.acquire()
        try:
            yield permit
        except Exception as exc:
            outcome, error_type = self.classify(exc)
            await self.record(permit, outcome, error_type)
            raise
        except BaseException:  # cancelled: neither success nor failure, free the permit
            await asyncio.shield(self.record(permit, "ignore", "cancelled"))
            raise
        if permit.failure is not None:
            await self.record(permit, "fail", permit.failure)
        elif not permit.steady:  # a steady breaker's success is a no-op: save the round trip
            await self.record(permit, "ok")

    async def call(self, fn: Callable[..., Awaitable[T]], *args: Any, **kwargs: Any) -> T:
        """``await fn(*args, **kwargs)`` through the breaker."""
        async with self.guard():
            return await fn(*args, **kwargs)

    async def status(self) -> BreakerStatus:
        return self._status_of(await self._run("status"))

    def _status_of(self, res: _Result) -> BreakerStatus:
        return BreakerStatus(
            name=self.name,
            state=res.state,
            backend=self.backend,
            consecutive_failures=res.consecutive_failures,
            reopens=res.reopens,
            open_until=res.open_until,
            window_calls=len(res.window),
            window_failures=res.window.count("1"),
            last_error=res.last_error,
            redis_error=redis_health(self.app).last_error,
        )

    async def force(self, target: State, motivo: str, actor: audit.Actor) -> list[Transition]:
        """Operator override: ``forced_open``, ``disabled`` or back to ``closed`` (reset).
        Needs Redis (a per-process override would mislead); audited with the transition."""
        if target not in ("closed", "forced_open", "disabled"):
            raise InvalidInput(f"cannot force a breaker to {target}")
        if not motivo.strip():
            raise InvalidInput("--motivo must say why")
        now = self.app.clock.now()
        try:
            raw = await script(self.app, "breaker")(
                keys=self._keys,
                args=["force", to_ms(now), *self.config.argv(), target, 0, motivo],
            )
        except REDIS_ERRORS as exc:
            raise StorageError(f"Redis unreachable; breaker {self.name} unchanged: {exc}") from exc
        res = _Result.parse(raw)
        self._seed(res)
        moves = await self._note(res, operador=actor.name)
        async with self.app.pool.connection() as conn, conn.transaction():
            await _insert(conn, moves)
            await audit.record(
                conn, now, actor, f"circuit.{'reset' if target == 'closed' else target}",
                alvo=self.name, motivo=motivo,
                detalhes={"transitions": [[m.from_state, m.to_state] for m in moves]},
            )  # fmt: skip
        return moves


async def _insert(conn: Any, moves: list[Transition]) -> None:
    if not moves:
        return
    async with conn.cursor() as cur:
        await cur.executemany(
            "INSERT INTO circuit_transitions (name, from_state, to_state, reason,"
            " consecutive_failures, error_type, operador, backend, at)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
            [
                (m.name, m.from_state, m.to_state, m.reason, m.consecutive_failures,
                 m.error_type, m.operador, m.backend, m.at)
                for m in moves
            ],
        )  # fmt: skip


@dataclass
class Breakers:
    """The App's registry of breakers by name (``app.extensions["breakers"]``)."""

    app: App
    items: dict[str, Breaker] = field(default_factory=dict)

    def get(
        self,
        name: str,
        *,
        config: BreakerConfig | None = None,
        classifier: Classifier | None = None,
    ) -> Breaker:
        """The breaker called ``name``, created on first use (config from settings)."""
        if name not in self.items:
            if not NAME_RE.match(name):
                raise InvalidInput(f"bad breaker name {name!r} (e.g. evolution, chip:12)")
            cfg = config or BreakerConfig.for_name(self.app.settings, name)
            self.items[name] = Breaker(self.app, name, cfg, classifier)
        return self.items[name]

    def chip(self, chip_id: object) -> Breaker:
        return self.get(f"chip:{chip_id}")


async def _run_many(app: App, calls: Sequence[tuple[Breaker, str, str, int, str]]) -> list[_Result]:
    """``Breaker._run`` of several breakers in one Redis round trip (a pipeline; each
    script call is atomic on its own, as when run one by one). Redis down: each one's
    local state, as ``_run``."""
    if len(calls) == 1:  # one breaker (the implicit chip's send): no pipeline to pay for
        b, op, arg1, arg2, arg3 = calls[0]
        return [await b._run(op, arg1, arg2, arg3)]
    now = app.clock.now()
    health = redis_health(app)
    if health.usable(now):
        try:
            lua = script(app, "breaker")
            async with app.redis.pipeline(transaction=False) as pipe:
                for b, op, arg1, arg2, arg3 in calls:
                    argv = [op, to_ms(now), *b.config.argv(), arg1, arg2, arg3]
                    await lua(keys=b._keys, args=argv, client=pipe)
                raws = await pipe.execute()
        except REDIS_ERRORS as exc:
            health.failed(now, exc)
        else:
            health.recovered()
            out = []
            for (b, *_), raw in zip(calls, raws, strict=True):
                res = _Result.parse(raw)
                b._seed(res)
                b._set_backend("redis")
                out.append(res)
            return out
    return [await b._run(op, arg1, arg2, arg3) for b, op, arg1, arg2, arg3 in calls]


async def _acquire_all(app: App, items: Sequence[Breaker]) -> tuple[list[_Result], list[bool]]:
    """Each breaker's acquire, and whether Redis was asked: the trusted ones
    (:meth:`Breaker._trusted_result`) at no cost, the others in one round trip."""
    trusted = [b._trusted_result() for b in items]
    ask = [b for b, t in zip(items, trusted, strict=True) if t is None]
    asked_flags = [t is None for t in trusted]
    if not ask:
        return [t for t in trusted if t is not None], asked_flags
    w = _watch(app)
    stamps = [w.stamp(b.key) for b in ask]  # before asking: a change heard meanwhile counts
    asked = await _run_many(app, [(b, "acquire", "", 0, "") for b in ask])
    for b, stamp, res in zip(ask, stamps, asked, strict=True):
        b._trust(stamp, res)
    fresh = iter(asked)
    return [t if t is not None else next(fresh) for t in trusted], asked_flags


@asynccontextmanager
async def guard_all(app: App, items: Sequence[Breaker]) -> AsyncIterator[list[Permit]]:
    """Nested :meth:`Breaker.guard` blocks, outermost first, with one round trip to
    acquire them all and one to record the outcome. The first that refuses raises its
    :class:`CircuitOpen` (the permits the others gave are released, as if never asked);
    each breaker classifies the block's exception on its own."""
    results, fresh = await _acquire_all(app, items)
    for b, res, asked in zip(items, results, fresh, strict=True):
        if asked:  # a trusted state was noted when it was read
            await b._note(res)
    refused = next((i for i, r in enumerate(results) if not r.allowed), None)
    if refused is not None:
        given = [
            (b, "record", "ignore", r.epoch, "not_called")
            for b, r in zip(items, results, strict=True) if r.allowed and r.trial
        ]  # fmt: skip
        if given:  # a trial slot taken for nothing: give it back
            for b, res in zip([g[0] for g in given], await _run_many(app, given), strict=True):
                await b._note(res)
        items[refused]._permit(results[refused])  # raises CircuitOpen
    permits = [b._permit(r) for b, r in zip(items, results, strict=True)]
    outcomes: list[tuple[Outcome, str]] = []
    try:
        yield permits
    except Exception as exc:
        outcomes = [b.classify(exc) for b in items]
        await _record_all(app, permits, outcomes, steady_skip=False)
        raise
    except BaseException:  # cancelled: neither success nor failure, free the permits
        outcomes = [("ignore", "cancelled")] * len(items)
        await asyncio.shield(_record_all(app, permits, outcomes, steady_skip=False))
        raise
    outcomes = [("fail", p.failure) if p.failure is not None else ("ok", "") for p in permits]
    await _record_all(app, permits, outcomes, steady_skip=True)


async def _record_all(
    app: App, permits: list[Permit], outcomes: list[tuple[Outcome, str]], *, steady_skip: bool
) -> None:
    calls = [
        (p.breaker, "record", outcome, p.epoch, error_type)
        for p, (outcome, error_type) in zip(permits, outcomes, strict=True)
        if not (steady_skip and outcome == "ok" and p.steady)  # a steady success: a no-op
    ]
    if calls:
        for b, *_ in calls:
            b._trusted = None  # what it changes is heard back; until then, ask
        for (b, *_), res in zip(calls, await _run_many(app, calls), strict=True):
            await b._note(res)


async def statuses(
    app: App, items: Sequence[Breaker], *, trusted: bool = False
) -> list[BreakerStatus]:
    """Each breaker's :meth:`Breaker.status`, read in one Redis round trip (a pipeline of
    the read-only ``status`` op); Redis down: each one's local state, as ``status()``.
    With ``trusted``, a breaker trusted closed (:func:`watch`) is answered without asking."""
    known = [b._trusted_result() if trusted else None for b in items]
    ask = [b for b, k in zip(items, known, strict=True) if k is None]
    asked = iter(await _statuses(app, ask))
    return [
        b._status_of(k) if k is not None else next(asked) for b, k in zip(items, known, strict=True)
    ]


async def _statuses(app: App, items: Sequence[Breaker]) -> list[BreakerStatus]:
    if not items:
        return []
    now = app.clock.now()
    health = redis_health(app)
    if health.usable(now):
        try:
            lua = script(app, "breaker")
            async with app.redis.pipeline(transaction=False) as pipe:
                for b in items:
                    argv = ["status", to_ms(now), *b.config.argv(), "", 0, ""]
                    await lua(keys=b._keys, args=argv, client=pipe)
                raws = await pipe.execute()
        except REDIS_ERRORS as exc:
            health.failed(now, exc)
        else:
            health.recovered()
            out = []
            for b, raw in zip(items, raws, strict=True):
                res = _Result.parse(raw)
                b._seed(res)
                b._set_backend("redis")
                out.append(b._status_of(res))
            return out
    return [await b.status() for b in items]


# --- hearing of changes ---------------------------------------------------------------


@dataclass
class _Watch:
    """What this process heard of breaker changes (:func:`watch`)."""

    live: bool = False
    #: Bumped whenever the subscription starts or ends: what was trusted is then stale.
    epoch: int = 0
    #: Changes heard per breaker key.
    changes: dict[str, int] = field(default_factory=dict)

    def stamp(self, key: str) -> tuple[int, int] | None:
        """Where the changes of ``key`` stand now; None when nothing is being heard."""
        return (self.epoch, self.changes.get(key, 0)) if self.live else None


def _watch(app: App) -> _Watch:
    w: _Watch | None = app.extensions.get("breakers.watch")
    if w is None:  # asked on every acquire: no throwaway default built per call
        w = app.extensions["breakers.watch"] = _Watch()
    return w


def _channel(app: App) -> str:
    return app.keys.channel("breaker", "changed")


async def watch(app: App, *, retry_s: float = 1.0) -> None:
    """Hear every breaker change (published by ``breaker.lua``) until cancelled, so that
    closed breakers let calls through without a round trip; resubscribes after a failure.
    Without it every acquire asks Redis."""
    w = _watch(app)
    while True:
        try:
            async with app.redis.pubsub() as pubsub:
                await pubsub.subscribe(_channel(app))
                async for message in pubsub.listen():
                    if message["type"] == "subscribe":  # also after a silent reconnect
                        w.epoch += 1
                        w.live = True
                    elif message["type"] == "message":
                        key = str(message["data"])
                        w.changes[key] = w.changes.get(key, 0) + 1
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("breaker.watch_failed", error=f"{type(exc).__name__}: {exc}")
        finally:
            w.live = False
            w.epoch += 1
        await asyncio.sleep(retry_s)


def breakers(app: App) -> Breakers:
    """The App's breaker registry."""
    registry: Breakers | None = app.extensions.get("breakers")
    if registry is None:  # asked on every send: no throwaway default built per call
        registry = app.extensions["breakers"] = Breakers(app)
    return registry


async def known_names(app: App) -> list[str]:
    """Service breakers, those this process made, and every one with state in Redis."""
    names = set(SERVICES) | set(breakers(app).items)
    prefix = app.keys.key("breaker", "")
    try:
        async for key in app.redis.scan_iter(match=prefix + "*", count=500):
            names.add(str(key)[len(prefix) :])
    except REDIS_ERRORS as exc:
        redis_health(app).failed(app.clock.now(), exc)
    return sorted(names)


async def status_all(app: App) -> list[BreakerStatus]:
    """The status of every known breaker (``julia circuits status``)."""
    return [await breakers(app).get(n).status() for n in await known_names(app)]


async def history(app: App, name: str, hours: float = 24.0) -> list[Transition]:
    """Transitions of one breaker in the last ``hours`` (``julia circuits history``)."""
    if hours <= 0:
        raise InvalidInput("--hours must be positive")
    since = app.clock.now() - timedelta(hours=hours)
    async with app.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT name, from_state, to_state, reason, consecutive_failures, error_type, at,"
            " backend, operador FROM circuit_transitions WHERE name = %s AND at >= %s"
            " ORDER BY at, id",
            (name, since),
        )
        rows = await cur.fetchall()
    return [Transition(**r) for r in rows]


async def reset(app: App, name: str, motivo: str, actor: audit.Actor) -> list[Transition]:
    """Close a breaker now (``julia circuits reset``), forgetting its failures."""
    return await breakers(app).get(name).force("closed", motivo, actor)


async def force_open(app: App, name: str, motivo: str, actor: audit.Actor) -> list[Transition]:
    """Hold a breaker open until reset (``julia circuits open``)."""
    return await breakers(app).get(name).force("forced_open", motivo, actor)


async def disable(app: App, name: str, motivo: str, actor: audit.Actor) -> list[Transition]:
    """Let every call through, counting nothing, until reset."""
    return await breakers(app).get(name).force("disabled", motivo, actor)
