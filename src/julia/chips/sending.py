"""The one send path: every message goes out through a chip of the pool.

With no chip registered, the default instance (``JULIA_EVOLUTION_INSTANCE``, or
``JULIA_ZAPI_INSTANCE`` with ``JULIA_GATEWAY_PROVIDER=zapi``) is a pool of one
**implicit chip**: :func:`choose` reserves its rate-limit slots (counted under
``instance:<name>``), and :func:`send` calls it through the provider's breaker. So
rate limits are reserved in one place and every send takes one breaker path.

:func:`choose` is what the queue asks for each message (it selects and reserves);
:func:`send` makes the gateway call through the provider's and the chip's breakers
and, when a registered chip fails, retries **at once** on the next eligible chip
(excluding those tried), up to ``JULIA_CHIP_MAX_SEND_ATTEMPTS`` (3) different chips;
when they all fail it raises :class:`AllChipsFailed` (outcome FAILED_ALL_CHIPS) and
the queue's retry with backoff takes over.

Every attempt on a registered chip feeds it: a ``chip_eventos`` row (``sent`` with
its provider message id, or ``send_error`` with its code), its counters, the
doctor's affinity. A WhatsApp error puts the chip in cooldown — 429 → 5 min,
400 → 30 min, 403 → 60 min (settings) — and a 400/403 recomputes its trust at once
(a 403 also counts as a block and starts the gradual recovery). The chip's own
breaker (3 counted failures) never affects other chips.

Not retried on another chip: a number that is not on WhatsApp (the message's
fault), and a send that may have gone out (``maybe_sent``: the queue reconciles).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any, Protocol

from psycopg.types.json import Jsonb

from julia.chips import credentials, lifecycle, pool, scoring, selection
from julia.chips.circuit import chip_breaker
from julia.core import audit, phones, tipos
from julia.core.app import App
from julia.core.errors import (
    AllChipsFailed,
    CircuitOpen,
    GatewayError,
    InvalidNumber,
    NoChipAvailable,
)
from julia.core.logs import get_logger
from julia.gateways import registry
from julia.gateways.base import Gateway, SendResult
from julia.resilience import ratelimit
from julia.resilience.breaker import breakers, guard_all

log = get_logger(__name__)


class Message(Protocol):
    """What the pool needs of a queued message (``julia.fila.queue.Mensagem`` fits)."""

    @property
    def id(self) -> int: ...
    @property
    def tipo(self) -> str: ...
    @property
    def telefone(self) -> str: ...
    @property
    def texto(self) -> str: ...
    @property
    def medico_id(self) -> int | None: ...
    @property
    def conversa_id(self) -> int | None: ...


@dataclass(frozen=True)
class ChipSend:
    """Who sends a message and its reservation: a registered chip (``chip``, with its
    ``selection``), or the implicit chip of the default instance (``chip`` None).
    ``decision`` is the rate-limit answer; when it is a denial nothing is sent."""

    gateway: Gateway
    instance: str
    decision: ratelimit.Decision
    chip: pool.Chip | None = None
    selection: selection.Selection | None = None

    @property
    def chip_id(self) -> int | None:
        return self.chip.id if self.chip is not None else None

    @property
    def chip_key(self) -> str:
        """What the per-chip rate limits count under."""
        return str(self.chip.id) if self.chip is not None else f"instance:{self.instance}"

    @property
    def breakers(self) -> tuple[str, ...]:
        """The provider's breaker (gateway down), then the chip's own (chip restricted)."""
        provider = self.gateway.provider
        return (provider,) if self.chip is None else (provider, f"chip:{self.chip.id}")


async def _gateway(app: App, chip: pool.Chip) -> Gateway:
    return await credentials.gateway_for(app, chip.id, chip.provider, chip.instance)


def default_instance(app: App) -> tuple[Gateway, str]:
    """The implicit chip: the default gateway and its instance from settings."""
    gateway = registry.default_gateway(app)
    if gateway.provider == "zapi":
        return gateway, app.settings.zapi_instance
    return gateway, app.settings.evolution_instance


async def chips_present(app: App) -> bool:
    """Whether the pool has any chip (cached; :func:`pool.add` clears the cache)."""
    cached = app.extensions.get("chips.present")
    now = app.clock.now()
    if cached is not None and cached[1] > now:
        return bool(cached[0])
    present = await pool.count(app) > 0
    app.extensions["chips.present"] = (present, now + timedelta(seconds=5))
    return present


async def _other_providers(app: App, down: set[str]) -> bool:
    """Whether the pool has usable chips on a provider other than those ``down``
    (cached like :func:`chips_present`)."""
    cached = app.extensions.get("chips.providers")
    now = app.clock.now()
    if cached is None or cached[1] <= now:
        async with app.pool.connection() as conn:
            cur = await conn.execute(
                "SELECT DISTINCT provider FROM chips WHERE status IN ('active', 'ready')"
            )
            cached = ({r["provider"] for r in await cur.fetchall()}, now + timedelta(seconds=5))
        app.extensions["chips.providers"] = cached
    return bool(cached[0] - down)


async def provider_of(app: App, instance: str) -> str | None:
    """The provider of the chip hosted as ``instance``, or None when it is not a chip."""
    chip = await pool.by_instance(app, instance)
    return chip.provider if chip is not None else None


async def choose(
    app: App, m: Message, *, exclude: frozenset[int] = frozenset(), tentativa: int = 1,
    avoid: frozenset[str] = frozenset(),
) -> ChipSend:  # fmt: skip
    """Choose who sends ``m`` and reserve its rate-limit slots (the one place they are).

    With chips registered the pool selects (:class:`NoChipAvailable` if none may send
    now); without, the implicit chip of the default instance is taken, and a denial is
    returned in ``decision`` (``retry_at`` None: it can never fit)."""
    if await chips_present(app):
        sel = await selection.select(
            app, tipo=m.tipo, telefone=m.telefone, medico_id=m.medico_id,
            conversa_id=m.conversa_id, mensagem_id=m.id, exclude=exclude, tentativa=tentativa,
            avoid=avoid,
        )  # fmt: skip
        gateway = await _gateway(app, sel.chip)
        return ChipSend(gateway, sel.chip.instance, sel.decision, sel.chip, sel)
    cs = implicit(app)
    decision = await ratelimit.take(
        app, tipo=tipos.rate_class(m.tipo), telefone=m.telefone, chip_id=cs.chip_key
    )
    return replace(cs, decision=decision)


@dataclass(frozen=True)
class Chosen:
    """:func:`choose_batch`'s answer: each message's :class:`ChipSend` (or its
    :class:`NoChipAvailable`), and the selection log still to write (:meth:`record`,
    before any of them is sent)."""

    items: list[ChipSend | NoChipAvailable]
    decided: selection.Decided | None = None

    async def record(self, app: App) -> None:
        if self.decided is not None:
            await self.decided.record(app)


async def choose_batch(app: App, ms: Sequence[Message]) -> Chosen:
    """:func:`choose` for a claimed batch, in order, with the same choices: the pool
    decides the whole batch at once (:func:`selection.decide_batch`); a message no chip
    may send now gets its :class:`NoChipAvailable` (returned, not raised)."""
    if not ms:
        return Chosen([])
    if not await chips_present(app):  # the implicit chip: the batch's slots in one call
        cs = implicit(app)
        lim = ratelimit.Limits.of(app)
        ranked = await ratelimit.take_ranked(
            app, [ratelimit.RankedTake(tipos.rate_class(m.tipo), m.telefone,
                                       [(cs.chip_key, (0, 0, 0, 0))]) for m in ms],
            {cs.chip_key: (0, lim.chip_hourly, lim.chip_daily)},
        )  # fmt: skip
        return Chosen([
            replace(cs, decision=attempts[-1][1]) if attempts else await choose(app, m)
            for m, attempts in zip(ms, ranked, strict=True)
        ])  # fmt: skip
    reqs = [selection.Request(m.tipo, m.telefone, m.medico_id, m.conversa_id, m.id) for m in ms]
    decided = await selection.decide_batch(app, reqs)
    out: list[ChipSend | NoChipAvailable] = []
    for sel in decided.found:
        if isinstance(sel, NoChipAvailable):
            out.append(sel)
        else:
            gateway = await _gateway(app, sel.chip)
            out.append(ChipSend(gateway, sel.chip.instance, sel.decision, sel.chip, sel))
    return Chosen(out, decided)


def implicit(app: App) -> ChipSend:
    """The implicit chip of the default instance, before any reservation."""
    gateway, instance = default_instance(app)
    return ChipSend(gateway, instance, ratelimit.Decision(True, "unreserved"))


@asynccontextmanager
async def _breakers(app: App, cs: ChipSend) -> AsyncIterator[None]:
    """The send's breakers, outermost first (:attr:`ChipSend.breakers`), acquired in one
    round trip and their outcome recorded in one."""
    items = [breakers(app).get(cs.gateway.provider)]
    if cs.chip is not None:  # with the chip threshold, not the service default
        items.append(chip_breaker(app, cs.chip.id))
    async with guard_all(app, items):
        yield


def _provider_down(exc: BaseException) -> bool:
    """The provider's own breaker refused (the gateway service is down, not the chip)."""
    return isinstance(exc, CircuitOpen) and exc.name in pool.PROVIDERS


