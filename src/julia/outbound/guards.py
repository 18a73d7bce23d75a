"""Where the send pipeline meets the resilience primitives (:mod:`julia.resilience`).

Rate limits are reserved with the route (:func:`julia.chips.sending.choose`) and the
gateway call goes through the breakers in :func:`julia.chips.sending.send`: one send
path. What is left here: the send-time opt-out check (:func:`may_still_send`), giving
back the slots of a message that was not sent, and the retry delay (the shared
exponential backoff with full jitter).
"""

from __future__ import annotations

import asyncio
import random
from typing import TYPE_CHECKING

from julia.core.app import App
from julia.guardrails import rules as guardrails
from julia.resilience import ratelimit
from julia.resilience.retry import backoff_delay

if TYPE_CHECKING:
    from julia.fila.queue import Mensagem


async def may_still_send(app: App, m: Mensagem) -> bool:
    """Whether ``m`` may still go out: checked right before its gateway call, so an
    opt-out committed while it waited in the batch stops it (LGPD). The one send-time
    consent check, asked of the guardrails."""
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
