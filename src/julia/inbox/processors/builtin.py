"""The inbound processors, in the order they run (priority in brackets).

group ingestion (5) · parse (10) · presence (15) · load entities (20) · chip mapping (21)
· business events (22) · human takeover (24) · Chatwoot sync (25) · opt-out (30)
· outside business hours (32) · bot detection (35) · media (40) · long message (45)
· handoff trigger (50) · handoff keywords (55) · negative sentiment (57) · human control (60)
· agent (100)
"""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

import psycopg
from psycopg.types.json import Jsonb

from julia import handoff
from julia.core import audit, phones
from julia.core.app import App
from julia.core.logs import get_logger
from julia.domain import medicos
from julia.fila.queue import block_pending_for_medico
from julia.handoff.control import turn_lines
from julia.inbox.events import MEDIA_TIPOS
from julia.inbox.processors import media, texts
from julia.inbox.processors.agent import AgentReply
from julia.inbox.processors.base import Processor, Step, TurnContext, halt, proceed
from julia.inbox.processors.outbound import enqueue_reply, gateway_for, send_now

if TYPE_CHECKING:
    from julia.settings import Settings

log = get_logger(__name__)


async def _event(app: App, ctx: TurnContext, tipo: str, props: dict[str, Any]) -> None:
    """One business event per turn and type (the turn's first message id dedupes retries)."""
    await _events(app, ctx, [(tipo, props)])


async def _events(app: App, ctx: TurnContext, events: list[tuple[str, dict[str, Any]]]) -> None:
    """Several of the turn's business events in one insert (each deduped as in _event)."""
    async with app.pool.connection() as conn:
        await conn.execute(
            "INSERT INTO business_events (tipo, medico_id, props, dedupe_key, created_at)"
            " SELECT e.tipo, %s::bigint, e.props, e.dedupe_key, %s::timestamptz"
            " FROM unnest(%s::text[], %s::jsonb[], %s::text[]) WITH ORDINALITY"
            " AS e(tipo, props, dedupe_key, n) ORDER BY e.n ON CONFLICT (dedupe_key) DO NOTHING",
            (ctx.medico_id, app.clock.now(), [t for t, _ in events],
             [Jsonb(p) for _, p in events],
             [f"inbox:{ctx.mensagens[0].id}:{t}" for t, _ in events]),
        )  # fmt: skip


async def _hand_to_human(app: App, ctx: TurnContext, motivo: str, trigger: str) -> TurnContext:
    """Through the handoff state machine: control, Chatwoot, Slack (never silent)."""
    if ctx.conversa_id is not None:
        h = await handoff.request(
            app, conversa_id=ctx.conversa_id, reason=motivo, trigger=trigger,
            recent=turn_lines(ctx.mensagens),
        )  # fmt: skip
        ctx = ctx.note(handoff_id=h.id)
    await _event(app, ctx, "handoff", {"motivo": motivo})
    return ctx.with_(controlled_by="humano").flag("handoff")


class GroupIngestion:
    """Group messages are kept for group ingestion (shift offers) and never answered."""

    name, priority = "group_ingestion", 5

    async def process(self, app: App, ctx: TurnContext) -> Step:
        if ctx.is_group:
            return halt(ctx.flag("grupo"), "group message: stored, never answered")
        return proceed(ctx)


class Parse:
    """Merge the burst into one text; a turn of reactions only has nothing to answer."""

    name, priority = "parse", 10

    async def process(self, app: App, ctx: TurnContext) -> Step:
        doctor = ctx.from_doctor
        texto = "\n".join(m.texto.strip() for m in doctor if m.texto and m.texto.strip())
        ctx = ctx.with_(texto=texto).note(tipos=sorted({m.tipo for m in doctor}))
        if doctor and all(m.tipo == "reacao" for m in doctor):
            return halt(ctx, "only reactions")
        return proceed(ctx)


class Presence:
    """Mark the doctor's last message read and show "typing..." (best effort)."""

    name, priority = "presence", 15

    async def process(self, app: App, ctx: TurnContext) -> Step:
        doctor = ctx.from_doctor
        gateway = gateway_for(app, ctx.provider)
        if not doctor or gateway is None or ctx.instance is None:
            return proceed(ctx)
        last = doctor[-1]
        try:
            if last.remote_jid:
                await gateway.mark_read(ctx.instance, last.remote_jid, last.provider_message_id)
            if ctx.telefone:
                await gateway.send_presence(ctx.instance, phones.digits(ctx.telefone))
        except Exception as exc:  # presence is cosmetic: never fail a turn for it
            log.warning("inbox.presence_failed", provider=ctx.provider, error=type(exc).__name__)
            return proceed(ctx.note(presence="failed"))
        return proceed(ctx.note(presence="sent"))


