"""The inbox: every inbound event stored before the webhook is answered, once.

``accept`` is the shim's whole job after authentication and parsing. A message is
written by ``INSERT ... ON CONFLICT DO NOTHING RETURNING`` on the unique
(provider, provider_message_id), group-committed with the other webhooks in flight
(:mod:`julia.inbox.writer`): concurrent deliveries of the same message race on that
key and exactly one wins; the others are answered ``duplicate``. Redis is
not on this path, so the inbox keeps accepting while Redis is down.

Message status is a small state machine (:data:`TRANSITIONS`); the worker moves
rows out of ``pendente``, an operator moves them back with :func:`replay`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from julia.core import audit
from julia.core.app import App
from julia.core.errors import Conflict, InvalidInput, InvalidPayload, NotFound
from julia.core.logs import get_logger
from julia.inbox.events import Ack, Event, Ignored, InboundMessage
from julia.inbox.writer import UNSTORABLE, InboxWriter, row_of

log = get_logger(__name__)

STATUSES = ("pendente", "processada", "ignorada", "erro")
#: Allowed status changes of an inbox row: from → {to}.
TRANSITIONS: dict[str, frozenset[str]] = {
    "pendente": frozenset({"processada", "ignorada", "erro"}),
    "erro": frozenset({"pendente"}),
    "processada": frozenset({"pendente"}),
    "ignorada": frozenset({"pendente"}),
}

_INSERT_ACK = """
INSERT INTO mensagens_acks (provider, instance, provider_message_id, status, remote_jid, from_me,
    at, payload)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s::jsonb)
