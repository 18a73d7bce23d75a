-- The chip pool: WhatsApp numbers hosted as gateway instances, their lifecycle,
-- trust score inputs, selection decisions, conversation migrations and the
-- doctor-chip affinity. Allowed status transitions are the table in
-- src/julia/chips/states.py; every status change is a chip_transitions row.

CREATE TABLE chips (
    id                   bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    instance             text NOT NULL UNIQUE CHECK (instance <> ''),
    telefone             text NOT NULL UNIQUE CHECK (telefone ~ '^\+[1-9][0-9]{7,14}$'),
    provider             text NOT NULL CHECK (provider IN ('evolution', 'zapi')),
    status               text NOT NULL DEFAULT 'provisioned' CHECK (status IN
                         ('provisioned', 'pending', 'warming', 'ready', 'active', 'degraded',
                          'banned', 'retired')),
    trust_score          smallint NOT NULL CHECK (trust_score BETWEEN 0 AND 100),
    trust_level          text NOT NULL CHECK (trust_level IN
                         ('verde', 'amarelo', 'laranja', 'vermelho', 'critico')),
    -- 'computed' (from chip_eventos and the inbox) or 'manual' (seeded by an operator,
    -- replaced at the next recalculation)
    trust_source         text NOT NULL DEFAULT 'computed' CHECK (trust_source IN ('computed', 'manual')),
    trust_factors        jsonb NOT NULL DEFAULT '{}',
    trust_updated_at     timestamptz NOT NULL,
    -- NULL until the first gateway sync (or connection.update) says
    connected            boolean,
    connection_state     text,
    desconectado_desde   timestamptz,
    last_sync_at         timestamptz,
    cooldown_until       timestamptz,
    cooldown_reason      text,
    warming_started_at   timestamptz,
    -- start of the gradual recovery after a restriction (403 from WhatsApp)
    restricao_em         timestamptz,
    activated_at         timestamptz,
    banned_at            timestamptz,
    retired_at           timestamptz,
    enviadas_total       bigint NOT NULL DEFAULT 0,
    erros_total          bigint NOT NULL DEFAULT 0,
    last_sent_at         timestamptz,
    last_error_at        timestamptz,
    last_error_code      text,
    created_at           timestamptz NOT NULL,
    updated_at           timestamptz NOT NULL
);
-- Hot query: the selection's candidates.
CREATE INDEX chips_status_idx ON chips (status) WHERE status IN ('active', 'ready');

-- Every status change of a chip, automatic or by an operator.
CREATE TABLE chip_transitions (
    id        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    chip_id   bigint NOT NULL REFERENCES chips (id),
    de        text,
    para      text NOT NULL,
    motivo    text NOT NULL,
    ator      text NOT NULL,
    detalhes  jsonb NOT NULL DEFAULT '{}',
    at        timestamptz NOT NULL
);
CREATE INDEX chip_transitions_chip_idx ON chip_transitions (chip_id, id DESC);

-- What happened on a chip: the trust score's inputs (with the inbox tables for replies
-- and acks), cooldowns and errors. Pruned by age; Postgres is the source of truth.
CREATE TABLE chip_eventos (
    id                   bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    chip_id              bigint NOT NULL REFERENCES chips (id),
    -- sent | send_error | cooldown | reply | ack | block
    kind                 text NOT NULL CHECK (kind IN
                         ('sent', 'send_error', 'cooldown', 'reply', 'ack', 'block')),
    code                 text,
    tipo                 text,
    proactive            boolean NOT NULL DEFAULT false,
    telefone             text,
    mensagem_id          bigint,
    provider_message_id  text,
    midia                text,
    detalhes             jsonb NOT NULL DEFAULT '{}',
    at                   timestamptz NOT NULL
);
CREATE INDEX chip_eventos_chip_idx ON chip_eventos (chip_id, kind, at DESC);
CREATE INDEX chip_eventos_pmid_idx ON chip_eventos (provider_message_id)
    WHERE provider_message_id IS NOT NULL;
CREATE INDEX chip_eventos_at_idx ON chip_eventos (at);

-- One trust computation: the score, its level and every factor, for history and "why".
CREATE TABLE chip_trust_historico (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    chip_id    bigint NOT NULL REFERENCES chips (id),
    score      smallint NOT NULL,
    level      text NOT NULL,
    factors    jsonb NOT NULL,
    inputs     jsonb NOT NULL,
    motivo     text NOT NULL,
    at         timestamptz NOT NULL
);
CREATE INDEX chip_trust_historico_chip_idx ON chip_trust_historico (chip_id, at DESC);

-- Every chip selection: the candidates and why each was kept or left out, the chip chosen
-- (NULL when none), and whether thresholds were lowered (emergency mode).
CREATE TABLE chip_selection_log (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    mensagem_id  bigint,
    tipo         text NOT NULL,
    telefone     text,
    conversa_id  bigint,
    tentativa    smallint NOT NULL DEFAULT 1,
    candidates   jsonb NOT NULL,
    chosen_chip  bigint REFERENCES chips (id),
    motivo       text NOT NULL,
    emergency    boolean NOT NULL DEFAULT false,
    threshold    smallint NOT NULL,
    excluded     bigint[] NOT NULL DEFAULT '{}',
    resultado    text,
    at           timestamptz NOT NULL
);
CREATE INDEX chip_selection_log_msg_idx ON chip_selection_log (mensagem_id, id);
CREATE INDEX chip_selection_log_at_idx ON chip_selection_log (at DESC);
-- Selections still being sent count as use of their chip (spreads a batch over the pool).
CREATE INDEX chip_selection_log_pending_idx ON chip_selection_log (chosen_chip, at)
    WHERE resultado IS NULL;

-- A conversation moved from a demoted or banned chip to another one.
CREATE TABLE chip_migrations (
    id                 bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    conversa_id        bigint NOT NULL REFERENCES conversas (id),
    medico_id          bigint NOT NULL REFERENCES medicos (id),
    from_chip          bigint NOT NULL REFERENCES chips (id),
    to_chip            bigint REFERENCES chips (id),
    motivo             text NOT NULL,
    continuacao_id     bigint,
    ator               text NOT NULL,
    at                 timestamptz NOT NULL
);
CREATE INDEX chip_migrations_conversa_idx ON chip_migrations (conversa_id, id);
CREATE INDEX chip_migrations_from_idx ON chip_migrations (from_chip, at DESC);

-- Which chip a doctor talks to, weighted by the replies it obtained.
CREATE TABLE chip_afinidade (
    medico_id   bigint NOT NULL REFERENCES medicos (id),
    chip_id     bigint NOT NULL REFERENCES chips (id),
    enviadas    int NOT NULL DEFAULT 0,
    respostas   int NOT NULL DEFAULT 0,
    last_at     timestamptz NOT NULL,
    PRIMARY KEY (medico_id, chip_id)
);
CREATE INDEX chip_afinidade_chip_idx ON chip_afinidade (chip_id);

-- A conversation belongs to the chip that talks to the doctor.
ALTER TABLE conversas
    ADD CONSTRAINT conversas_chip_fk FOREIGN KEY (chip_id) REFERENCES chips (id);
CREATE INDEX conversas_chip_idx ON conversas (chip_id) WHERE status = 'ativa';
