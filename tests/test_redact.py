from __future__ import annotations

import json

import structlog

from julia.core import logs
from julia.core.redact import mask_phone, mask_secret, mask_url
from julia.settings import Settings


def test_mask_phone() -> None:
    assert mask_phone("+5511999998888") == "5511...8888"
    assert mask_phone("5511999998888@s.whatsapp.net") == "5511...8888"
    assert mask_phone(None) == ""


def test_mask_url_hides_password_and_tokens() -> None:
    masked = mask_url(
        "postgresql://postgres.abc:s3cr3t@pooler.supabase.com:6543/postgres?sslmode=require&password=x"
    )
    assert "s3cr3t" not in masked and "password=x" not in masked
    assert masked.startswith("postgresql://postgres.abc:****@pooler.supabase.com:6543/postgres")
    assert mask_url("redis://127.0.0.1:6379/0") == "redis://127.0.0.1:6379/0"


def test_mask_secret() -> None:
    assert mask_secret("abcdefghijklmnop") == "ab****op"
    assert mask_secret("short") == "****"
    assert mask_secret("") == ""


def test_settings_masked_never_shows_secrets() -> None:
    s = Settings(
        _env_file=None,  # type: ignore[call-arg]
        database_url="postgresql://u:topsecretpw@db:5432/x",  # type: ignore[arg-type]
        redis_url="redis://:redispw123@cache:6379/0",  # type: ignore[arg-type]
    )
    dumped = json.dumps(s.masked(), default=str)
    assert "topsecretpw" not in dumped and "redispw123" not in dumped
    assert "topsecretpw" not in repr(s)


def test_logs_mask_phones_and_secrets(capsys) -> None:  # type: ignore[no-untyped-def]
    logs.configure("INFO", "json")
    logs.new_trace_id()
    structlog.get_logger("t").info(
        "medico.seen", telefone="+5511999998888", token="abcdefghijklmnop"
    )
    line = json.loads(capsys.readouterr().err.strip().splitlines()[-1])
    assert line["event"] == "medico.seen"
    assert line["telefone"] == "5511...8888"
    assert line["token"] == "ab****op"
    assert len(line["trace_id"]) == 16 and line["level"] == "info"


def test_mask_url_keeps_urls_without_secrets_as_written() -> None:
    assert mask_url("unix:///tmp/x/redis.sock") == "unix:///tmp/x/redis.sock"
    assert mask_url("postgresql://postgres:@/postgres?host=/tmp/pg") == (
        "postgresql://postgres@/postgres?host=/tmp/pg"
    )
