-- Guardrails (manual blocks, bypasses, consent history, forgotten doctors) and campaigns
-- (campanhas, their status transitions). fila_mensagens.campanha_id now points at a row.

-- A manual block on a doctor: no message of any kind but operator ones until lifted.
CREATE TABLE guardrail_bloqueios (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    medico_id     bigint NOT NULL REFERENCES medicos (id) ON DELETE CASCADE,
    motivo        text NOT NULL,
    operador      text NOT NULL,
    criado_em     timestamptz NOT NULL,
    removido_em   timestamptz,
    removido_por  text,
    removido_motivo text
);
-- At most one active block per doctor.
CREATE UNIQUE INDEX guardrail_bloqueios_ativo_key ON guardrail_bloqueios (medico_id)
    WHERE removido_em IS NULL;

-- Every time a rule was knowingly not applied: who, when, which rule, whom, why.
CREATE TABLE guardrail_bypasses (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    regra        text NOT NULL,
    medico_id    bigint REFERENCES medicos (id) ON DELETE SET NULL,
    campanha_id  bigint,
    operador     text NOT NULL,
    motivo       text NOT NULL,
    detalhes     jsonb NOT NULL DEFAULT '{}',
    at           timestamptz NOT NULL
);
CREATE INDEX guardrail_bypasses_at_idx ON guardrail_bypasses (at DESC);

-- Consent history of a doctor: opt-outs and renewed consents (opt-ins), with who and why.
CREATE TABLE medicos_consentimentos (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    medico_id  bigint NOT NULL REFERENCES medicos (id) ON DELETE CASCADE,
    acao       text NOT NULL CHECK (acao IN ('optout', 'optin')),
    motivo     text NOT NULL,
    operador   text NOT NULL,
    at         timestamptz NOT NULL
);
CREATE INDEX medicos_consentimentos_medico_idx ON medicos_consentimentos (medico_id, id);

-- Doctors erased under LGPD: only a keyed hash of the phone, so they are never contacted.
CREATE TABLE medicos_esquecidos (
    telefone_hash  text PRIMARY KEY,
    motivo         text NOT NULL,
    operador       text NOT NULL,
    at             timestamptz NOT NULL
);

CREATE TABLE campanhas (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    nome           text NOT NULL CHECK (nome <> ''),
    texto          text NOT NULL CHECK (texto <> ''),
    vaga_id        bigint REFERENCES vagas (id),
    segmento       jsonb NOT NULL DEFAULT '{}',
    ritmo          int NOT NULL CHECK (ritmo > 0),          -- messages per hour, in total
    janela_dias    smallint[] NOT NULL,                     -- 0 = Monday
    janela_inicio  time NOT NULL,
    janela_fim     time NOT NULL CHECK (janela_fim > janela_inicio),
    inicio         timestamptz,
    fim            timestamptz CHECK (fim IS NULL OR inicio IS NULL OR fim > inicio),
    status         text NOT NULL DEFAULT 'rascunho' CHECK (status IN
                   ('rascunho', 'agendada', 'enviando', 'pausada', 'concluida', 'cancelada')),
    status_motivo  text,
    criado_por     text NOT NULL,
    created_at     timestamptz NOT NULL,
    updated_at     timestamptz NOT NULL,
    iniciada_em    timestamptz
);
CREATE INDEX campanhas_status_idx ON campanhas (status);

CREATE TABLE campanha_transicoes (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    campanha_id  bigint NOT NULL REFERENCES campanhas (id),
    de           text NOT NULL,
    para         text NOT NULL,
    operador     text NOT NULL,
    motivo       text NOT NULL,
    at           timestamptz NOT NULL
);
CREATE INDEX campanha_transicoes_campanha_idx ON campanha_transicoes (campanha_id, id);

-- Campaign counts and the last contact of a doctor.
CREATE INDEX fila_mensagens_campanha_idx ON fila_mensagens (campanha_id, status)
    WHERE campanha_id IS NOT NULL;
CREATE INDEX fila_mensagens_medico_enviada_idx ON fila_mensagens (medico_id, enviada_em)
    WHERE enviada_em IS NOT NULL;
