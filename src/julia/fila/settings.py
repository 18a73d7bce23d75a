"""The outbound queue and the worker that drains it.
Composed into :class:`julia.settings.Settings`."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings


class FilaSettings(BaseSettings):
    """The outbound queue and the worker that drains it."""

    fila_lease_s: float = Field(
        default=60.0, gt=0, description="How long a worker holds claimed messages (the lease)."
    )
    fila_max_tentativas: int = Field(
        default=5, ge=1, description="Send attempts of a message before it goes to the DLQ."
    )
    fila_retry_base_s: float = Field(
        default=10.0, gt=0, description="Base delay of the queue's retry backoff (full jitter)."
    )
    fila_retry_cap_s: float = Field(
        default=1800.0, gt=0, description="Longest delay between two send attempts."
    )
    fila_expire_after_h: float = Field(
        default=24.0, gt=0, description="A message pending this long past its due time expires."
    )
    fila_default_prioridade: int = Field(
        default=5, ge=0, le=10, description="Priority of a message when none is given (10 first)."
    )
    wa_check_cache_ttl_s: int = Field(
        default=7 * 86400, ge=60, description="How long a whatsappNumbers answer is cached."
    )
    worker_concurrency: int = Field(
        default=20, ge=1, description="Gateway sends one worker process runs at once."
    )
    worker_batch_size: int = Field(
        default=100, ge=1, description="Messages a worker claims in one round trip."
    )
    worker_optout_trust_s: float = Field(
        default=2.0,
        ge=0,
        description="For how long after its batch was screened a send skips the last-moment"
        " opt-out query, while the worker hears every opt-out and none came (0: always ask).",
    )
    worker_poll_interval_s: float = Field(
        default=0.5, gt=0, description="Seconds between polls when no NOTIFY arrives."
    )
    worker_grace_s: float = Field(
        default=30.0, ge=0, description="On SIGTERM, seconds in-flight sends get to finish."
    )
    worker_heartbeat_s: float = Field(
        default=10.0, gt=0, description="Seconds between worker heartbeats."
    )
    worker_heartbeat_ttl_s: int = Field(
        default=120, ge=1, description="A worker whose last beat is older than this is dead."
    )
    worker_rescue_interval_s: float = Field(
        default=30.0, gt=0, description="Seconds between the worker's expired-lease rescues."
    )
