"""Group commit for the inbox: concurrent webhooks share one INSERT and one commit.

Every request still waits until its own row is committed before it is answered
(nothing is acknowledged that is not durable). What changes is that the messages
arriving while a write is in flight are written together by the next one:

    INSERT INTO mensagens_recebidas (...) SELECT ... FROM unnest(...) WITH ORDINALITY
    ORDER BY ord ON CONFLICT (provider, provider_message_id) DO NOTHING RETURNING ...

A lone request is written in the next loop iteration (no added wait); under load
batches form by themselves, so Postgres sees one statement and one WAL flush per
batch instead of per webhook. Rows are inserted in arrival order. Within a batch
the first copy of a duplicated message wins and the others are duplicates, exactly
as if they had been separate statements.

A batch that Postgres rejects as a whole because of one row (a body with ``\\u0000``,
which ``jsonb`` cannot hold; a value a CHECK refuses; a value too long for an index) is
retried row by row, so one bad body fails only its own request, as a 400.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import psycopg

from julia.core.app import App
from julia.core.errors import InvalidPayload
from julia.core.logs import trace_id_var
from julia.inbox.events import InboundMessage

#: What Postgres raises for a row it will not hold (not for a storage outage).
UNSTORABLE: tuple[type[Exception], ...] = (
    psycopg.DataError,
    psycopg.IntegrityError,
    psycopg.errors.ProgramLimitExceeded,
    ValueError,
)
#: Writes in flight at once (each holds one pool connection).
MAX_IN_FLIGHT = 4
#: Largest batch one statement writes.
MAX_BATCH = 500

_COLUMNS = (
    "provider, instance, provider_message_id, evento, kind, telefone, remote_jid, conversa_key,"
    " from_me, is_group, tipo, texto, midia, push_name, provider_ts, received_at, payload,"
    " trace_id"
)
# %b: arrays travel in binary (psycopg's C dumpers), far cheaper than quoting text.
_BATCH = f"""
INSERT INTO mensagens_recebidas ({_COLUMNS})
SELECT {_COLUMNS.replace("midia", "midia::jsonb").replace("payload", "payload::jsonb")}
FROM unnest(%b::text[], %b::text[], %b::text[], %b::text[], %b::text[], %b::text[], %b::text[],
            %b::text[], %b::bool[], %b::bool[], %b::text[], %b::text[], %b::text[], %b::text[],
            %b::timestamptz[], %b::timestamptz[], %b::text[], %b::text[])
     WITH ORDINALITY AS u({_COLUMNS}, ord)
ORDER BY ord
ON CONFLICT (provider, provider_message_id) DO NOTHING
RETURNING id, provider, provider_message_id
"""
_ONE = f"""
INSERT INTO mensagens_recebidas ({_COLUMNS})
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s::jsonb, %s, %s, %s, %s::jsonb, %s)
ON CONFLICT (provider, provider_message_id) DO NOTHING
RETURNING id
"""

Row = tuple[Any, ...]


def row_of(ev: InboundMessage, now: datetime, raw: str) -> Row:
    """The row of one message, with the trace id of the request that brought it."""
    return (
        ev.provider, ev.instance, ev.provider_message_id, ev.evento, ev.kind, ev.telefone,
        ev.remote_jid, ev.conversa_key, ev.from_me, ev.is_group, ev.tipo, ev.texto,
        json.dumps(ev.midia) if ev.midia is not None else None, ev.push_name, ev.provider_ts,
        now, raw, trace_id_var.get(),
    )  # fmt: skip


class InboxWriter:
    """One per App (``app.extensions["inbox_writer"]``); see the module docstring."""

    def __init__(self, app: App) -> None:
        self.app = app
        self.pending: list[tuple[Row, asyncio.Future[int | None]]] = []
        self.in_flight = 0
        self.scheduled = False
        self.tasks: set[asyncio.Task[None]] = set()

    @classmethod
    def of(cls, app: App) -> InboxWriter:
        writer = app.extensions.get("inbox_writer")
        if writer is None:
            writer = app.extensions["inbox_writer"] = cls(app)
        assert isinstance(writer, InboxWriter)
        return writer

    async def insert(self, row: Row) -> int | None:
        """The new row's id once committed, or None when the message was already stored."""
        future: asyncio.Future[int | None] = asyncio.get_running_loop().create_future()
        self.pending.append((row, future))
        self._kick()
        return await future

    def _kick(self) -> None:
        if self.pending and not self.scheduled and self.in_flight < MAX_IN_FLIGHT:
            self.scheduled = True
            asyncio.get_running_loop().call_soon(self._start)

    def _start(self) -> None:
        self.scheduled = False
        if not self.pending or self.in_flight >= MAX_IN_FLIGHT:
            return
        batch, self.pending = self.pending[:MAX_BATCH], self.pending[MAX_BATCH:]
        self.in_flight += 1
        task = asyncio.get_running_loop().create_task(self._flush(batch))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        self._kick()

    async def _flush(self, batch: list[tuple[Row, asyncio.Future[int | None]]]) -> None:
        try:
            try:
                results: Sequence[int | BaseException | None] = await self._write(
                    [r for r, _ in batch]
                )
            except UNSTORABLE:
                results = await self._one_by_one([r for r, _ in batch])
            except BaseException as exc:
                results = [exc] * len(batch)
            for (_, future), result in zip(batch, results, strict=True):
                if future.done():  # the request went away (client disconnected)
                    continue
                if isinstance(result, BaseException):
                    future.set_exception(result)
                else:
                    future.set_result(result)
        finally:
            self.in_flight -= 1
            self._kick()

    async def _write(self, rows: list[Row]) -> list[int | None]:
        columns = [list(c) for c in zip(*rows, strict=True)]
        async with self.app.pool.connection() as conn:
            cur = await conn.execute(_BATCH, columns)
            stored = {
                (r["provider"], r["provider_message_id"]): r["id"] for r in await cur.fetchall()
            }
        out: list[int | None] = []
        for row in rows:  # the first copy of a key gets the id; later copies are duplicates
            out.append(stored.pop((row[0], row[2]), None))
        return out

    async def _one_by_one(self, rows: list[Row]) -> list[int | BaseException | None]:
        out: list[int | BaseException | None] = []
        async with self.app.pool.connection() as conn:
            for row in rows:
                try:
                    cur = await conn.execute(_ONE, row)
                    found = await cur.fetchone()
                    out.append(found["id"] if found else None)
                except UNSTORABLE as exc:
                    out.append(InvalidPayload(f"payload cannot be stored: {type(exc).__name__}"))
        return out