def _chip_at_fault(exc: BaseException) -> bool:
    """Whether another chip may succeed where this one failed."""
    if isinstance(exc, CircuitOpen):
        return exc.name.startswith("chip:")
    if isinstance(exc, InvalidNumber):
        return False
    if isinstance(exc, GatewayError):
        return not exc.maybe_sent
    return False


async def send(
    app: App,
    m: Message,
    first: ChipSend,
    *,
    mark_started: Any = None,
    sent: list[Sent] | None = None,
) -> tuple[SendResult, ChipSend]:
    """Send ``m`` on ``first``, falling back to other chips; returns the result and the
    chip that sent it. ``mark_started(chip_send)`` is awaited before each fallback send
    (the queue records which instance is about to send, for reconciliation). With
    ``sent``, what a chip's send feeds is appended there for :func:`record_sent` (the
    batch's in one statement) instead of written at once."""
    if first.chip is None:  # the implicit chip: no other chip to fall back to
        try:
            async with _breakers(app, first):
                result = await first.gateway.send_text(
                    first.instance, phones.digits(m.telefone), m.texto
                )
        except Exception as exc:
            if not _maybe_sent(exc):
                await ratelimit.give_back(app, first.decision.ticket)
            raise
        return result, first
    current = first
    tried: list[int] = []
    avoid: set[str] = set()  # providers whose service breaker refused: fail over to others
    errors: list[str] = []
    last: BaseException | None = None
    limit = app.settings.chip_max_send_attempts
    while True:
        chip = current.chip
        assert chip is not None  # choose() returns registered chips once the pool has any
        try:
            async with _breakers(app, current):
                result = await current.gateway.send_text(
                    chip.instance, phones.digits(m.telefone), m.texto
                )
        except (GatewayError, CircuitOpen) as exc:
            tried.append(chip.id)
            await _failed(app, m, current, exc)
            if _provider_down(exc) and await _other_providers(app, avoid | {chip.provider}):
                avoid.add(chip.provider)  # e.g. evolution's breaker open: try a Z-API chip
                try:
                    current = await choose(
                        app, m, exclude=frozenset(tried), tentativa=len(tried) + 1,
                        avoid=frozenset(avoid),
                    )  # fmt: skip
                except NoChipAvailable:
                    raise exc from None  # no chip elsewhere: rescheduled as before
                if mark_started is not None:
                    await mark_started(current)
                log.warning(
                    "chip.failover", mensagem_id=m.id, from_chip=chip.id,
                    to_chip=current.chip_id, provider=chip.provider,
                )  # fmt: skip
                continue
            if not _chip_at_fault(exc):
                raise
            last = exc
            errors.append(f"chip {chip.id}: {getattr(exc, 'code', type(exc).__name__)}")
            if len(tried) >= limit:
                break
            try:
                current = await choose(
                    app, m, exclude=frozenset(tried), tentativa=len(tried) + 1,
                    avoid=frozenset(avoid),
                )  # fmt: skip
            except NoChipAvailable:
                break
            if mark_started is not None:
                await mark_started(current)
            log.warning(
                "chip.fallback", mensagem_id=m.id, from_chip=chip.id, to_chip=current.chip_id,
                error=getattr(exc, "code", type(exc).__name__), tentativa=len(tried) + 1,
            )  # fmt: skip
            continue
        if sent is None:
            await record_sent(app, [(m, current, result)])
        else:
            sent.append((m, current, result))
        return result, current
    raise AllChipsFailed(f"every chip tried failed ({'; '.join(errors)})", tried=tried) from last


