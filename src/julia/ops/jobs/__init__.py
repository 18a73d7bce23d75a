"""Scheduled jobs: a registry of what runs when, a runner that records every run, and
the scheduler that fires them (``julia scheduler``, ``julia jobs list|run``).

- :mod:`julia.ops.jobs.registry`: ``Job``, the schedules ``Every`` and ``At``, ``@job``.
- :mod:`julia.ops.catalog`: the jobs Júlia runs (importing it registers them).
- :mod:`julia.ops.jobs.runner`: ``run_job`` (lock, once per tick, a ``job_executions`` row),
  ``list_jobs``, ``late_jobs``.
- :mod:`julia.ops.scheduler`: ``run_scheduler`` (APScheduler, America/Sao_Paulo).

See docs/operations.md.
"""
