-- The outbound queue (fila_mensagens), its transition log, worker heartbeats and alerts.
-- Allowed transitions are the table in src/julia/fila/states.py; every status change
-- except the claim (pendente -> processando) is recorded in fila_eventos by a trigger.

CREATE TABLE fila_mensagens (
    id                    bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    medico_id             bigint REFERENCES medicos (id),
    telefone              text NOT NULL CHECK (telefone ~ '^\+55[1-9][0-9]{9,10}$'),
    conversa_id           bigint REFERENCES conversas (id),
    campanha_id           bigint,
    tipo                  text NOT NULL CHECK (tipo IN
                          ('resposta', 'followup', 'prospeccao', 'campanha', 'humano', 'sistema')),
    texto                 text NOT NULL CHECK (texto <> ''),
    prioridade            smallint NOT NULL DEFAULT 5 CHECK (prioridade BETWEEN 0 AND 10),
    agendar_para          timestamptz NOT NULL,
    status                text NOT NULL DEFAULT 'pendente' CHECK (status IN
                          ('pendente', 'processando', 'enviada', 'dlq', 'cancelada', 'bloqueada',
                           'incerta', 'expirada')),
    tentativas            int NOT NULL DEFAULT 0 CHECK (tentativas >= 0),
    max_tentativas        int NOT NULL DEFAULT 5 CHECK (max_tentativas >= 1),
    proxima_tentativa_em  timestamptz NOT NULL,
    lease_owner           text,
    lease_desde           timestamptz,
    lease_ate             timestamptz,
    send_started_at       timestamptz,
    chip_id               bigint,
    instancia             text,
    outcome               text,
    motivo                text,
    ultimo_erro           text,
    falhou_em             timestamptz,
    provider_message_id   text,
    idempotency_key       text UNIQUE,
    created_at            timestamptz NOT NULL,
    updated_at            timestamptz NOT NULL,
    enviada_em            timestamptz,
    CHECK ((status = 'processando') = (lease_owner IS NOT NULL))
);
-- Hot query: the claim (priority first, then due time) among pending messages.
CREATE INDEX fila_mensagens_due_idx ON fila_mensagens (prioridade DESC, proxima_tentativa_em)
    WHERE status = 'pendente';
-- Rescue of expired leases.
CREATE INDEX fila_mensagens_lease_idx ON fila_mensagens (lease_ate) WHERE status = 'processando';
-- Operator lists and statistics by status.
CREATE INDEX fila_mensagens_status_idx ON fila_mensagens (status, updated_at DESC);
-- Blocking a doctor's queued messages (opt-out).
CREATE INDEX fila_mensagens_medico_idx ON fila_mensagens (medico_id)
    WHERE status IN ('pendente', 'processando');
CREATE INDEX fila_mensagens_telefone_idx ON fila_mensagens (telefone);
CREATE INDEX fila_mensagens_enviada_idx ON fila_mensagens (enviada_em) WHERE enviada_em IS NOT NULL;
CREATE INDEX fila_mensagens_falhou_idx ON fila_mensagens (falhou_em) WHERE falhou_em IS NOT NULL;

CREATE TABLE fila_eventos (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    mensagem_id  bigint NOT NULL REFERENCES fila_mensagens (id) ON DELETE CASCADE,
    de           text NOT NULL,
    para         text NOT NULL,
    outcome      text,
    motivo       text,
    worker       text,
    at           timestamptz NOT NULL
);
CREATE INDEX fila_eventos_mensagem_idx ON fila_eventos (mensagem_id, id);

CREATE FUNCTION julia_fila_record_transition() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO fila_eventos (mensagem_id, de, para, outcome, motivo, worker, at)
    VALUES (NEW.id, OLD.status, NEW.status, NEW.outcome, NEW.motivo,
            COALESCE(NEW.lease_owner, OLD.lease_owner), NEW.updated_at);
    RETURN NULL;
END;
$$;

CREATE TRIGGER fila_mensagens_transition AFTER UPDATE OF status ON fila_mensagens
    FOR EACH ROW
    WHEN (OLD.status IS DISTINCT FROM NEW.status
          AND NOT (OLD.status = 'pendente' AND NEW.status = 'processando'))
    EXECUTE FUNCTION julia_fila_record_transition();

-- Live processes: one row per worker, beaten every few seconds (Redis holds the TTL copy).
CREATE TABLE workers (
    id            text PRIMARY KEY,
    hostname      text NOT NULL,
    pid           int NOT NULL,
    consumers     text[] NOT NULL DEFAULT '{}',
    concurrency   int,
    started_at    timestamptz NOT NULL,
    last_beat_at  timestamptz NOT NULL,
    stopped_at    timestamptz,
    processed     bigint NOT NULL DEFAULT 0,
    failed        bigint NOT NULL DEFAULT 0,
    details       jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX workers_last_beat_idx ON workers (last_beat_at DESC);

-- Structured alert records (the DLQ raises one; Operations reuses the table).
CREATE TABLE alerts (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind        text NOT NULL,
    severity    text NOT NULL CHECK (severity IN ('info', 'warning', 'critical')),
    message     text NOT NULL,
    details     jsonb NOT NULL DEFAULT '{}',
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX alerts_created_idx ON alerts (created_at DESC);
CREATE INDEX alerts_kind_idx ON alerts (kind, created_at DESC);
