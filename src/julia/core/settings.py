"""Every knob Júlia has, in one pydantic-settings class (env prefix ``JULIA_``).

Each field carries its default from the requirements and a one-line
``description``; ``julia config show`` prints the effective values, secrets
masked, and a test fails on a field without a description.
"""

from __future__ import annotations

import getpass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from julia.core.redact import mask_secret, mask_url


def _default_home() -> Path:
    return Path.home() / ".local" / "share" / "julia"


def _default_operator() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no passwd entry (containers): still name someone
        return "unknown"


class CoreSettings(BaseSettings):
    """The foundation's knobs: storage, HTTP, operator, time zone, logs, migrations."""

    model_config = SettingsConfigDict(
        env_prefix="JULIA_",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        validate_default=True,
    )

    home: Path = Field(
        default_factory=_default_home,
        description="Folder for the embedded servers' data and other local state.",
    )
    database_url: SecretStr | None = Field(
        default=None,
        description="PostgreSQL 14+ URL (Supabase works); unset starts the embedded server.",
    )
    redis_url: SecretStr | None = Field(
        default=None, description="Redis URL; unset starts the embedded server."
    )
    redis_namespace: str = Field(
        default="julia", description="Prefix of every Redis key this deployment writes."
    )
    db_prepared_statements: bool = Field(
        default=True,
        description="Server-side prepared statements; turn off behind a transaction pooler.",
    )
    db_pool_min: int = Field(default=1, ge=0, description="Minimum Postgres pool connections.")
    db_pool_max: int = Field(default=10, ge=1, description="Maximum Postgres pool connections.")
    db_connect_timeout_s: float = Field(
        default=10.0, gt=0, description="Seconds to wait for a Postgres connection."
    )
    db_acquire_timeout_s: float = Field(
        default=5.0, gt=0, description="Seconds a caller waits for a free pool connection."
    )
    db_statement_timeout_s: float = Field(
        default=30.0,
        ge=0,
        description="Postgres statement_timeout of pool connections, in seconds (0: none).",
    )
    http_connect_timeout_s: float = Field(
        default=5.0, gt=0, description="Connect timeout of the shared HTTP client."
    )
    http_read_timeout_s: float = Field(
        default=15.0, gt=0, description="Read timeout of the shared HTTP client."
    )
    http_max_connections: int = Field(
        default=100, ge=1, description="Connection pool size of the shared HTTP client."
    )
    operator: str = Field(
        default_factory=_default_operator,
        description="Who is acting, recorded in the audit log (default: the OS user).",
    )
    timezone: str = Field(
        default="America/Sao_Paulo", description="Business time zone for hours and schedules."
    )
    log_level: str = Field(default="INFO", description="Log level: DEBUG, INFO, WARNING, ERROR.")
    log_format: str = Field(
        default="auto", description="Log format: json, console, or auto (json when not a tty)."
    )
    migrations_dir: Path | None = Field(
        default=None, description="Folder of NNNN_name.sql migrations (default: the bundled ones)."
    )

    def masked(self) -> dict[str, Any]:
        """Effective values as plain data, secrets and URL passwords masked."""

        out: dict[str, Any] = {}
        for name in type(self).model_fields:
            value = getattr(self, name)
            if isinstance(value, SecretStr):
                value = mask_secret_setting(value.get_secret_value())
            elif isinstance(value, Path):
                value = str(value)
            out[name] = value
        return out

    @staticmethod
    def secret(value: SecretStr | None) -> str | None:
        return secret(value)


def mask_secret_setting(raw: str) -> str:
    """A secret setting for display: a URL keeps its scheme and host (and a database's
    name) but not its password; an http(s) URL's path is the secret (a Slack webhook),
    so it goes too; anything else shows only that it is set."""
    if "://" not in raw:
        return mask_secret(raw)
    parts = urlsplit(raw)
    if parts.scheme in ("http", "https"):
        return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}/****"
    return mask_url(raw)


def secret(value: SecretStr | None) -> str | None:
    """A secret setting's text (None when unset): the one place a secret is revealed."""
    return value.get_secret_value() if value is not None else None