ON CONFLICT (provider, provider_message_id, status) DO NOTHING
RETURNING id
"""
_INSERT_CONNECTION = """
INSERT INTO gateway_conexao_eventos (provider, instance, state, status_reason, at, payload)
VALUES (%s, %s, %s, %s, %s, %s::jsonb)
RETURNING id
"""


@dataclass
class AcceptResult:
    """What the shim answers: ``accepted`` (stored) or ``ignored`` with a reason."""

    status: str
    reason: str | None = None
    stored: list[int] = field(default_factory=list)
    duplicates: int = 0

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"status": self.status}
        if self.reason:
            out["reason"] = self.reason
        if self.stored:
            out["ids"] = self.stored
        return out


async def accept(app: App, events: list[Event], raw: str) -> AcceptResult:
    """Store the events of one webhook; duplicates and unused events are ``ignored``.

    ``raw`` is the body as received (valid JSON), kept as the row's payload.
    """
    result = AcceptResult(status="ignored")
    stored_any = False
    ignored_reason: str | None = None
    now = app.clock.now()
    writer = InboxWriter.of(app)
    try:
        for ev in events:
            if isinstance(ev, InboundMessage):
                new_id = await writer.insert(row_of(ev, now, raw))
                if new_id is None:
                    result.duplicates += 1
                else:
                    stored_any = True
                    result.stored.append(new_id)
                continue
            if isinstance(ev, Ignored):
                ignored_reason = ignored_reason or ev.reason
                continue
            async with app.pool.connection() as conn:
                if isinstance(ev, Ack):
                    cur = await conn.execute(
                        _INSERT_ACK,
                        (ev.provider, ev.instance, ev.provider_message_id, ev.status,
                         ev.remote_jid, ev.from_me, now, raw),
                    )  # fmt: skip
                else:
                    cur = await conn.execute(
                        _INSERT_CONNECTION,
                        (ev.provider, ev.instance, ev.state, ev.status_reason, now, raw),
                    )
                row = await cur.fetchone()
            if row is None:
                result.duplicates += 1
            else:
                stored_any = True
    except UNSTORABLE as exc:
        # e.g. \u0000 in the JSON, which jsonb and text cannot hold.
        raise InvalidPayload(f"payload cannot be stored: {type(exc).__name__}") from None
    if stored_any:
        result.status = "accepted"
    elif result.duplicates:
        result.reason = "duplicate"
    else:
        result.reason = ignored_reason or "nothing to store"
    return result


# --- reading and operator actions ---------------------------------------------


@dataclass(frozen=True)
class InboxRow:
    """One stored inbound message, as operators see it."""

    id: int
    provider: str
    instance: str | None
    provider_message_id: str
    evento: str
    kind: str
    telefone: str | None
    remote_jid: str | None
    conversa_key: str
    from_me: bool
    is_group: bool
    tipo: str
    texto: str | None
    midia: dict[str, Any] | None
    push_name: str | None
    provider_ts: datetime | None
    received_at: datetime
    status: str
    status_motivo: str | None
    attempts: int
    next_attempt_at: datetime | None
    last_error: str | None
    turno_id: int | None
    #: The webhook request's trace, carried on to the turn and its replies.
    trace_id: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


_COLUMNS = ", ".join(InboxRow.__dataclass_fields__)


async def list_inbox(
    app: App, *, status: str | None = None, limit: int = 50, telefone: str | None = None
) -> list[InboxRow]:
    """Stored inbound messages, newest first."""
    if status is not None and status not in STATUSES:
        raise InvalidInput(f"unknown status {status!r}; one of {', '.join(STATUSES)}")
    async with app.pool.connection() as conn:
        cur = await conn.execute(
            f"SELECT {_COLUMNS} FROM mensagens_recebidas"
            " WHERE (%(s)s::text IS NULL OR status = %(s)s)"
            " AND (%(t)s::text IS NULL OR telefone = %(t)s)"
            " ORDER BY id DESC LIMIT %(limit)s",
            {"s": status, "t": telefone, "limit": limit},
        )
        return [InboxRow(**r) for r in await cur.fetchall()]


async def get(app: App, message_id: int, *, with_payload: bool = False) -> dict[str, Any]:
    """One inbox row (and its raw payload when asked)."""
    cols = _COLUMNS + (", payload" if with_payload else "")
    async with app.pool.connection() as conn:
        cur = await conn.execute(
            f"SELECT {cols} FROM mensagens_recebidas WHERE id = %s", (message_id,)
        )
        row = await cur.fetchone()
    if row is None:
        raise NotFound(f"no inbox message {message_id}")
    return dict(row)


async def replay(
    app: App, message_id: int, *, actor: audit.Actor | None = None, motivo: str = "replay"
) -> InboxRow:
    """Put a parked (erro), ignored or processed message back in the queue."""
    now = app.clock.now()
    async with app.pool.connection() as conn, conn.transaction():
        cur = await conn.execute(
            "SELECT status FROM mensagens_recebidas WHERE id = %s FOR UPDATE", (message_id,)
        )
        row = await cur.fetchone()
        if row is None:
            raise NotFound(f"no inbox message {message_id}")
        if "pendente" not in TRANSITIONS[row["status"]]:
            raise Conflict(f"inbox message {message_id} is already {row['status']}")
        await conn.execute(
            "UPDATE mensagens_recebidas SET status = 'pendente', status_motivo = %s,"
            " attempts = 0, next_attempt_at = NULL, turno_id = NULL, updated_at = %s"
            " WHERE id = %s",
            (motivo, now, message_id),
        )
        await audit.record(
            conn,
            now,
            actor or audit.Actor.of(app),
            "inbox.replay",
            alvo=str(message_id),
            motivo=motivo,
            detalhes={"from": row["status"]},
        )
    log.info("inbox.replayed", id=message_id, previous=row["status"])
    return InboxRow(**{k: v for k, v in (await get(app, message_id)).items()})


async def turns_awaiting_reply(app: App, *, limit: int = 50) -> list[dict[str, Any]]:
    """Turns the agent should answer now: ``aguardando_resposta``, and ``agendado`` ones
    whose ``responder_apos`` (the next business opening) has come. Oldest first."""
    async with app.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT id, conversa_key, medico_id, conversa_id, mensagens, texto, status,"
            " responder_apos, detalhes, created_at FROM inbox_turnos"
            " WHERE status = 'aguardando_resposta'"
            " OR (status = 'agendado' AND responder_apos <= %s)"
            " ORDER BY id LIMIT %s",
            (app.clock.now(), limit),
        )
        return list(await cur.fetchall())
