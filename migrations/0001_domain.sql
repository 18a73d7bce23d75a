-- The first domain schema: doctors, shifts, conversations, interactions, events,
-- settings and the audit log. Later capabilities add their own migrations.

CREATE TABLE audit_log (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at          timestamptz NOT NULL DEFAULT now(),
    operador    text NOT NULL,
    acao        text NOT NULL,
    alvo        text,
    motivo      text,
    detalhes    jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX audit_log_at_idx ON audit_log (at DESC);
CREATE INDEX audit_log_acao_idx ON audit_log (acao, at DESC);

CREATE TABLE app_settings (
    key         text PRIMARY KEY,
    value       jsonb NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    updated_by  text
);

CREATE TABLE especialidades (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    nome        text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX especialidades_nome_key ON especialidades (lower(nome));

CREATE TABLE hospitais (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    nome        text NOT NULL,
    cidade      text,
    uf          char(2),
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX hospitais_nome_key ON hospitais (lower(nome));

CREATE TABLE medicos (
    id                bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    telefone          text NOT NULL UNIQUE CHECK (telefone ~ '^\+55[1-9][0-9]{9,10}$'),
    nome              text NOT NULL,
    crm               text,
    especialidade_id  bigint REFERENCES especialidades (id),
    uf                char(2),
    cidade            text,
    tags              text[] NOT NULL DEFAULT '{}',
    preferencias      jsonb NOT NULL DEFAULT '{}',
    id_externo        text UNIQUE,
    opted_out         boolean NOT NULL DEFAULT false,
    opted_out_em      timestamptz,
    opted_out_motivo  text,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    CHECK (NOT opted_out OR opted_out_em IS NOT NULL)
);
CREATE INDEX medicos_especialidade_idx ON medicos (especialidade_id) WHERE NOT opted_out;

CREATE TABLE vagas (
    id                bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id_externo        text UNIQUE,
    hospital_id       bigint NOT NULL REFERENCES hospitais (id),
    especialidade_id  bigint NOT NULL REFERENCES especialidades (id),
    data              date NOT NULL,
    inicio            time NOT NULL,
    fim               time NOT NULL,
    periodo           text NOT NULL CHECK (periodo IN ('manha', 'tarde', 'noite', 'diurno', 'noturno', 'integral')),
    valor             numeric(10, 2) NOT NULL CHECK (valor >= 0),
    status            text NOT NULL DEFAULT 'aberta'
                      CHECK (status IN ('aberta', 'reservada', 'confirmada', 'cancelada')),
    reservada_por     bigint REFERENCES medicos (id),
    reservada_em      timestamptz,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    CHECK ((status IN ('reservada', 'confirmada')) = (reservada_por IS NOT NULL))
);
-- Hot query: open vagas of a specialty from a date on.
CREATE INDEX vagas_abertas_idx ON vagas (especialidade_id, data) WHERE status = 'aberta';

CREATE TABLE conversas (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    medico_id       bigint NOT NULL REFERENCES medicos (id),
    chip_id         bigint,
    status          text NOT NULL DEFAULT 'ativa' CHECK (status IN ('ativa', 'encerrada')),
    controlled_by   text NOT NULL DEFAULT 'julia' CHECK (controlled_by IN ('julia', 'humano')),
    resumo          text,
    last_message_at timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);
-- Hot query: the active conversation of a doctor (at most one).
CREATE UNIQUE INDEX conversas_ativa_key ON conversas (medico_id) WHERE status = 'ativa';

-- One message of a conversation, partitioned by month of created_at.
CREATE TABLE interacoes (
    id                   bigint GENERATED ALWAYS AS IDENTITY,
    conversa_id          bigint NOT NULL,
    medico_id            bigint NOT NULL,
    direcao              text NOT NULL CHECK (direcao IN ('entrada', 'saida')),
    tipo                 text NOT NULL DEFAULT 'texto',
    conteudo             text NOT NULL DEFAULT '',
    provider_message_id  text,
    created_at           timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (id, created_at)
) PARTITION BY RANGE (created_at);
-- Hot query: the last 20 interactions of a conversation.
CREATE INDEX interacoes_conversa_idx ON interacoes (conversa_id, created_at DESC);
-- Catch-all so a row dated outside every monthly partition is never lost.
CREATE TABLE interacoes_default PARTITION OF interacoes DEFAULT;

-- Create the monthly partitions from the month of `since` for `months` months.
-- Idempotent: existing partitions are kept. Returns how many it created.
CREATE FUNCTION julia_create_interacoes_partitions(since date, months int)
RETURNS int LANGUAGE plpgsql AS $$
DECLARE
    first_day date := date_trunc('month', since)::date;
    part_start date;
    part_name text;
    created int := 0;
BEGIN
    FOR i IN 0 .. months - 1 LOOP
        part_start := (first_day + make_interval(months => i))::date;
        part_name := format('interacoes_%s', to_char(part_start, 'YYYY_MM'));
        IF to_regclass(part_name) IS NULL THEN
            EXECUTE format(
                'CREATE TABLE %I PARTITION OF interacoes FOR VALUES FROM (%L) TO (%L)',
                part_name, part_start, (part_start + interval '1 month')::date);
            created := created + 1;
        END IF;
    END LOOP;
    RETURN created;
END;
$$;

SELECT julia_create_interacoes_partitions((now() - interval '1 month')::date, 4);

CREATE TABLE business_events (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tipo        text NOT NULL,
    medico_id   bigint REFERENCES medicos (id),
    vaga_id     bigint REFERENCES vagas (id),
    props       jsonb NOT NULL DEFAULT '{}',
    dedupe_key  text UNIQUE,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX business_events_tipo_idx ON business_events (tipo, created_at DESC);
CREATE INDEX business_events_medico_idx ON business_events (medico_id, created_at DESC);
