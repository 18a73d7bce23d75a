"""The send pipeline for one claimed batch, and the reconciliation of uncertain sends.

For each batch, in order:

1. **guardrails** (at send time, :func:`julia.guardrails.rules.at_send`): opt-out or erasure →
   ``bloqueada`` / BLOCKED_OPTOUT; manual block, human control, contact cap → BLOCKED_GUARDRAIL;
   a cancelled campaign's → ``cancelada``; a paused campaign's → ``pendente``, parked
   (the opt-out is checked again right before each gateway call, :func:`guards.may_still_send`);
2-3. **route and rate limits** (:func:`routes_for`, the whole batch at once; :func:`route_for`
   for one): the chip that sends it — with no chip
   registered, the default instance as the pool's one implicit chip — and its rate-limit
   slots, reserved in that one place; a denial reschedules the message to when the limit
   frees up, without spending an attempt;
4. **number check** for first contacts (prospeccao, campanha): Evolution's
   ``whatsappNumbers``, answer cached in Redis; not on WhatsApp → FAILED_INVALID_NUMBER;
5. **send started**: one committed UPDATE marks the rest as being sent while, beside it,
   the pool's selection log is written (:meth:`julia.chips.selection.Decided.record`);
6. **send** through the one breaker path (:func:`julia.chips.sending.send`),
   ``concurrency`` at a time;
7. **finish**: one UPDATE records every outcome while, beside it, one statement feeds the
   chips what they sent (:func:`julia.chips.sending.record_sent`); then the outcome hooks run.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from julia.chips import sending as chip_sending
from julia.core import logs, phones, tipos
from julia.core.app import App
from julia.core.errors import (
    AllChipsFailed,
    CircuitOpen,
    ConfigError,
    GatewayError,
    GatewayRateLimited,
    InvalidNumber,
    NoChipAvailable,
)
from julia.core.logs import get_logger
from julia.core.redact import mask_phone
from julia.fila import queue
from julia.fila.queue import Mensagem, Result
from julia.fila.states import Outcome, Status
from julia.gateways import registry
from julia.gateways.base import Gateway, send_deadline_s
from julia.guardrails import rules as guardrails
from julia.outbound import guards
from julia.resilience.ratelimit import Decision

if TYPE_CHECKING:
    from julia.settings import Settings

log = get_logger(__name__)


#: Who sends a message and its reservation: one thing (a chip, or the default instance's
#: implicit chip), chosen and reserved in one place (:func:`julia.chips.sending.choose`).
Route = chip_sending.ChipSend


async def route_for(app: App, message: Mensagem) -> Route:
    """Who sends this message, with its rate-limit slots reserved.

    The pool selects among registered chips; with none registered, the default instance
    (``JULIA_EVOLUTION_INSTANCE``, or ``JULIA_ZAPI_INSTANCE`` with
    ``JULIA_GATEWAY_PROVIDER=zapi``) is the pool's one implicit chip. When nothing may send
    now, ``route.decision`` is the denial (the message is rescheduled, or dead-lettered
    when it can never fit).
    """
    try:
        return await chip_sending.choose(app, message)
    except NoChipAvailable as exc:
        return _no_chip(app, exc)


async def routes_for(
    app: App, messages: Sequence[Mensagem]
) -> tuple[list[Route], Callable[[], Awaitable[None]]]:
    """:func:`route_for` of each message of a batch, in order, the pool deciding the
    whole batch at once (the same choices as one by one); and what writes the pool's
    selection log, to be awaited before any of them is sent."""
    chosen = await chip_sending.choose_batch(app, messages)
    routes = [_no_chip(app, c) if isinstance(c, NoChipAvailable) else c for c in chosen.items]
    return routes, lambda: chosen.record(app)


def _no_chip(app: App, exc: NoChipAvailable) -> Route:
    denied = Decision(
        False, "chips", exc.details.get("limit") or "chips",
        exc.details.get("reason") or "no_chip_available", exc.details.get("retry_at"),
    )  # fmt: skip
    return replace(chip_sending.implicit(app), instance="", decision=denied)


async def gateway_for_instance(app: App, instance: str) -> Gateway:
    """The gateway hosting ``instance`` (for reconciliation): the chip's provider when the
    instance is a chip, else the default gateway."""
    provider = await chip_sending.provider_of(app, instance)
    return registry.gateway(app, provider) if provider else registry.default_gateway(app)


# --- the send-outcome hook ---------------------------------------------------


@dataclass(frozen=True)
class SendOutcome:
    """What happened to one message this attempt (for chip metrics and the like)."""

    message: Mensagem
    route: Route | None
    status: Status
    outcome: Outcome
    error: BaseException | None
    latency_s: float | None


OutcomeHook = Callable[[App, SendOutcome], Awaitable[None]]
_HOOKS: list[OutcomeHook] = []


def on_outcome(hook: OutcomeHook) -> OutcomeHook:
    """Register ``hook(app, outcome)``, called after every attempt is recorded.

    Usable as a decorator. A failing hook is logged and never affects the queue.
    """
    if hook not in _HOOKS:
        _HOOKS.append(hook)
    return hook


def remove_outcome_hook(hook: OutcomeHook) -> None:
    if hook in _HOOKS:
        _HOOKS.remove(hook)


async def _run_hooks(app: App, outcomes: Sequence[SendOutcome]) -> None:
    for hook in list(_HOOKS):
        for outcome in outcomes:
            try:
                await hook(app, outcome)
            except Exception as exc:
                log.error("fila.outcome_hook_failed", hook=repr(hook), error=str(exc))


# --- WhatsApp number check -----------------------------------------------------


async def numbers_on_whatsapp(app: App, route: Route, numbers: list[str]) -> dict[str, bool]:
    """Which of these numbers (digits) are on WhatsApp: Redis cache, then the gateway.

    Redis down: ask the gateway. Gateway failing: assume they are (the send will tell).
    """
    numbers = sorted(set(numbers))
    if not numbers:
        return {}
    keys = [app.keys.key("wa", "exists", route.instance, n) for n in numbers]
    known: dict[str, bool] = {}
    try:
        cached = await app.redis.mget(keys)
        known = {n: v == "1" for n, v in zip(numbers, cached, strict=True) if v is not None}
    except Exception as exc:
        log.warning("fila.number_cache_unavailable", error=str(exc))
    missing = [n for n in numbers if n not in known]
    if missing:
        try:
            answers = await route.gateway.check_numbers(route.instance, missing)
        except GatewayError as exc:
            log.warning("fila.number_check_failed", error=str(exc), count=len(missing))
            answers = dict.fromkeys(missing, True)
        else:
            try:
                async with app.redis.pipeline(transaction=False) as pipe:
                    for n, exists in answers.items():
                        pipe.set(
                            app.keys.key("wa", "exists", route.instance, n),
                            "1" if exists else "0",
                            ex=app.settings.wa_check_cache_ttl_s,
                        )
                    await pipe.execute()
            except Exception as exc:
                log.warning("fila.number_cache_unavailable", error=str(exc))
        known.update(answers)
    return known


# --- one batch -----------------------------------------------------------------


class LeaseKeeper:
    """A worker's lower bound on how long it still holds what it claimed.

    Every ``JULIA_FILA_LEASE_S / 3`` it pushes back the leases of the work still running
    (what was claimed and :meth:`hold`-ed, until its batch :meth:`release`-s it: a batch
    that ended, however it ended, is never kept alive); a send is only started while the
    last successful push is recent enough (a third of the lease is kept as margin for
    clock skew). If Postgres is unreachable the pushes fail, the bound runs out, and the
    worker stops sending: a rescuer may take over without the two ever sending the same
    message.
    """

    def __init__(self, app: App, worker_id: str) -> None:
        self.app = app
        self.worker_id = worker_id
        self.valid_until = self._horizon()
        self.held: set[int] = set()

    def _horizon(self) -> datetime:
        return self.app.clock.now() + timedelta(seconds=self.app.settings.fila_lease_s * 2 / 3)

    def valid(self) -> bool:
        return self.app.clock.now() < self.valid_until

    def hold(self, ids: Iterable[int]) -> None:
        self.held.update(ids)

    def release(self, ids: Iterable[int]) -> None:
        self.held.difference_update(ids)

    async def extend(self) -> None:
        horizon = self._horizon()
        try:
            if self.held:
                await queue.extend_leases(self.app, self.worker_id, sorted(self.held))
        except Exception as exc:
            log.error("fila.lease_extend_failed", worker=self.worker_id, error=str(exc))
        else:
            self.valid_until = horizon

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.app.settings.fila_lease_s / 3)
            await self.extend()


def check_lease(settings: Settings) -> None:
    """Refuse settings where a lease may end while its send is still in flight: the
    rescuer would take a message whose gateway call has not ended yet (a duplicate)."""
    deadline = send_deadline_s(settings.http_read_timeout_s)
    if settings.fila_lease_s <= deadline:
        raise ConfigError(
            f"JULIA_FILA_LEASE_S ({settings.fila_lease_s:g} s) must be longer than a send's"
            f" HTTP deadline ({deadline:g} s: connect plus JULIA_HTTP_READ_TIMEOUT_S"
            f" {settings.http_read_timeout_s:g} s); raise the lease or lower the timeout"
        )


#: After a send's HTTP deadline, how long a late acceptance may take to show in the
#: gateway's history (its own queue, clock skew) before "not there" means "not sent".
RECONCILE_MARGIN_S = 30.0


def reconcile_min_age_s(settings: Settings) -> float:
    """How old an uncertain send must be before reconciliation may decide it."""
    return max(
        settings.fila_lease_s, send_deadline_s(settings.http_read_timeout_s) + RECONCILE_MARGIN_S
    )


@dataclass
class BatchReport:
    claimed: int = 0
    sent: int = 0
    retried: int = 0
    rescheduled: int = 0
    blocked: int = 0
    dead: int = 0
    uncertain: int = 0

    def add(self, status: Status, outcome: Outcome) -> None:
        if status == Status.ENVIADA:
            self.sent += 1
        elif status == Status.BLOQUEADA:
            self.blocked += 1
        elif status == Status.DLQ:
            self.dead += 1
        elif status == Status.INCERTA:
            self.uncertain += 1
        elif outcome == Outcome.RETRY:
            self.retried += 1
        else:
            self.rescheduled += 1


def _failure(m: Mensagem, exc: BaseException) -> tuple[Status, Outcome, str]:
    """Where a failed attempt goes: retry later, DLQ, or ``incerta`` if it may have gone out."""
    if isinstance(exc, InvalidNumber):
        return Status.DLQ, Outcome.FAILED_INVALID_NUMBER, exc.code
    if isinstance(exc, AllChipsFailed) and m.tentativas < m.max_tentativas:
        return Status.PENDENTE, Outcome.FAILED_ALL_CHIPS, exc.code
    if isinstance(exc, GatewayError):
        if exc.maybe_sent:
            return Status.INCERTA, Outcome.OUTCOME_UNKNOWN, exc.code
        if not exc.retryable:
            return Status.DLQ, Outcome.FAILED_PERMANENT, exc.code
        code = exc.code
    else:  # our own bug after the send started: never resend blindly
        return Status.INCERTA, Outcome.OUTCOME_UNKNOWN, type(exc).__name__
    if m.tentativas >= m.max_tentativas:
        return Status.DLQ, Outcome.FAILED_MAX_ATTEMPTS, code
    return Status.PENDENTE, Outcome.RETRY, code


async def _send_one(
    app: App, m: Mensagem, route: Route, rng: random.Random | None,
    sent_on_chips: list[chip_sending.Sent] | None = None,
) -> tuple[Result, SendOutcome]:  # fmt: skip
    started = time.monotonic()
    error: BaseException | None = None
    try:  # the pool sends (a registered chip falls back to the next ones)
        sent, route = await chip_sending.send(
            app, m, route, mark_started=lambda c: queue.mark_send_started(
                app, m.lease_owner or "", {m.id: (c.instance, c.chip_id)}),
            sent=sent_on_chips,
        )  # fmt: skip
    except CircuitOpen as exc:
        retry_at = exc.retry_at or app.clock.now() + timedelta(
            seconds=app.settings.breaker_open_base_s
        )
        result = Result(
            m.id, Status.PENDENTE, Outcome.FAILED_CIRCUIT_OPEN, motivo=str(exc),
            proxima=retry_at, give_back_attempt=True,
        )  # fmt: skip
        return result, SendOutcome(m, route, result.status, result.outcome, exc, None)
    except Exception as exc:
        error = exc
    latency = time.monotonic() - started
    if error is None:
        result = Result(
            m.id, Status.ENVIADA, Outcome.SENT, provider_message_id=sent.provider_message_id
        )
        log.info(
            "fila.sent", id=m.id, telefone=mask_phone(m.telefone), tipo=m.tipo,
            instancia=route.instance, attempt=m.tentativas, latency_s=round(latency, 4),
        )  # fmt: skip
    else:
        status, outcome, code = _failure(m, error)
        proxima = None
        if status == Status.PENDENTE:
            delay = guards.retry_delay(app, m.tentativas, rng)
            if isinstance(error, GatewayRateLimited) and error.details.get("retry_after_s"):
                delay = max(delay, float(error.details["retry_after_s"]))
            proxima = app.clock.now() + timedelta(seconds=delay)
        result = Result(m.id, status, outcome, motivo=code, erro=str(error)[:1000], proxima=proxima)
        log.warning(
            "fila.send_failed", id=m.id, telefone=mask_phone(m.telefone), attempt=m.tentativas,
            error=str(error)[:300], status=status.value, outcome=outcome.value,
        )  # fmt: skip
    return result, SendOutcome(m, route, result.status, result.outcome, error, latency)


async def process_batch(
    app: App,
    worker_id: str,
    batch: Sequence[Mensagem],
    *,
    concurrency: int | None = None,
    gate: asyncio.Semaphore | None = None,
    rng: random.Random | None = None,
    lease: LeaseKeeper | None = None,
) -> BatchReport:
    """Run the guardrails and the sends of one claimed batch, and record every outcome.

    Whatever fails inside it, every message of the batch ends in a visible state
    (:func:`_unfinished`) and its lease is no longer renewed."""
    report = BatchReport(claimed=len(batch))
    if not batch:
        return report
    now = app.clock.now()
    results: dict[int, Result] = {}
    outcomes: list[SendOutcome] = []
    started: set[int] = set()
    sent_on_chips: list[chip_sending.Sent] = []  # what the chips sent, fed in one statement
    if lease is not None:
        lease.hold(m.id for m in batch)
    try:
        await _run_batch(app, worker_id, batch, results, outcomes, started, now,
                         gate or asyncio.Semaphore(concurrency or app.settings.worker_concurrency),
                         rng, lease, sent_on_chips)  # fmt: skip
    except Exception as exc:  # our own bug or a dependency failing: nothing left hanging
        log.error("fila.batch_error", worker=worker_id, error=f"{type(exc).__name__}: {exc}")
        for m in batch:
            if m.id not in results:
                results[m.id] = _unfinished(m, exc, m.id in started, now)
    finally:
        try:
            # shielded: a cancelled worker still records what it knows; the outcomes and
            # what the chips sent are independent writes, made side by side
            await asyncio.shield(asyncio.gather(
                queue.finish(app, worker_id, list(results.values())),
                _record_sent(app, sent_on_chips),
            ))  # fmt: skip
        finally:
            if lease is not None:
                lease.release(m.id for m in batch)
    for r in results.values():
        report.add(r.status, r.outcome)
    await _run_hooks(app, outcomes)
    log.info("fila.batch", worker=worker_id, **vars(report), took_s=_since(app, now))
    return report


async def _record_sent(app: App, sent: list[chip_sending.Sent]) -> None:
    try:
        await chip_sending.record_sent(app, sent)
    except Exception as exc:  # statistics: the sends themselves are recorded by finish
        log.error("chips.sent_not_recorded", error=str(exc), count=len(sent))


class _NotChecked(Exception):
    """The send-time consent check could not be made (Postgres unreachable)."""


async def _consent(app: App, m: Mensagem, screened: guards.Screened) -> bool:
    try:
        return await guards.may_still_send(app, m, screened)
    except Exception as exc:
        log.warning("fila.optout_check_failed", id=m.id, error=f"{type(exc).__name__}: {exc}")
        raise _NotChecked(str(exc)) from exc


def _unfinished(m: Mensagem, exc: BaseException, send_started: bool, now: datetime) -> Result:
    """Where a message goes when its batch failed around it: ``incerta`` if its send may
    have started (never resent blindly), else back to ``pendente`` without spending an
    attempt."""
    why = f"batch failed: {type(exc).__name__}"
    if send_started:
        return Result(m.id, Status.INCERTA, Outcome.OUTCOME_UNKNOWN, motivo=why,
                      erro=str(exc)[:1000])  # fmt: skip
    return Result(m.id, Status.PENDENTE, Outcome.RELEASED, motivo=why, erro=str(exc)[:1000],
                  proxima=now, give_back_attempt=True)  # fmt: skip


async def _run_batch(
    app: App, worker_id: str, batch: Sequence[Mensagem], results: dict[int, Result],
    outcomes: list[SendOutcome], started: set[int], now: datetime, gate: asyncio.Semaphore,
    rng: random.Random | None, lease: LeaseKeeper | None, sent_on_chips: list[chip_sending.Sent],
) -> None:  # fmt: skip
    def settle(m: Mensagem, result: Result, route: Route | None, err: Any = None) -> None:
        results[m.id] = result
        outcomes.append(SendOutcome(m, route, result.status, result.outcome, err, None))

    def blocked_optout(m: Mensagem) -> Result:
        return Result(m.id, Status.BLOQUEADA, Outcome.BLOCKED_OPTOUT,
                      motivo="the doctor opted out before it was sent")  # fmt: skip

    # 1. the guardrails (opt-out, erasure, manual block, human control, contact cap), at send time
    screened = guards.screening(app)
    blocked = await guardrails.at_send(app, worker_id, [m.id for m in batch])
    todo: list[Mensagem] = []
    for m in batch:
        if m.id in blocked:
            b = blocked[m.id]
            settle(m, Result(m.id, Status(b.status), Outcome(b.outcome), motivo=b.motivo,
                             give_back_attempt=b.park, park=b.park), None)  # fmt: skip
        else:
            todo.append(m)

    # 2-3. route and rate limits (reserved with the route)
    routes: dict[int, Route] = {}
    allowed: list[Mensagem] = []
    found, record_selections = await routes_for(app, todo)
    for m, route in zip(todo, found, strict=True):
        decision = route.decision
        if decision.allowed:
            routes[m.id] = route
            allowed.append(m)
        elif decision.retry_at is None:
            why = f"rate limit {decision.limit}: {decision.reason}"
            settle(m, Result(m.id, Status.DLQ, Outcome.FAILED_PERMANENT, motivo=why), route)
        else:
            why = f"rate limit {decision.limit}: {decision.reason}"
            settle(m, Result(m.id, Status.PENDENTE, Outcome.RESCHEDULED_RATE_LIMIT, motivo=why,
                             proxima=decision.retry_at, give_back_attempt=True), route)  # fmt: skip

    # 4. first contacts: is the number on WhatsApp?
    sendable: list[Mensagem] = []
    by_route: dict[tuple[int, str], list[Mensagem]] = {}
    for m in allowed:
        if m.tipo in tipos.FIRST_CONTACT:
            by_route.setdefault((id(routes[m.id].gateway), routes[m.id].instance), []).append(m)
        else:
            sendable.append(m)
    for group in by_route.values():
        route = routes[group[0].id]
        exists = await numbers_on_whatsapp(app, route, [phones.digits(m.telefone) for m in group])
        for m in group:
            if exists.get(phones.digits(m.telefone), True):
                sendable.append(m)
            else:
                await guards.give_back(app, routes[m.id].decision)
                settle(m, Result(m.id, Status.DLQ, Outcome.FAILED_INVALID_NUMBER,
                                 motivo="INVALID_NUMBER", erro="not on WhatsApp (whatsappNumbers)"),
                       routes[m.id])  # fmt: skip

    # 5. the committed "send started" step (only what this worker still holds is sent) and,
    # beside it, the pool's selection log: both written before any send
    marked, recorded = await asyncio.gather(
        queue.mark_send_started(app, worker_id, {
            m.id: (routes[m.id].instance, routes[m.id].chip_id) for m in sendable
        }),
        record_selections(),
        return_exceptions=True,
    )  # fmt: skip
    if isinstance(recorded, BaseException):
        raise recorded  # nothing was sent: the batch goes back, as pendente
    if isinstance(marked, BaseException):
        raise marked
    started |= marked

    # 6. send
    async def one(m: Mensagem) -> None:
        # each runs in its own task (gather), so the trace set here is this message's own
        logs.trace_id_var.set(m.trace_id)
        route = routes[m.id]
        async with gate:
            try:
                if lease is not None and not lease.valid():  # the lease may be gone
                    why = "lease not renewed in time; not sent"
                    result = Result(m.id, Status.PENDENTE, Outcome.RELEASED, motivo=why,
                                    proxima=now, give_back_attempt=True)  # fmt: skip
                    outcome = SendOutcome(m, route, result.status, result.outcome, None, None)
                elif not await _consent(app, m, screened):  # opted out while it waited
                    result = blocked_optout(m)
                    outcome = SendOutcome(m, route, result.status, result.outcome, None, None)
                else:
                    result, outcome = await _send_one(app, m, route, rng, sent_on_chips)
            except _NotChecked as exc:  # the check could not run: not sent, tried again later
                result = _unfinished(m, exc.__cause__ or exc, False, now)
                outcome = SendOutcome(m, route, result.status, result.outcome, exc, None)
            except Exception as exc:  # ends this message only; the others go on
                log.error("fila.send_error", id=m.id, error=f"{type(exc).__name__}: {exc}")
                result = _unfinished(m, exc, True, now)
                outcome = SendOutcome(m, route, result.status, result.outcome, exc, None)
            if result.outcome in (Outcome.RELEASED, Outcome.BLOCKED_OPTOUT):  # never sent
                await guards.give_back(app, route.decision)
        results[m.id] = result
        outcomes.append(outcome)

    await asyncio.gather(*(one(m) for m in sendable if m.id in started))


def _maybe_sent(error: BaseException | None) -> bool:
    return isinstance(error, GatewayError) and error.maybe_sent


def _since(app: App, then: datetime) -> float:
    return round((app.clock.now() - then).total_seconds(), 3)


# --- reconciliation of uncertain sends ------------------------------------------------


@dataclass(frozen=True)
class ReconcileResult:
    sent: int  # found in the gateway's history → enviada
    requeued: int  # not there → pendente (sent again)
    held: int  # the gateway keeps no history, or could not be asked → an operator decides

    def as_dict(self) -> dict[str, int]:
        return {"sent": self.sent, "requeued": self.requeued, "held": self.held}


#: How far before ``send_started_at`` a history entry may be stamped (clock skew).
_SKEW = timedelta(minutes=5)


async def reconcile(
    app: App, *, min_age_s: float | None = None, limit: int = 500
) -> ReconcileResult:
    """Settle ``incerta`` messages against the gateway's message history.

    Found there (same number and text, not already another message's id) → ``enviada``;
    absent → ``pendente`` to be sent again; no history available → left for an
    operator. Only sends started ``min_age_s`` ago are looked at; by default
    (:func:`reconcile_min_age_s`) no younger than the send's own HTTP deadline plus
    :data:`RECONCILE_MARGIN_S` (nor than the lease), so a gateway that accepts late is
    found, not sent to again.
    """
    now = app.clock.now()
    age = reconcile_min_age_s(app.settings) if min_age_s is None else min_age_s
    async with app.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT id, telefone, texto, instancia, send_started_at FROM fila_mensagens"
            " WHERE status = 'incerta' AND COALESCE(send_started_at, updated_at) <= %s"
            " ORDER BY id LIMIT %s",
            (now - timedelta(seconds=age), limit),
        )
        rows = list(await cur.fetchall())
    if not rows:
        return ReconcileResult(0, 0, 0)
    histories: dict[tuple[str, str], Any] = {}
    used: set[str] = set()
    found: dict[int, str] = {}
    missing: list[int] = []
    for row in rows:
        instance = row["instancia"] or app.settings.evolution_instance
        number = phones.digits(row["telefone"])
        key = (instance, number)
        if key not in histories:
            try:
                gateway = await gateway_for_instance(app, instance)
                histories[key] = await gateway.find_sent(instance, number)
            except GatewayError as exc:
                log.warning("fila.reconcile_unavailable", error=str(exc))
                histories[key] = None
        history = histories[key]
        if history is None:
            continue
        since = (row["send_started_at"] or now) - _SKEW
        candidates = [
            h.provider_message_id for h in history
            if h.text == row["texto"] and (h.at is None or h.at >= since)
            and h.provider_message_id not in used
        ]  # fmt: skip
        if candidates:
            async with app.pool.connection() as conn:
                cur = await conn.execute(
                    "SELECT provider_message_id FROM fila_mensagens"
                    " WHERE provider_message_id = ANY(%s)",
                    (candidates,),
                )
                used |= {r["provider_message_id"] for r in await cur.fetchall()}
            candidates = [c for c in candidates if c not in used]
        if candidates:
            found[row["id"]] = candidates[0]
            used.add(candidates[0])
        else:
            missing.append(row["id"])
    async with app.pool.connection() as conn, conn.transaction():
        if found:
            await conn.execute(
                "UPDATE fila_mensagens f SET status = 'enviada', outcome = 'SENT',"
                " motivo = 'reconciled: found in the gateway history',"
                " provider_message_id = r.pid, enviada_em = COALESCE(f.send_started_at, %(now)s),"
                " updated_at = %(now)s"
                " FROM unnest(%(ids)s::bigint[], %(pids)s::text[]) AS r(id, pid)"
                " WHERE f.id = r.id AND f.status = 'incerta'",
                {"now": now, "ids": list(found), "pids": list(found.values())},
            )
        if missing:
            await conn.execute(
                "UPDATE fila_mensagens SET status = 'pendente', outcome = 'RETRY',"
                " motivo = 'reconciled: not in the gateway history', send_started_at = NULL,"
                " proxima_tentativa_em = %(now)s, updated_at = %(now)s"
                " WHERE id = ANY(%(ids)s) AND status = 'incerta'",
                {"now": now, "ids": missing},
            )
            await conn.execute("SELECT pg_notify(%s, '')", (queue.CHANNEL,))
    result = ReconcileResult(len(found), len(missing), len(rows) - len(found) - len(missing))
    log.info("fila.reconciled", **result.as_dict())
    return result
