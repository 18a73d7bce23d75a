-- Resilience: circuit breaker transitions, rate-limit overrides, and the rate-limit
-- event log that the Postgres fallback counts when Redis is down.

-- Every state change of every circuit breaker, automatic or by an operator.
CREATE TABLE circuit_transitions (
    id                    bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name                  text NOT NULL,
    from_state            text NOT NULL,
    to_state              text NOT NULL,
    reason                text NOT NULL,
    consecutive_failures  integer NOT NULL DEFAULT 0,
    error_type            text,
    operador              text,
    -- 'redis' (shared state) or 'local' (this process only, Redis was down)
    backend               text NOT NULL DEFAULT 'redis',
    at                    timestamptz NOT NULL,
    CHECK (from_state IN ('closed', 'open', 'half_open', 'forced_open', 'disabled')),
    CHECK (to_state IN ('closed', 'open', 'half_open', 'forced_open', 'disabled'))
);
CREATE INDEX circuit_transitions_name_at_idx ON circuit_transitions (name, at DESC);
CREATE INDEX circuit_transitions_at_idx ON circuit_transitions (at DESC);

-- An operator lifting one doctor's proactive limit for a while.
CREATE TABLE rate_limit_overrides (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    telefone    text NOT NULL CHECK (telefone ~ '^\+55[1-9][0-9]{9,10}$'),
    motivo      text NOT NULL CHECK (length(trim(motivo)) > 0),
    operador    text NOT NULL,
    criado_em   timestamptz NOT NULL,
    ate         timestamptz NOT NULL,
    CHECK (ate > criado_em)
);
CREATE INDEX rate_limit_overrides_telefone_idx ON rate_limit_overrides (telefone, ate DESC);

-- One row per slot taken (allowed outbound message). Written on every allowed take,
-- whichever backend decided, so the Postgres fallback can count the windows and Redis
-- can be refilled after an outage. Rows older than two days are pruned.
CREATE TABLE rate_limit_events (
    take_id     uuid PRIMARY KEY,
    at          timestamptz NOT NULL,
    tipo        text NOT NULL,
    proactive   boolean NOT NULL,
    telefone    text NOT NULL,
    chip_id     text NOT NULL,
    weight      smallint NOT NULL CHECK (weight > 0),
    -- the random gap drawn for a proactive send: the chip's next proactive is due at + gap
    gap_ms      integer NOT NULL DEFAULT 0,
    backend     text NOT NULL CHECK (backend IN ('redis', 'postgres'))
);
CREATE INDEX rate_limit_events_chip_idx ON rate_limit_events (chip_id, at DESC);
CREATE INDEX rate_limit_events_telefone_idx ON rate_limit_events (telefone, at DESC)
    WHERE proactive;
CREATE INDEX rate_limit_events_at_idx ON rate_limit_events (at);
