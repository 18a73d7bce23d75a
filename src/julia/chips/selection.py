"""Which chip sends a message.

1. **Eligibility by type**: prospeccao and campanha need trust ≥ 80, followup ≥ 60,
   resposta (and humano, sistema) ≥ 40 (settings). When no chip qualifies, **emergency
   mode** lowers each threshold by 20 and also admits ready chips; it says so in the
   log (``chip.emergency``), a metric, an audit row and the selection log.
2. **Filters**: status active (or ready in emergency), gateway connected (unknown
   until the first sync counts as connected), not in cooldown, its own breaker not
   open, within its hourly and daily limits (level × warming phase × recovery, see
   :func:`julia.chips.trust.limits`), not already tried for this message.
3. **Preference**: the conversation's chip (a conversation stays on its chip unless
   it is unusable), then the chip the doctor already talks to (affinity weighted by
   the replies it obtained), then the least used in 24 h, then the highest trust.
4. **Reservation**: candidates are tried in that order against the resilience rate
   limiter (``ratelimit.take``: one atomic Redis check-and-take of the chip's scaled
   limits, Postgres fallback, fail closed); the first that gets its slot is chosen.
   The caller gives the slot back (``ratelimit.give_back``) if the send does not happen.

Every selection writes one ``chip_selection_log`` row: each candidate with why it
was kept or left out, the chip chosen (or none), why, and whether in emergency.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from prometheus_client import Counter

from julia.chips import pool
from julia.chips.circuit import chip_breaker
from julia.core import audit, tipos
from julia.core.app import App
from julia.core.errors import NoChipAvailable
from julia.core.logs import get_logger
from julia.core.redact import mask_phone
from julia.resilience import ratelimit
from julia.resilience.breaker import statuses

log = get_logger(__name__)

SELECTIONS = Counter(
    "julia_chip_selections", "Chip selections by message type and result.", ["tipo", "result"]
)
EMERGENCIES = Counter(
    "julia_chip_emergency_selections", "Selections made in emergency mode.", ["tipo"]
)

#: Gateway states meaning connected (Evolution ``open``; Z-API ``connected``).
CONNECTED_STATES = pool.CONNECTED_STATES
#: Limits that are the same whichever chip sends: no point trying another chip.
NOT_CHIP_LIMITS = frozenset({"business_hours", "medico_daily", "storage"})
#: Selections still being sent count as use of their chip for this long (spreads a batch).
PENDING_WINDOW = timedelta(minutes=10)
#: When nothing is eligible, look again after this long (or when a cooldown ends).
RETRY_NO_CHIP_S = 60.0


def threshold_for(tipo: str, app: App) -> int:
    s = app.settings
    return {
        "prospeccao": s.chip_threshold_prospeccao,
        "followup": s.chip_threshold_followup,
        "resposta": s.chip_threshold_resposta,
    }[tipos.trust_class(tipo)]


def is_proactive(tipo: str) -> bool:
    """Under the proactive limits (:data:`julia.core.tipos.UNDER_PROACTIVE_LIMITS`)."""
    return tipos.under_proactive_limits(tipo)


@dataclass
class Selection:
    """A chip chosen for a message, its reserved rate-limit slot, and the log row."""

    chip: pool.Chip
    decision: ratelimit.Decision
    emergency: bool
    threshold: int
    log_id: int  # its chip_selection_log row (set when the batch's rows are written)
    motivo: str
    tentativa: int = 1
    #: The log row's candidates as written (JSON): read as :attr:`candidates`.
    candidates_json: str = "[]"

    @property
    def candidates(self) -> list[dict[str, Any]]:
        """Every chip of the pool as this selection saw it: id, instance, status, trust,
        afinidade, sent_24h, circuit (for the chips the ranking got to) and why."""
        return list(json.loads(self.candidates_json))


@dataclass(frozen=True)
class Request:
    """One message to choose a chip for (what :func:`select` takes)."""

    tipo: str
    telefone: str
    medico_id: int | None = None
    conversa_id: int | None = None
    mensagem_id: int | None = None
    exclude: frozenset[int] = frozenset()
    tentativa: int = 1
    avoid: frozenset[str] = frozenset()


@dataclass(slots=True)  # one per chip of a batch
class _PoolChip:
    """A chip as a claimed batch sees it: its use counted once, then grown by the batch's
    own picks (a pending selection counts as use of its chip, as one by one)."""

    chip: pool.Chip
    afinidades: dict[int, int]  # message's place in the batch -> affinity; absent: 0
    sent_24h: int  # sent in 24 h plus selections still being sent
    proactive_1h: int
    proactive_24h: int
    head: str  # its entry in a log row up to the values that vary by message (JSON)


def _head(chip: pool.Chip) -> str:
    fixed = {"id": chip.id, "instance": chip.instance, "status": chip.status,
             "trust": chip.trust_score}  # fmt: skip
    return json.dumps(fixed)[:-1] + ', "afinidade": '


#: JSON of the few strings and states a log entry repeats (``why``, ``circuit``).
_json = functools.lru_cache(maxsize=4096)(json.dumps)


# One query for the whole batch. Affinity (only where there is some, per message by its
# place in the batch): the replies this doctor sent to each chip's instance (the inbox),
# plus those carried over by a conversation migration. Connection: a connection.update
# webhook newer than the last sync wins (the inbox stores it; see julia.chips.health).
# Use: one pass over each chip's sent events of the last 24 h.
_CANDIDATES = """
WITH m AS (
    SELECT (r->>0)::bigint AS medico, r->>1 AS tel, ord
    FROM jsonb_array_elements(%(msgs)s::jsonb) WITH ORDINALITY AS e(r, ord)
), af AS (
    SELECT chip_id, array_agg(ord ORDER BY ord) AS ords, array_agg(n ORDER BY ord) AS ns
    FROM (SELECT chip_id, ord, sum(n)::int AS n FROM (
              SELECT a.chip_id, m.ord, a.respostas AS n FROM m
              JOIN chip_afinidade a ON a.medico_id = m.medico AND a.respostas > 0
              UNION ALL
              SELECT c.id, m.ord, count(*) FROM m
              JOIN mensagens_recebidas r ON r.telefone = m.tel AND r.kind = 'mensagem'
                                        AND NOT r.from_me
              JOIN chips c ON c.instance = r.instance
              GROUP BY c.id, m.ord
          ) x GROUP BY chip_id, ord) y
    GROUP BY chip_id
)
SELECT c.*, af.ords AS af_ords, af.ns AS af_ns,
       g.state AS webhook_state, g.at AS webhook_at,
       ev.sent + (SELECT count(*) FROM chip_selection_log l WHERE l.chosen_chip = c.id
                  AND l.resultado IS NULL AND l.at > %(pending)s) AS sent_24h,
       ev.proactive_1h, ev.proactive_24h
