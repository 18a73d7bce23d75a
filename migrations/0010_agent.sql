-- The agent: what Júlia offered in each conversation, each turn she answered (its tool
-- calls, guardrail decisions, usage, fallbacks), her memories of a doctor, and the
-- per-conversation watermark that makes one burst get one reply.

-- The last inbound message id Júlia answered in this conversation: the reply is queued
-- only if this moves forward (compare-and-set) and nothing newer is pending.
ALTER TABLE conversas ADD COLUMN agent_watermark bigint NOT NULL DEFAULT 0;
-- Set when a turn fell back or broke a guardrail: an operator should read it.
ALTER TABLE conversas ADD COLUMN revisar boolean NOT NULL DEFAULT false;
-- The summary (conversas.resumo) covers the messages up to this one.
ALTER TABLE conversas ADD COLUMN resumo_ate timestamptz;

-- A turn the agent answered leaves 'aguardando_resposta' / 'agendado' for 'respondido'.
ALTER TABLE inbox_turnos DROP CONSTRAINT inbox_turnos_status_check;
ALTER TABLE inbox_turnos ADD CONSTRAINT inbox_turnos_status_check
    CHECK (status IN ('aguardando_resposta', 'agendado', 'parado', 'respondido'));
ALTER TABLE inbox_turnos ADD COLUMN respondido_em timestamptz;
CREATE INDEX inbox_turnos_agendado_idx ON inbox_turnos (responder_apos) WHERE status = 'agendado';

-- Every shift offered to a doctor in a conversation, as it was when offered: a
-- reservation acts only on one of these, and only if the shift did not change since.
CREATE TABLE agent_ofertas (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    conversa_id      bigint NOT NULL REFERENCES conversas (id),
    medico_id        bigint NOT NULL REFERENCES medicos (id),
    vaga_id          bigint NOT NULL REFERENCES vagas (id),
    vaga_updated_at  timestamptz NOT NULL,
    snapshot         jsonb NOT NULL,
    created_at       timestamptz NOT NULL,
    CONSTRAINT agent_ofertas_once UNIQUE (conversa_id, vaga_id)
);

-- One answered (or dropped) turn: the reply, its tool calls, guardrail decisions, usage.
CREATE TABLE agent_turnos (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    conversa_id     bigint NOT NULL REFERENCES conversas (id),
    medico_id       bigint NOT NULL REFERENCES medicos (id),
    -- The inbound message ids the turn answered (the first one keys its idempotency).
    mensagens       bigint[] NOT NULL,
    status          text NOT NULL CHECK (status IN ('respondido', 'fallback', 'humano',
                                                    'repetido', 'descartado')),
    texto           text NOT NULL DEFAULT '',
    resposta        text,
    tool_calls      jsonb NOT NULL DEFAULT '[]',
    guardrails      jsonb NOT NULL DEFAULT '[]',
    usage           jsonb NOT NULL DEFAULT '{}',
    motivo          text,
    duracao_ms      int,
    created_at      timestamptz NOT NULL
);
CREATE INDEX agent_turnos_conversa_idx ON agent_turnos (conversa_id, id DESC);

-- What Júlia chose to remember about a doctor (salvar_memoria).
CREATE TABLE agent_memorias (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    medico_id   bigint NOT NULL REFERENCES medicos (id),
    texto       text NOT NULL,
    created_at  timestamptz NOT NULL
);
CREATE INDEX agent_memorias_medico_idx ON agent_memorias (medico_id, id DESC);