# The doctor (created as a lead when unknown) and the active conversation (created, or
# its last_message_at moved), one statement.
_ENTITIES = """
WITH mi AS (
    INSERT INTO medicos (telefone, nome, tags, created_at, updated_at)
    VALUES (%(t)s, %(nome)s, ARRAY['lead'], %(now)s, %(now)s)
    ON CONFLICT (telefone) DO NOTHING
    RETURNING id, nome, opted_out, true AS novo
), m AS (
    SELECT * FROM mi
    UNION ALL SELECT id, nome, opted_out, false FROM medicos WHERE telefone = %(t)s
    LIMIT 1
), ci AS (
    INSERT INTO conversas (medico_id, status, last_message_at, created_at, updated_at)
    SELECT id, 'ativa', %(now)s, %(now)s, %(now)s FROM m
    ON CONFLICT (medico_id) WHERE status = 'ativa' DO NOTHING
    RETURNING id, controlled_by
), cu AS (
    UPDATE conversas c SET last_message_at = %(now)s FROM m
    WHERE c.medico_id = m.id AND c.status = 'ativa' AND NOT EXISTS (SELECT 1 FROM ci)
    RETURNING c.id, c.controlled_by
), c AS (
    SELECT * FROM ci UNION ALL SELECT * FROM cu LIMIT 1
)
SELECT m.id, m.nome, m.opted_out, m.novo, c.id AS conversa_id, c.controlled_by FROM m, c
"""


class LoadEntities:
    """The doctor (an unknown number becomes a lead) and the active conversation."""

    name, priority = "load_entities", 20

    async def process(self, app: App, ctx: TurnContext) -> Step:
        telefone = ctx.telefone
        if telefone is None:
            return halt(ctx, "no phone number (@lid sender without remoteJidAlt/senderPn)")
        if not telefone.startswith("+55") or not phones.is_valid(telefone):
            return halt(ctx, "not a Brazilian number")
        nome = next((m.push_name for m in ctx.from_doctor if m.push_name), None) or "Lead"
        now = app.clock.now()
        async with app.pool.connection() as conn:
            cur = await conn.execute(_ENTITIES, {"t": telefone, "nome": nome, "now": now})
            row = await cur.fetchone()
            assert row is not None
        return proceed(
            ctx.with_(
                medico_id=row["id"],
                medico_nome=row["nome"],
                medico_novo=row["novo"],
                opted_out=row["opted_out"],
                conversa_id=row["conversa_id"],
                controlled_by=row["controlled_by"],
            )
        )


# The chip of the instance, and the conversation moved onto it (one statement).
_CHIP = """
WITH chip AS (SELECT id FROM chips WHERE instance = %(i)s), moved AS (
    UPDATE conversas c SET chip_id = chip.id FROM chip
    WHERE c.id = %(c)s::bigint AND c.chip_id IS DISTINCT FROM chip.id
)
SELECT id FROM chip
"""


class ChipMapping:
    """Which chip (gateway instance) received the turn; the conversation keeps it."""

    name, priority = "chip_mapping", 21

    async def process(self, app: App, ctx: TurnContext) -> Step:
        if ctx.instance is None:
            return proceed(ctx)
        try:
            async with app.pool.connection() as conn:
                cur = await conn.execute(_CHIP, {"i": ctx.instance, "c": ctx.conversa_id})
                chip = await cur.fetchone()
        except psycopg.errors.UndefinedTable:  # the chips capability is not installed
            return proceed(ctx.note(chip_instance=ctx.instance))
        return proceed(
            ctx.with_(chip_id=chip["id"] if chip else None).note(chip_instance=ctx.instance)
        )


class BusinessEvents:
    """Record that the doctor wrote (and that a lead appeared)."""

    name, priority = "business_events", 22

    async def process(self, app: App, ctx: TurnContext) -> Step:
        if ctx.from_doctor and ctx.medico_id is not None:
            props = {"mensagens": len(ctx.from_doctor), "provider": ctx.provider,
                     "instance": ctx.instance, "tipos": ctx.detalhes.get("tipos", [])}  # fmt: skip
            events = [("mensagem_recebida", props)]
            if ctx.medico_novo:
                events.append(("lead_criado", {"origem": "inbound"}))
            await _events(app, ctx, events)
        return proceed(ctx)