FROM chips c
LEFT JOIN gateway_conexoes g ON g.provider = c.provider AND g.instance = c.instance
LEFT JOIN af ON af.chip_id = c.id
CROSS JOIN LATERAL (
    SELECT count(*) AS sent,
           count(*) FILTER (WHERE e.proactive AND e.at > %(hour)s) AS proactive_1h,
           count(*) FILTER (WHERE e.proactive) AS proactive_24h
    FROM chip_eventos e WHERE e.chip_id = c.id AND e.kind = 'sent' AND e.at > %(day)s
) ev
WHERE c.status IN ('active', 'ready')
ORDER BY c.id
"""


async def _candidates(app: App, reqs: Sequence[Request], now: datetime) -> list[_PoolChip]:
    async with app.pool.connection() as conn:
        cur = await conn.execute(
            _CANDIDATES,
            # one JSON text, not two arrays: psycopg dumps arrays element by element
            {"msgs": json.dumps([(r.medico_id, r.telefone) for r in reqs]),
             "day": now - timedelta(hours=24), "hour": now - timedelta(hours=1),
             "pending": now - PENDING_WINDOW},
        )  # fmt: skip
        rows = await cur.fetchall()
    out = []
    for r in rows:
        ords, ns = r.pop("af_ords") or [], r.pop("af_ns") or []
        afinidades = {int(o) - 1: int(n) for o, n in zip(ords, ns, strict=True)}
        sent, p1h, p24h = (
            int(r.pop("sent_24h")),
            int(r.pop("proactive_1h")),
            int(r.pop("proactive_24h")),
        )
        chip = pool.effective(r)
        out.append(_PoolChip(chip, afinidades, sent, p1h, p24h, _head(chip)))
    return out


async def _conversation_chips(app: App, reqs: Sequence[Request]) -> list[int | None]:
    """Each message's conversation chip (its conversation's, else the doctor's active one)."""
    if all(r.conversa_id is None and r.medico_id is None for r in reqs):
        return [None] * len(reqs)
    async with app.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT (SELECT v.chip_id FROM conversas v WHERE (v.id = q.c OR (q.c IS NULL"
            " AND v.medico_id = q.m AND v.status = 'ativa')) AND v.chip_id IS NOT NULL"
            " ORDER BY v.id DESC LIMIT 1) AS chip_id"
            " FROM unnest(%(c)s::bigint[], %(m)s::bigint[]) WITH ORDINALITY AS q(c, m, ord)"
            " ORDER BY q.ord",
            {"c": [r.conversa_id for r in reqs], "m": [r.medico_id for r in reqs]},
        )
        rows = await cur.fetchall()
    return [int(r["chip_id"]) if r["chip_id"] is not None else None for r in rows]


async def _circuits(app: App, chip_ids: list[int], now: datetime) -> dict[int, str]:
    """Every chip's breaker state in one round trip (none for those trusted closed),
    ``open`` only while it still refuses."""
    found = await statuses(app, [chip_breaker(app, i) for i in chip_ids], trusted=True)
    out = {}
    for chip_id, status in zip(chip_ids, found, strict=True):
        state: str = status.state
        if state == "open" and status.open_until is not None and status.open_until <= now:
            state = "half_open"  # the next call is a trial
        out[chip_id] = state
    return out


def _filter(
    app: App, c: _PoolChip, *, tipo: str, threshold: int, emergency: bool,
    exclude: frozenset[int], now: datetime, avoid: frozenset[str] = frozenset(),
) -> str | None:  # fmt: skip
    """Why ``c`` cannot send now (its breaker aside), or None."""
    chip = c.chip
    if chip.id in exclude:
        return "already tried for this message"
    if chip.provider in avoid:
        return f"provider {chip.provider} circuit open"
    if chip.status != "active" and not (emergency and chip.status == "ready"):
        return f"status {chip.status}"
    if chip.trust_score < threshold:
        return f"trust {chip.trust_score} < {threshold}"
    if chip.connected is False:
        return f"disconnected ({chip.connection_state or 'unknown'})"
    if chip.in_cooldown(now):
        return f"cooldown until {chip.cooldown_until:%H:%M:%S} ({chip.cooldown_reason})"
    if is_proactive(tipo) and app.settings.rate_limits_enabled:
        lim = chip.limits(app)
        if c.proactive_1h >= lim.hourly:
            return f"hourly limit {c.proactive_1h}/{lim.hourly} ({lim.why})"
        if c.proactive_24h >= lim.daily:
            return f"daily limit {c.proactive_24h}/{lim.daily} ({lim.why})"
    return None


def _why_chosen(
    c: _PoolChip, afinidade: int, conversation_chip: int | None, emergency: bool
) -> str:
    if c.chip.id == conversation_chip:
        why = "the conversation's chip"
    elif afinidade > 0:
        why = f"affinity ({afinidade} replies)"
    else:
        why = f"least used ({c.sent_24h} sent in 24 h)"
    return why + (" [emergency]" if emergency else "")


async def select(
    app: App,
    *,
    tipo: str,
    telefone: str,
    medico_id: int | None = None,
    conversa_id: int | None = None,
    mensagem_id: int | None = None,
    exclude: frozenset[int] = frozenset(),
    tentativa: int = 1,
    avoid: frozenset[str] = frozenset(),
) -> Selection:
    """Choose a chip for one message and reserve its rate-limit slot; chips of the
    providers in ``avoid`` (their service breaker open) are left out.

    Raises :class:`NoChipAvailable` (``retry_at`` in its details) when none may send
    now; the selection log has the row either way."""
    req = Request(tipo, telefone, medico_id, conversa_id, mensagem_id, exclude, tentativa, avoid)
    (found,) = await select_batch(app, [req])
    if isinstance(found, NoChipAvailable):
        raise found
    return found


@dataclass(slots=True)
class _Plan:
    """What the filters decide for one kind of message (its type, the chips it excludes
    and the providers it avoids): the same for every such message of a batch."""

    emergency: bool
    threshold: int
    whys: list[str]  # each chip's verdict, in pool order ("eligible": through)
    passing: list[_PoolChip]  # through the filters (breakers aside)
    shown: frozenset[int]  # chips whose breaker the log shows: read, and none let through
    takes: list[tuple[str, tuple[int, int, int, int]]] | None = None  # see _takes


@dataclass(slots=True)
class _Choice:
    """One message's decision before its log row is written."""

    req: Request
    plan: _Plan
    chosen: _PoolChip | None
    decision: ratelimit.Decision | None
    denials: list[ratelimit.Decision]
    motivo: str
    candidates_json: str
    chips: list[_PoolChip]  # the batch's pool (shared)


async def select_batch(app: App, requests: Sequence[Request]) -> list[Selection | NoChipAvailable]:
    """:func:`select` for a claimed batch, in order, with the same choices as one call per
    message (:func:`decide_batch`), their log rows written. Each item is the message's
    :class:`Selection` or its :class:`NoChipAvailable` (returned, not raised)."""
    decided = await decide_batch(app, requests)
    await decided.record(app)
    return decided.found


@dataclass
class Decided:
    """A batch's choices (:attr:`found`, in order) whose selection-log rows are still to be
    written: :meth:`record` writes them, which must happen before any of them is sent."""

    found: list[Selection | NoChipAvailable]
    _choices: list[_Choice]
    _at: datetime

    async def record(self, app: App) -> None:
        """The log rows in one statement (each :attr:`Selection.log_id` set), then the
        metrics, logs and emergency audits."""
        if not self._choices:
            return
        ids = await _log_many(app, self._choices, self._at)
        for found, ch, log_id in zip(self.found, self._choices, ids, strict=True):
            if isinstance(found, Selection):
                found.log_id = log_id
            await _noted(app, ch, found, log_id, self._at)


async def decide_batch(app: App, requests: Sequence[Request]) -> Decided:
    """The choices :func:`select` would make for each message of a claimed batch, one by
    one, made at once: one candidates query, every chip's breaker read in one round trip,
    the rate limits of the batch in one call. A chip chosen earlier in the batch counts as
    used by the later messages, as its pending selection would one by one. The log rows
    are written by :meth:`Decided.record` (beside the queue's own "send started" commit)."""
    now = app.clock.now()
    if not requests:
        return Decided([], [], now)
    chips = await _candidates(app, requests, now)
    conv_chips = await _conversation_chips(app, requests)
    circuits = await _circuits(app, [b.chip.id for b in chips], now) if chips else {}
    plans: dict[tuple[str, frozenset[int], frozenset[str]], _Plan] = {}
    batch = []
    for r in requests:
        key = (r.tipo, r.exclude, r.avoid)
        if key not in plans:
            plans[key] = _plan(app, r, chips, circuits, now)
        batch.append(plans[key])
    ranked = await ratelimit.take_ranked(
        app,
        [ratelimit.RankedTake(tipos.rate_class(r.tipo), r.telefone, _takes(plan, i, conv, circuits))
         for i, (r, conv, plan) in enumerate(zip(requests, conv_chips, batch, strict=True))],
        {str(b.chip.id): (b.sent_24h, *_limits(app, b.chip)) for b in chips},
    )  # fmt: skip
    choices = []
    for i, (req, conv, plan, attempts) in enumerate(
        zip(requests, conv_chips, batch, ranked, strict=True)
    ):
        choice = await _choose(app, req, i, conv, plan, chips, circuits, attempts, now)
        if choice.chosen is not None:  # its pending selection counts as use of the chip
            choice.chosen.sent_24h += 1
        choices.append(choice)
    return Decided([_found(app, ch, now) for ch in choices], choices, now)


_REFUSING = ("open", "forced_open")


def _limits(app: App, chip: pool.Chip) -> tuple[int, int]:
    lim = chip.limits(app)  # level × warming × recovery, enforced atomically
    return lim.hourly, lim.daily


def _plan(
    app: App, req: Request, chips: list[_PoolChip], circuits: dict[int, str], now: datetime
) -> _Plan:
    """Emergency or not, the threshold, and the chips through the filters: emergency only
    when no chip qualifies with its breaker letting through (not when all are busy), which
    the rate limits do not change."""
    normal = threshold_for(req.tipo, app)
    shown: set[int] = set()
    for mode in (False, True):
        emergency, threshold = mode, max(0, normal - app.settings.chip_emergency_drop * mode)
        whys = [
            _filter(app, b, tipo=req.tipo, threshold=threshold, emergency=emergency,
                    exclude=req.exclude, now=now, avoid=req.avoid) or "eligible"
            for b in chips
        ]  # fmt: skip
        passing = [b for b, why in zip(chips, whys, strict=True) if why == "eligible"]
        if any(circuits[b.chip.id] not in _REFUSING for b in passing):
            break
        shown.update(b.chip.id for b in passing)  # every one read, none lets through
    return _Plan(emergency, threshold, whys, passing, frozenset(shown))


def _takes(
    plan: _Plan, i: int, conv: int | None, circuits: dict[int, str]
) -> list[tuple[str, tuple[int, int, int, int]]]:
    """The chips message ``i`` may be tried on, with their rank keys (for
    :func:`ratelimit.take_ranked`); the same list for every message of the plan with no
    conversation chip and no affinity."""
    plain = conv is None and not any(i in b.afinidades for b in plan.passing)
    if plain and plan.takes is not None:
        return plan.takes
    takes = [
        (str(b.chip.id), (int(b.chip.id != conv), -b.afinidades.get(i, 0), -b.chip.trust_score,
                          b.chip.id))
        for b in plan.passing if circuits[b.chip.id] not in _REFUSING
    ]  # fmt: skip
    if plain:
        plan.takes = takes
    return takes


async def _choose(
    app: App, req: Request, i: int, conv_chip: int | None, plan: _Plan,
    chips: list[_PoolChip], circuits: dict[int, str], attempts: list[ratelimit.Attempt] | None,
    now: datetime,
) -> _Choice:  # fmt: skip
    """Walk message ``i``'s ranking: breakers, then the rate limits (decided for the batch
    in ``attempts``; None: taken here, one chip at a time). Its log entries are written
    with each chip's use this far into the batch."""
    chosen: _PoolChip | None = None
    decision: ratelimit.Decision | None = None
    denials: list[ratelimit.Decision] = []
    why: dict[int, str] = {}  # where the ranking changed a chip's verdict
    reached: set[int] = set()  # chips whose breaker the ranking read
    tries = iter(attempts or ())
    for b in sorted(  # in preference order
        plan.passing,
        key=lambda b: (b.chip.id != conv_chip, -b.afinidades.get(i, 0), b.sent_24h,
                       -b.chip.trust_score, b.chip.id),
    ):  # fmt: skip
        cid = b.chip.id
        reached.add(cid)
        if circuits[cid] in _REFUSING:
            why[cid] = f"circuit {circuits[cid]}"
            continue
        if attempts is None:
            d = await ratelimit.take(
                app, tipo=tipos.rate_class(req.tipo), telefone=req.telefone,
                chip_id=cid, chip_limits=_limits(app, b.chip),
            )  # fmt: skip
        else:
            chip, d = next(tries)
            assert chip in (None, str(cid)), (chip, cid)  # the same ranking
        if d.allowed:
            chosen, decision = b, d
            break
        why[cid] = f"rate limit {d.limit}: {d.reason}"
        denials.append(d)
        if d.limit in NOT_CHIP_LIMITS:
            break  # the same for every chip
    shown = plan.shown | reached if plan.shown else reached
    entries, final = [], []
    for b, verdict in zip(chips, plan.whys, strict=True):
        cid = b.chip.id
        w = why.get(cid, verdict)
        final.append((cid, w))
        circuit = _json(circuits[cid]) if cid in shown else "null"
        entries.append(f'{b.head}{b.afinidades.get(i, 0)}, "sent_24h": {b.sent_24h},'
                       f' "circuit": {circuit}, "why": {_json(w)}}}')  # fmt: skip
    if chosen is None:
        motivo = _no_chip_reason(chips, final, denials)
    else:
        motivo = _why_chosen(chosen, chosen.afinidades.get(i, 0), conv_chip, plan.emergency)
    cands = "[" + ", ".join(entries) + "]"
    return _Choice(req, plan, chosen, decision, denials, motivo, cands, chips)


def _found(app: App, ch: _Choice, now: datetime) -> Selection | NoChipAvailable:
    """The decision as the caller gets it: the selection (its log id set once written), or
    why no chip may send."""
    req, plan, chosen, decision, denials = ch.req, ch.plan, ch.chosen, ch.decision, ch.denials
    if chosen is None or decision is None:
        retry_at = _retry_at(app, [b.chip for b in ch.chips], denials, now)
        limit = denials[-1].limit if denials and denials[-1].limit in NOT_CHIP_LIMITS else None
        return NoChipAvailable(
            f"no chip may send this {req.tipo} now: {ch.motivo}", retry_at=retry_at,
            limit=limit, reason=denials[-1].reason if limit else "no_chip_available",
        )  # fmt: skip
    return Selection(
        chosen.chip, decision, plan.emergency, plan.threshold, 0, ch.motivo, req.tentativa,
        ch.candidates_json,
    )  # fmt: skip


async def _noted(
    app: App, ch: _Choice, found: Selection | NoChipAvailable, log_id: int, now: datetime
) -> None:
    """Metrics, logs and the emergency audit of one decision whose row is written."""
    req, tipo, motivo, plan = ch.req, ch.req.tipo, ch.motivo, ch.plan
    if not isinstance(found, Selection):
        SELECTIONS.labels(tipo, "none").inc()
        log.warning(
            "chip.none_available", tipo=tipo, telefone=mask_phone(req.telefone), motivo=motivo,
            mensagem_id=req.mensagem_id, tentativa=req.tentativa,
            retry_at=found.details.get("retry_at"),
        )  # fmt: skip
        return
    chip = found.chip
    SELECTIONS.labels(tipo, "emergency" if plan.emergency else "chosen").inc()
    if plan.emergency:
        normal = threshold_for(tipo, app)
        EMERGENCIES.labels(tipo).inc()
        log.warning(
            "chip.emergency", tipo=tipo, threshold=plan.threshold, normal=normal,
            chip_id=chip.id, mensagem_id=req.mensagem_id,
        )  # fmt: skip
        async with app.pool.connection() as conn:
            await audit.record(
                conn, now, audit.AUTOMATION, "chips.emergency", alvo=f"chip:{chip.id}",
                motivo=f"no chip with trust >= {normal} for {tipo}; threshold lowered to "
                f"{plan.threshold}",
                detalhes={"tipo": tipo, "mensagem_id": req.mensagem_id, "selection_log": log_id},
            )  # fmt: skip
    log.info(
        "chip.selected", chip_id=chip.id, instance=chip.instance, tipo=tipo, motivo=motivo,
        emergency=plan.emergency, mensagem_id=req.mensagem_id, tentativa=req.tentativa,
    )  # fmt: skip


def _retry_at(
    app: App, chips: list[pool.Chip], denials: list[ratelimit.Decision], now: datetime
) -> datetime:
    times = [d.retry_at for d in denials if d.retry_at is not None]
    times += [c.cooldown_until for c in chips if c.cooldown_until and c.cooldown_until > now]
    soonest = min(times) if times else now + timedelta(seconds=RETRY_NO_CHIP_S)
    return max(soonest, now + timedelta(seconds=1))


def _no_chip_reason(
    chips: list[_PoolChip], whys: list[tuple[int, str]], denials: list[ratelimit.Decision]
) -> str:
    if not chips:
        return "no active or ready chip in the pool"
    if denials and denials[-1].limit in NOT_CHIP_LIMITS:
        return f"rate limit {denials[-1].limit}: {denials[-1].reason}"
    return "; ".join(f"chip {cid}: {why}" for cid, why in whys)[:1000]


async def _log_many(app: App, choices: list[_Choice], now: datetime) -> list[int]:
    """The batch's selection-log rows in one statement; their ids in the batch's order."""
    rows = ", ".join(
        # each row's JSON with its candidates, already JSON, spliced in before the brace
        json.dumps({
            "mensagem_id": ch.req.mensagem_id, "tipo": ch.req.tipo, "telefone": ch.req.telefone,
            "conversa_id": ch.req.conversa_id, "tentativa": ch.req.tentativa,
            "chosen_chip": ch.chosen.chip.id if ch.chosen is not None else None,
            "motivo": ch.motivo, "emergency": ch.plan.emergency, "threshold": ch.plan.threshold,
            "excluded": sorted(ch.req.exclude),
            "resultado": None if ch.chosen is not None else "no_chip",
        })[:-1] + f', "candidates": {ch.candidates_json}}}'
        for ch in choices
    )  # fmt: skip
    async with app.pool.connection() as conn:
        # A decision record, not the message: a crash may lose the last few milliseconds
        # of it, so the commit does not wait for the WAL flush (the send path's latency).
        cur = await conn.execute(
            "WITH cfg AS (SELECT set_config('synchronous_commit', 'off', true))"
            " INSERT INTO chip_selection_log (mensagem_id, tipo, telefone, conversa_id, tentativa,"
            " candidates, chosen_chip, motivo, emergency, threshold, excluded, resultado, at)"
            " SELECT (r->>'mensagem_id')::bigint, r->>'tipo', r->>'telefone',"
            " (r->>'conversa_id')::bigint, (r->>'tentativa')::smallint, r->'candidates',"
            " (r->>'chosen_chip')::bigint, r->>'motivo', (r->>'emergency')::boolean,"
            " (r->>'threshold')::smallint,"
            " ARRAY(SELECT x::bigint FROM jsonb_array_elements_text(r->'excluded') AS x),"
            " r->>'resultado', %(at)s::timestamptz"
            " FROM cfg, jsonb_array_elements(%(rows)s::jsonb) WITH ORDINALITY AS e(r, ord)"
            " ORDER BY e.ord RETURNING id",
            {"rows": f"[{rows}]", "at": now},
        )  # fmt: skip
        ids = sorted(int(r["id"]) for r in await cur.fetchall())  # the sequence's order
    assert len(ids) == len(choices)
    return ids


async def set_result(app: App, log_id: int, resultado: str) -> None:
    """Record how the send on the chosen chip ended (``sent`` or an error code)."""
    async with app.pool.connection() as conn:
        await conn.execute(
            "UPDATE chip_selection_log SET resultado = %s WHERE id = %s", (resultado, log_id)
        )


async def selection_log(
    app: App, *, mensagem_id: int | None = None, limit: int = 100
) -> list[dict[str, Any]]:
    async with app.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT * FROM chip_selection_log WHERE %(m)s::bigint IS NULL OR mensagem_id = %(m)s"
            " ORDER BY id DESC LIMIT %(limit)s",
            {"m": mensagem_id, "limit": limit},
        )
        return list(await cur.fetchall())
