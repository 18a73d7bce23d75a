"""A doctor's line straight to the agent, without WhatsApp (``julia chat``, ``julia eval``).

The line is stored like an inbound message (``instance = 'chat'``, already processed)
and as an interaction, so the turn has the same history, watermark and records as one
that came through the inbox; the reply is recorded but not queued.
"""

from __future__ import annotations

import uuid

from psycopg.types.json import Jsonb

from julia.agent.turn import Outcome, TurnInput, answer
from julia.core import phones
from julia.core.app import App

# The doctor, their active conversation, the line as a processed inbound message and as an
# interaction: one statement.
_ENSURE = """
WITH m AS (
    INSERT INTO medicos (telefone, nome, tags, created_at, updated_at)
    VALUES (%(t)s, %(nome)s, ARRAY['lead'], %(now)s, %(now)s)
    ON CONFLICT (telefone) DO UPDATE SET updated_at = EXCLUDED.updated_at
    RETURNING id
), c AS (
    INSERT INTO conversas (medico_id, status, last_message_at, created_at, updated_at)
    SELECT id, 'ativa', %(now)s, %(now)s, %(now)s FROM m
    ON CONFLICT (medico_id) WHERE status = 'ativa' DO UPDATE SET last_message_at = %(now)s
    RETURNING id, medico_id
), r AS (
    INSERT INTO mensagens_recebidas (provider, instance, provider_message_id, evento, telefone,
        conversa_key, tipo, texto, received_at, payload, status)
    VALUES ('evolution', 'chat', %(pmid)s, 'chat', %(t)s, %(t)s, 'texto', %(texto)s, %(now)s,
        %(payload)s, 'processada')
    RETURNING id
), i AS (
    INSERT INTO interacoes (conversa_id, medico_id, direcao, tipo, conteudo, provider_message_id,
        created_at)
    SELECT id, medico_id, 'entrada', 'texto', %(texto)s, %(pmid)s, %(now)s FROM c
)
SELECT c.id AS conversa_id, c.medico_id, r.id AS mensagem_id FROM c, r
"""


async def say(
    app: App, telefone: str, texto: str, *, nome: str = "Lead", queue_reply: bool = False
) -> Outcome:
    """One doctor's line answered by the agent (recorded; queued only with ``queue_reply``)."""
    phone = phones.normalize(telefone)
    now = app.clock.now()
    pmid = f"chat-{uuid.uuid4().hex[:16]}"
    async with app.pool.connection() as conn:
        cur = await conn.execute(
            _ENSURE,
            {"t": phone, "nome": nome, "now": now, "pmid": pmid, "texto": texto,
             "payload": Jsonb({})},
        )  # fmt: skip
        row = await cur.fetchone()
        assert row is not None
    inp = TurnInput(
        row["conversa_id"], row["medico_id"], phone, (row["mensagem_id"],), texto, (pmid,)
    )
    return await answer(app, inp, queue_reply=queue_reply)
