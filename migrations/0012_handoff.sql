-- Human handoff: Júlia owns the bot/human state of a conversation; Chatwoot is told.

-- One handoff: a person was asked for (or took over) and, later, gave control back.
-- pendente (nobody picked it up) -> em_atendimento (a person answered) -> resolvido.
CREATE TABLE handoffs (
    id                        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    conversa_id               bigint NOT NULL REFERENCES conversas (id),
    medico_id                 bigint NOT NULL REFERENCES medicos (id),
    status                    text NOT NULL DEFAULT 'pendente'
                              CHECK (status IN ('pendente', 'em_atendimento', 'resolvido')),
    reason                    text NOT NULL,
    -- what started it: keyword, gatilho, agente, fallbacks, sentimento, reserva, operador, chip
    trigger                   text NOT NULL,
    actor                     text NOT NULL,
    summary                   text,
    -- Chatwoot progress (contact, conversation, history posted...), so a retry resumes.
    chatwoot                  jsonb NOT NULL DEFAULT '{}',
    chatwoot_conversation_id  bigint,
    notified_at               timestamptz,
    notify_attempts           int NOT NULL DEFAULT 0,
    notify_error              text,
    waiting_alerted_at        timestamptz,
    resolution_note           text,
    created_at                timestamptz NOT NULL,
    taken_at                  timestamptz,
    resolved_at               timestamptz,
    updated_at                timestamptz NOT NULL
);
-- At most one open handoff per conversation (the state machine relies on it).
CREATE UNIQUE INDEX handoffs_open_key ON handoffs (conversa_id) WHERE status <> 'resolvido';
CREATE INDEX handoffs_status_idx ON handoffs (status, created_at);
CREATE INDEX handoffs_chatwoot_idx ON handoffs (chatwoot_conversation_id)
    WHERE chatwoot_conversation_id IS NOT NULL;

-- Every change of a conversation's control: from, to, why, who, when.
CREATE TABLE handoff_transicoes (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    conversa_id  bigint NOT NULL REFERENCES conversas (id),
    handoff_id   bigint REFERENCES handoffs (id),
    de           text NOT NULL,
    para         text NOT NULL,
    evento       text NOT NULL,
    reason       text NOT NULL,
    actor        text NOT NULL,
    created_at   timestamptz NOT NULL
);
CREATE INDEX handoff_transicoes_conversa_idx ON handoff_transicoes (conversa_id, id);

-- Messages Júlia herself posted to Chatwoot: their message_created webhooks come back
-- and must not be taken for an operator's reply.
CREATE TABLE handoff_chatwoot_posts (
    chatwoot_message_id  bigint PRIMARY KEY,
    handoff_id           bigint NOT NULL REFERENCES handoffs (id),
    created_at           timestamptz NOT NULL
);
