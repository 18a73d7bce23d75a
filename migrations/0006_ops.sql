-- Operations: scheduled job runs, metrics snapshots, and what alerts need beyond
-- the table the queue created (dedupe key, repeats, Slack delivery state).

-- Every run of a scheduled job, by the scheduler or by hand (`julia jobs run`).
-- `tick` is the scheduled fire time the run belongs to (NULL for a manual run):
-- the unique index makes "once per tick" hold across any number of schedulers,
-- on top of the distributed lock each run takes.
CREATE TABLE job_executions (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    job          text NOT NULL,
    tick         timestamptz,
    trigger      text NOT NULL CHECK (trigger IN ('schedule', 'manual')),
    status       text NOT NULL CHECK (status IN ('running', 'ok', 'error')),
    started_at   timestamptz NOT NULL,
    finished_at  timestamptz,
    items        integer,
    error        text,
    details      jsonb NOT NULL DEFAULT '{}',
    runner       text NOT NULL,
    CHECK ((status = 'running') = (finished_at IS NULL))
);
CREATE UNIQUE INDEX job_executions_tick_key ON job_executions (job, tick) WHERE tick IS NOT NULL;
-- Hot query: the last run of each job (jobs list, late-job check).
CREATE INDEX job_executions_job_idx ON job_executions (job, started_at DESC);
CREATE INDEX job_executions_started_idx ON job_executions (started_at);

-- A picture of the system every few minutes (queue depth, throughput, workers, chips,
-- circuits); kept for JULIA_METRICS_SNAPSHOT_RETENTION_DAYS (7) days.
CREATE TABLE metrics_snapshots (
    id        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    taken_at  timestamptz NOT NULL,
    data      jsonb NOT NULL
);
CREATE INDEX metrics_snapshots_taken_idx ON metrics_snapshots (taken_at DESC);

-- Alerts: deduplicated by (kind, dedupe_key) within a cooldown; a repeat inside the
-- cooldown bumps `repeats` and `last_seen_at` instead of adding a row. Slack delivery
-- happens after the row is written and records its outcome here.
ALTER TABLE alerts
    ADD COLUMN dedupe_key        text NOT NULL DEFAULT '',
    ADD COLUMN repeats           integer NOT NULL DEFAULT 0,
    ADD COLUMN last_seen_at      timestamptz,
    ADD COLUMN notified_at       timestamptz,
    ADD COLUMN notify_attempts   integer NOT NULL DEFAULT 0,
    ADD COLUMN notify_error      text;
CREATE INDEX alerts_dedupe_idx ON alerts (kind, dedupe_key, created_at DESC);
-- Alerts whose Slack delivery failed, retried by the scheduler's watchdog.
CREATE INDEX alerts_unnotified_idx ON alerts (created_at) WHERE notified_at IS NULL;