# --- feeding the chip ---------------------------------------------------------------


#: A message sent on a registered chip: what it feeds (:func:`record_sent`).
Sent = tuple[Message, ChipSend, SendResult]


async def record_sent(app: App, items: Sequence[Sent]) -> None:
    """What sent messages feed, in one statement for any number of them."""
    if not items:
        return
    rows = []
    for m, cs, result in items:
        assert cs.chip is not None and cs.selection is not None
        rows.append((cs.chip.id, m.tipo, selection.is_proactive(m.tipo), m.telefone, m.id,
                     result.provider_message_id, m.medico_id, m.conversa_id,
                     cs.selection.log_id))  # fmt: skip
    async with app.pool.connection() as conn:
        # one JSON text, not nine arrays: psycopg dumps arrays element by element
        await conn.execute(_SUCCEEDED, {"rows": json.dumps(rows), "now": app.clock.now()})


# What sent messages feed, in one statement (one round trip, one transaction): their
# events, the chips' counters, the doctors' affinity, the conversations' chip (a
# conversation stays on the chip that talks in it: the first of the batch), the selection
# log's result. Statistics of sends the queue records durably itself: no wait for the WAL.
_SUCCEEDED = """
WITH cfg AS (SELECT set_config('synchronous_commit', 'off', true)),
s AS (
    SELECT (r->>0)::bigint AS chip, r->>1 AS tipo, (r->>2)::boolean AS proactive,
           r->>3 AS tel, (r->>4)::bigint AS mid, r->>5 AS pid, (r->>6)::bigint AS medico,
           (r->>7)::bigint AS conversa, (r->>8)::bigint AS log, ord
    FROM jsonb_array_elements(%(rows)s::jsonb) WITH ORDINALITY AS e(r, ord)
),
ev AS (
    INSERT INTO chip_eventos (chip_id, kind, tipo, proactive, telefone, mensagem_id,
                              provider_message_id, midia, at)
    SELECT s.chip, 'sent', s.tipo, s.proactive, s.tel, s.mid, s.pid, 'texto',
           %(now)s::timestamptz FROM s, cfg ORDER BY s.ord
),
ch AS (
    UPDATE chips c SET enviadas_total = c.enviadas_total + n.sent, last_sent_at = %(now)s,
                       updated_at = %(now)s
    FROM (SELECT chip, count(*) AS sent FROM s GROUP BY chip) n WHERE c.id = n.chip
),
af AS (
    INSERT INTO chip_afinidade (medico_id, chip_id, enviadas, respostas, last_at)
    SELECT medico, chip, count(*), 0, %(now)s::timestamptz FROM s
    WHERE medico IS NOT NULL GROUP BY medico, chip
    ON CONFLICT (medico_id, chip_id) DO UPDATE
    SET enviadas = chip_afinidade.enviadas + EXCLUDED.enviadas, last_at = EXCLUDED.last_at
),
cv AS (
    UPDATE conversas v SET chip_id = f.chip
    FROM (SELECT DISTINCT ON (conversa) conversa, chip FROM s WHERE conversa IS NOT NULL
          ORDER BY conversa, ord) f
    WHERE v.id = f.conversa AND v.chip_id IS NULL
)
UPDATE chip_selection_log l SET resultado = 'sent' FROM s WHERE l.id = s.log
"""


