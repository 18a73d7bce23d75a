-- What the running schedulers schedule: each scheduler records its jobs when it
-- starts, so late-job checks and `julia health` judge what really runs, not the
-- registry and JULIA_JOBS_DISABLED of whichever shell asks.
CREATE TABLE job_schedules (
    job          text PRIMARY KEY,
    description  text NOT NULL,
    schedule     text NOT NULL,
    period_s     double precision NOT NULL CHECK (period_s > 0),
    disabled     boolean NOT NULL DEFAULT false,
    scheduler    text NOT NULL,
    recorded_at  timestamptz NOT NULL DEFAULT now()
);