class HumanTakeover:
    """A message typed on the chip's phone (fromMe, not sent by Júlia) pauses Júlia."""

    name, priority = "human_takeover", 24

    async def process(self, app: App, ctx: TurnContext) -> Step:
        mine = [m for m in ctx.mensagens if m.from_me]
        if not mine or ctx.conversa_id is None:
            return proceed(ctx)
        async with app.pool.connection() as conn:
            cur = await conn.execute(
                "SELECT provider_message_id FROM fila_mensagens"
                " WHERE provider_message_id = ANY(%s)",
                ([m.provider_message_id for m in mine],),
            )
            sent_by_julia = {r["provider_message_id"] for r in await cur.fetchall()}
        typed = [m for m in mine if m.provider_message_id not in sent_by_julia]
        if typed:
            await handoff.request(
                app, conversa_id=ctx.conversa_id, reason="a person typed on the chip's phone",
                trigger="chip", actor="chip", take=True, recent=turn_lines(ctx.mensagens),
            )  # fmt: skip
            await _event(app, ctx, "humano_assumiu", {"mensagens": len(typed)})
            ctx = ctx.with_(controlled_by="humano").flag("humano_assumiu")
        if not ctx.from_doctor:
            return halt(ctx, "messages typed by a human on the chip's phone")
        return proceed(ctx)


class ChatwootSync:
    """While a person is in control, mirror the doctor's messages into Chatwoot."""

    name, priority = "chatwoot_sync", 25

    async def process(self, app: App, ctx: TurnContext) -> Step:
        texts = [m.texto for m in ctx.from_doctor if m.texto and m.texto.strip()]
        if ctx.controlled_by != "humano" or ctx.conversa_id is None or not texts:
            return proceed(ctx)
        mirrored = await handoff.mirror_turn(app, ctx.conversa_id, texts)
        return proceed(ctx.note(chatwoot_mirrored=mirrored))


class OptOut:
    """Portuguese opt-out phrases: record it, block the queue, confirm once, stop."""

    name, priority = "optout", 30

    async def process(self, app: App, ctx: TurnContext) -> Step:
        if ctx.medico_id is None or ctx.telefone is None:
            return proceed(ctx)
        phrase = next(
            (p for m in ctx.from_doctor if (p := texts.optout_phrase(m.texto))), None
        ) or texts.optout_phrase(ctx.texto)
        if phrase is None:
            if ctx.opted_out:
                return halt(ctx, "doctor opted out earlier")
            return proceed(ctx)
        motivo = f"pediu pelo WhatsApp: {phrase!r}"
        await medicos.optout(app, ctx.telefone, motivo=motivo, actor=audit.AUTOMATION)

        blocked = await block_pending_for_medico(app, ctx.medico_id, "opt-out: " + motivo)
        ctx = ctx.flag("optout").note(optout_phrase=phrase, fila_bloqueadas=blocked)
        if not ctx.opted_out:  # confirm once: only the first time
            sent = await send_now(app, ctx, texts.OPTOUT_CONFIRMATION)
            ctx = ctx.with_(resposta=texts.OPTOUT_CONFIRMATION).note(confirmacao_enviada=sent)
        await _event(app, ctx, "optout", {"frase": phrase, "bloqueadas": blocked})
        return halt(ctx.with_(opted_out=True), "opt-out")


def next_opening(now: datetime, settings: Settings) -> datetime | None:
    """None inside business hours, else when they next open (UTC)."""
    tz = ZoneInfo(settings.timezone)
    local = now.astimezone(tz)
    start = time.fromisoformat(settings.business_hours_start)
    end = time.fromisoformat(settings.business_hours_end)
    days = set(settings.business_days)
    if local.weekday() in days and start <= local.time() < end:
        return None
    for offset in range(8):
        day = local.date() + timedelta(days=offset)
        opening = datetime.combine(day, start, tz)
        if day.weekday() in days and opening > local:
            return opening.astimezone(UTC)
    return None


class OutsideHours:
    """Outside business hours: acknowledge once and schedule the reply for the opening."""

    name, priority = "outside_hours", 32

    async def process(self, app: App, ctx: TurnContext) -> Step:
        opening = next_opening(app.clock.now(), app.settings)
        if opening is None or not ctx.from_doctor:
            return proceed(ctx)
        ctx = ctx.with_(responder_apos=opening)
        if ctx.controlled_by == "humano":
            return proceed(ctx)  # human control (60) stops it; no automatic ack
        async with app.pool.connection() as conn:
            cur = await conn.execute(
                "SELECT 1 FROM inbox_turnos WHERE conversa_key = %s AND status = 'agendado'"
                " AND responder_apos = %s LIMIT 1",
                (ctx.conversa_key, opening),
            )
            acked = await cur.fetchone() is not None
        if not acked:
            await enqueue_reply(app, ctx, texts.OUTSIDE_HOURS_ACK, "outside_hours")
            ctx = ctx.with_(resposta=texts.OUTSIDE_HOURS_ACK)
        return halt(ctx.flag("fora_do_horario"), "outside business hours", status="agendado")