def _cooldown_minutes(app: App, status: int | None) -> float | None:
    s = app.settings
    return {429: s.chip_cooldown_429_min, 400: s.chip_cooldown_400_min,
            403: s.chip_cooldown_403_min}.get(status or 0)  # fmt: skip


async def _failed(app: App, m: Message, cs: ChipSend, exc: BaseException) -> None:
    """Record a failed attempt on the chip; cooldown, recovery start and urgent rescore."""
    now = app.clock.now()
    chip, sel = cs.chip, cs.selection
    assert chip is not None and sel is not None
    status = getattr(exc, "status", None) if isinstance(exc, GatewayError) else None
    code = getattr(exc, "code", None) or type(exc).__name__
    refused_by_breaker = isinstance(exc, CircuitOpen)
    if not _maybe_sent(exc):
        await ratelimit.give_back(app, cs.decision.ticket)  # the send did not happen
    if isinstance(exc, InvalidNumber):  # the number's fault, not the chip's
        await selection.set_result(app, sel.log_id, code)
        return
    async with app.pool.connection() as conn, conn.transaction():
        if not refused_by_breaker:  # a refusal by our breaker is not a send error
            await conn.execute(
                "INSERT INTO chip_eventos (chip_id, kind, code, tipo, proactive, telefone,"
                " mensagem_id, detalhes, at) VALUES (%s, 'send_error', %s, %s, %s, %s, %s, %s, %s)",
                (chip.id, code, m.tipo, selection.is_proactive(m.tipo), m.telefone, m.id,
                 Jsonb({"status": status, "error": str(exc)[:300]}), now),
            )  # fmt: skip
            await conn.execute(
                "UPDATE chips SET erros_total = erros_total + 1, last_error_at = %s,"
                " last_error_code = %s, updated_at = %s WHERE id = %s",
                (now, code, now, chip.id),
            )
        if status == 403:  # WhatsApp restricting the number: a block, recovery starts
            await conn.execute(
                "INSERT INTO chip_eventos (chip_id, kind, code, telefone, mensagem_id, at)"
                " VALUES (%s, 'block', %s, %s, %s, %s)",
                (chip.id, code, m.telefone, m.id, now),
            )
            await conn.execute("UPDATE chips SET restricao_em = %s WHERE id = %s", (now, chip.id))
        await conn.execute(
            "UPDATE chip_selection_log SET resultado = %s WHERE id = %s",
            (code, sel.log_id),
        )
    log.warning(
        "chip.send_failed", chip_id=chip.id, instance=chip.instance, mensagem_id=m.id,
        code=code, status=status,
    )  # fmt: skip
    minutes = _cooldown_minutes(app, status)
    if minutes:
        await lifecycle.cooldown(
            app, chip.id, minutos=minutes, motivo=f"WhatsApp answered {status}",
            actor=audit.AUTOMATION, code=code,
        )  # fmt: skip
    if status in (400, 403):
        await scoring.recalculate(app, chip.id, motivo=f"urgent: {status} from WhatsApp")
    elif not refused_by_breaker and await _block_rate_over(app, chip.id):
        await scoring.recalculate(app, chip.id, motivo="urgent: block rate over the limit")


async def _block_rate_over(app: App, chip_id: int) -> bool:
    return await scoring.block_rate(app, chip_id) > app.settings.chip_block_rate_max


def _maybe_sent(exc: BaseException) -> bool:
    return isinstance(exc, GatewayError) and exc.maybe_sent
