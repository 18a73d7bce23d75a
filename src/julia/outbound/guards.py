"""Where the send pipeline meets the resilience primitives (:mod:`julia.resilience`).

Rate limits are reserved with the route (:func:`julia.chips.sending.choose`) and the
gateway call goes through the breakers in :func:`julia.chips.sending.send`: one send
path. What is left here: the send-time opt-out check (:func:`may_still_send`), giving
back the slots of a message that was not sent, and the retry delay (the shared
exponential backoff with full jitter).

The last-moment opt-out query is skipped when it cannot find anything new: the worker's
listener hears every opt-out Postgres announces (:class:`OptOutWatch`), and none came
since the message's batch was screened, not longer ago than
``JULIA_WORKER_OPTOUT_TRUST_S``. Otherwise (no listener, an opt-out heard, a long wait)
the query runs, as it always did.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from julia.core.app import App
from julia.guardrails import rules as guardrails
from julia.resilience import ratelimit
from julia.resilience.retry import backoff_delay

if TYPE_CHECKING:
    from julia.fila.queue import Mensagem


#: The listener sends itself an echo this often; unheard for ECHO_LOST_S, it is deaf.
ECHO_EVERY_S = 2.0
ECHO_LOST_S = 3 * ECHO_EVERY_S


@dataclass
class OptOutWatch:
    """What this worker heard of opt-outs (``LISTEN`` on
    :data:`julia.guardrails.rules.OPTOUT_CHANNEL`, kept by the outbound consumer).

    It counts as listening only while its own echoes come back (a NOTIFY it sends
    itself every :data:`ECHO_EVERY_S`): through a transaction pooler ``LISTEN`` succeeds
    and nothing is ever delivered, and a connection can die without a word."""

    #: Opt-outs heard, plus every time listening (re)started: what was known goes stale.
    heard: int = 0
    token: str = field(default_factory=lambda: uuid.uuid4().hex)
    #: ``time.monotonic()`` until which the last echo vouches for the connection.
    until: float = 0.0

    @property
    def live(self) -> bool:
        return time.monotonic() < self.until

    @property
    def echo(self) -> str:
        """The payload of this watch's own echo (opt-outs are announced with '')."""
        return f"echo:{self.token}"

    def echoed(self) -> None:
        if not self.live:  # what happened while it was deaf is unknown
            self.heard += 1
        self.until = time.monotonic() + ECHO_LOST_S

    def announced(self) -> None:
        self.heard += 1

    def deaf(self) -> None:
        self.until, self.heard = 0.0, self.heard + 1


def optout_watch(app: App) -> OptOutWatch:
    watch: OptOutWatch | None = app.extensions.get("outbound.optout_watch")
    if watch is None:  # asked on every send: no throwaway default built per call
        watch = app.extensions["outbound.optout_watch"] = OptOutWatch()
    return watch


@dataclass(frozen=True)
class Screened:
    """Where the opt-outs heard stood when a batch's guardrails statement started."""

    heard: int | None  # None: not listening
    at: float  # time.monotonic()


def screening(app: App) -> Screened:
    """Taken right before the batch's guardrails statement (its snapshot comes after)."""
    watch = optout_watch(app)
    return Screened(watch.heard if watch.live else None, time.monotonic())


async def may_still_send(app: App, m: Mensagem, screened: Screened | None = None) -> bool:
    """Whether ``m`` may still go out: checked right before its gateway call, so an
    opt-out committed while it waited in the batch stops it (LGPD). The one send-time
    consent check, asked of the guardrails; skipped when nothing was announced since the
    batch was ``screened`` (the module's docstring says when)."""
    watch = optout_watch(app)
    if (
        screened is not None
        and screened.heard is not None
        and watch.live
        and watch.heard == screened.heard
        and time.monotonic() - screened.at < app.settings.worker_optout_trust_s
    ):
        return True
    return not await _optouts(app).opted_out(m.medico_id, m.telefone)


class _OptOutProbe:
    """Coalesces the send-time opt-out checks of concurrent sends into one query.

    Each caller waits for a query that *started after it asked*, so it sees every
    opt-out committed before its check; with ``n`` sends in flight that is at most
    two queries in flight instead of ``n``."""

    def __init__(self, app: App) -> None:
        self.app = app
        self.loop = asyncio.get_running_loop()
        self.waiting: list[tuple[int | None, str, asyncio.Future[bool]]] = []
        self.running: asyncio.Task[None] | None = None

    async def opted_out(self, medico_id: int | None, telefone: str) -> bool:
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self.waiting.append((medico_id, telefone, future))
        if self.running is None or self.running.done():
            self.running = asyncio.create_task(self._rounds())
        return await future

    async def _rounds(self) -> None:
        while self.waiting:
            round_, self.waiting = self.waiting, []
            try:
                ids, tels = await guardrails.opted_out_now(
                    self.app,
                    sorted({i for i, _, _ in round_ if i is not None}),
                    sorted({t for _, t, _ in round_}),
                )
            except Exception as exc:
                for *_, f in round_:
                    if not f.done():
                        f.set_exception(exc)
                continue
            for medico_id, telefone, f in round_:
                if not f.done():
                    f.set_result(medico_id in ids or telefone in tels)


def _optouts(app: App) -> _OptOutProbe:
    probe: _OptOutProbe | None = app.extensions.get("outbound.optout_probe")
    if probe is None or probe.loop is not asyncio.get_running_loop():
        probe = app.extensions["outbound.optout_probe"] = _OptOutProbe(app)
    return probe


async def give_back(app: App, decision: ratelimit.Decision | None) -> None:
    """Return the slots of a message that was not sent after all."""
    if decision is not None and decision.ticket is not None:
        await ratelimit.give_back(app, decision.ticket)


def retry_delay(app: App, attempt: int, rng: random.Random | None = None) -> float:
    """Seconds before the next try after failed attempt ``attempt`` (1 = the first)."""
    s = app.settings
    return backoff_delay(
        max(attempt - 1, 0), base_s=s.fila_retry_base_s, cap_s=s.fila_retry_cap_s, rng=rng
    )