class BotDetection:
    """Auto-replies and other bots get no answer (two bots must never chat)."""

    name, priority = "bot_detection", 35

    async def process(self, app: App, ctx: TurnContext) -> Step:
        for m in ctx.from_doctor:
            phrase = texts.bot_phrase(m.texto)
            if phrase:
                return halt(ctx.flag("bot").note(bot_phrase=phrase), "auto-reply or bot")
        return proceed(ctx)


class Media:
    """Download and keep audio, images, documents; say so when Júlia cannot read them."""

    name, priority = "media", 40

    async def process(self, app: App, ctx: TurnContext) -> Step:
        items = [m for m in ctx.from_doctor if m.tipo in MEDIA_TIPOS]
        if not items:
            return proceed(ctx)
        stored: dict[str, str | None] = {}
        async with app.pool.connection() as conn:
            cur = await conn.execute(
                "SELECT id, payload FROM mensagens_recebidas WHERE id = ANY(%s)",
                ([m.id for m in items],),
            )
            payloads = {r["id"]: r["payload"] for r in await cur.fetchall()}
        for m in items:
            try:
                data = await media.fetch(app, m, payloads.get(m.id) or {})
                stored[str(m.id)] = await media.store(app, m, data) if data else None
            except Exception as exc:  # keep going: the text of the turn still matters
                log.warning("inbox.media_failed", id=m.id, error=type(exc).__name__)
                stored[str(m.id)] = None
        ctx = ctx.flag("midia").note(midia=stored)
        if ctx.texto.strip():
            return proceed(ctx)
        tipo = items[0].tipo
        reply = texts.MEDIA_UNREADABLE.get(tipo, texts.MEDIA_UNREADABLE["imagem"])
        await enqueue_reply(app, ctx, reply, "media")
        return halt(ctx.with_(resposta=reply), f"{tipo} Júlia cannot read")


class LongMessage:
    """A very long turn is trimmed for the agent and flagged."""

    name, priority = "long_message", 45

    async def process(self, app: App, ctx: TurnContext) -> Step:
        limit = app.settings.inbox_long_message_chars
        if len(ctx.texto) <= limit:
            return proceed(ctx)
        trimmed = ctx.texto[:limit]
        return proceed(ctx.with_(texto=trimmed).flag("longa").note(tamanho=len(ctx.texto)))


class HandoffTrigger:
    """Situations a person must handle (payment problems, legal threats...)."""

    name, priority = "handoff_trigger", 50

    async def process(self, app: App, ctx: TurnContext) -> Step:
        trigger = texts.handoff_trigger(ctx.texto)
        if trigger is None:
            return proceed(ctx)
        ctx = await _hand_to_human(app, ctx, f"gatilho: {trigger}", "gatilho")
        return halt(ctx.note(handoff=trigger), "handoff trigger")


class HandoffKeywords:
    """The doctor asked for a person (``JULIA_HANDOFF_KEYWORDS``)."""

    name, priority = "handoff_keywords", 55

    async def process(self, app: App, ctx: TurnContext) -> Step:
        word = texts.keyword(ctx.texto, app.settings.handoff_keywords.split(","))
        if word is None:
            return proceed(ctx)
        ctx = await _hand_to_human(app, ctx, f"pediu: {word}", "keyword")
        return halt(ctx.note(handoff=word), "handoff keyword")


class HandoffSentiment:
    """Strong negative sentiment (``JULIA_HANDOFF_NEGATIVE_WORDS``): a person answers."""

    name, priority = "handoff_sentiment", 57

    async def process(self, app: App, ctx: TurnContext) -> Step:
        word = texts.keyword(ctx.texto, app.settings.handoff_negative_words.split(","))
        if word is None:
            return proceed(ctx)
        ctx = await _hand_to_human(app, ctx, f"sentimento negativo: {word}", "sentimento")
        return halt(ctx.note(handoff=word), "negative sentiment")


class HumanControl:
    """A human controls this conversation: Júlia stays quiet."""

    name, priority = "human_control", 60

    async def process(self, app: App, ctx: TurnContext) -> Step:
        if ctx.controlled_by == "humano":
            return halt(ctx, "a human controls the conversation")
        return proceed(ctx)


def default_processors() -> list[Processor]:
    """Every built-in processor, sorted by priority."""
    found: list[Processor] = [
        GroupIngestion(), Parse(), Presence(), LoadEntities(), ChipMapping(), BusinessEvents(),
        HumanTakeover(), ChatwootSync(), OptOut(), OutsideHours(), BotDetection(), Media(),
        LongMessage(), HandoffTrigger(), HandoffKeywords(), HandoffSentiment(), HumanControl(),
        AgentReply(),
    ]  # fmt: skip
    return sorted(found, key=lambda p: p.priority)
