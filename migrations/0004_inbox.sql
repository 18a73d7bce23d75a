-- Inbound: the durable inbox the webhook shim writes, the turns the worker makes
-- of it, delivery/read acks and gateway connection events.

-- Every inbound message (and Chatwoot event), stored before the webhook is answered.
-- (provider, provider_message_id) is the atomic dedupe: a gateway retry or a
-- duplicate delivery hits the unique key and is answered "duplicate".
CREATE TABLE mensagens_recebidas (
    id                   bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    provider             text NOT NULL CHECK (provider IN ('evolution', 'zapi', 'chatwoot')),
    instance             text,
    provider_message_id  text NOT NULL,
    evento               text NOT NULL,
    -- 'mensagem': a WhatsApp message the worker turns into turns; 'chatwoot': an
    -- operator-side event kept for the handoff capability.
    kind                 text NOT NULL DEFAULT 'mensagem' CHECK (kind IN ('mensagem', 'chatwoot')),
    telefone             text CHECK (telefone ~ '^\+[1-9][0-9]{7,14}$'),
    remote_jid           text,
    -- Messages of one conversation are processed one turn at a time, in id order.
    conversa_key         text NOT NULL,
    from_me              boolean NOT NULL DEFAULT false,
    is_group             boolean NOT NULL DEFAULT false,
    tipo                 text NOT NULL,
    texto                text,
    midia                jsonb,
    push_name            text,
    provider_ts          timestamptz,
    received_at          timestamptz NOT NULL,
    payload              jsonb NOT NULL,
    status               text NOT NULL DEFAULT 'pendente'
                         CHECK (status IN ('pendente', 'processada', 'ignorada', 'erro')),
    status_motivo        text,
    attempts             int NOT NULL DEFAULT 0,
    next_attempt_at      timestamptz,
    last_error           text,
    turno_id             bigint,
    updated_at           timestamptz,
    CONSTRAINT mensagens_recebidas_dedupe UNIQUE (provider, provider_message_id)
);
-- Hot query: conversations with pending messages (the consumer's claim).
CREATE INDEX mensagens_recebidas_pendentes_idx ON mensagens_recebidas (conversa_key, id)
    WHERE status = 'pendente' AND kind = 'mensagem';
CREATE INDEX mensagens_recebidas_status_idx ON mensagens_recebidas (status, id DESC);
CREATE INDEX mensagens_recebidas_telefone_idx ON mensagens_recebidas (telefone, id DESC);

-- One worker at a time per conversation: a lease that expires if its worker dies.
CREATE TABLE inbox_leases (
    conversa_key  text PRIMARY KEY,
    worker_id     text NOT NULL,
    expires_at    timestamptz NOT NULL
);

-- A turn: a burst of messages of one conversation, processed together.
CREATE TABLE inbox_turnos (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    conversa_key    text NOT NULL,
    medico_id       bigint REFERENCES medicos (id),
    conversa_id     bigint REFERENCES conversas (id),
    mensagens       bigint[] NOT NULL,
    texto           text NOT NULL DEFAULT '',
    -- aguardando_resposta: for the agent now; agendado: for the agent at responder_apos
    -- (outside business hours); parado: a processor stopped it (parado_por, motivo).
    status          text NOT NULL CHECK (status IN ('aguardando_resposta', 'agendado', 'parado')),
    responder_apos  timestamptz,
    parado_por      text,
    motivo          text,
    resposta        text,
    processors      text[] NOT NULL DEFAULT '{}',
    detalhes        jsonb NOT NULL DEFAULT '{}',
    worker_id       text,
    created_at      timestamptz NOT NULL
);
CREATE INDEX inbox_turnos_medico_idx ON inbox_turnos (medico_id, id DESC);
CREATE INDEX inbox_turnos_aguardando_idx ON inbox_turnos (id) WHERE status = 'aguardando_resposta';

-- Delivery / read acks of messages Júlia sent (Evolution messages.update, Z-API
-- MessageStatusCallback). provider_message_id is the id the gateway returned on send.
CREATE TABLE mensagens_acks (
    id                   bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    provider             text NOT NULL,
    instance             text,
    provider_message_id  text NOT NULL,
    status               text NOT NULL,
    remote_jid           text,
    from_me              boolean,
    at                   timestamptz NOT NULL,
    payload              jsonb NOT NULL,
    CONSTRAINT mensagens_acks_dedupe UNIQUE (provider, provider_message_id, status)
);
CREATE INDEX mensagens_acks_instance_idx ON mensagens_acks (instance, at DESC);

-- Gateway connection events (Evolution connection.update, Z-API Connected/Disconnected).
-- The chips capability reads gateway_conexoes (the latest state per instance).
CREATE TABLE gateway_conexao_eventos (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    provider       text NOT NULL,
    instance       text NOT NULL,
    state          text NOT NULL,
    status_reason  int,
    at             timestamptz NOT NULL,
    payload        jsonb NOT NULL
);
CREATE INDEX gateway_conexao_eventos_instance_idx
    ON gateway_conexao_eventos (provider, instance, id DESC);

CREATE VIEW gateway_conexoes AS
SELECT DISTINCT ON (provider, instance) provider, instance, state, status_reason, at, id AS evento_id
FROM gateway_conexao_eventos
ORDER BY provider, instance, id DESC;
