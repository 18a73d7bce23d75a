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


def test_mask_text_masks_phones_and_secrets_by_pattern() -> None:
    from julia.core.redact import mask_text

    evolution_400 = (
        '{"status":400,"response":{"message":[{"exists":false,'
        '"jid":"5511987654321@s.whatsapp.net","number":"5511987654321"}]}}'
    )
    masked = mask_text(evolution_400)
    assert "987654321" not in masked and "5511...4321@s.whatsapp.net" in masked
    for text, secret in [
        ("ligar para (11) 98765-4321", "98765-4321"),
        ("+55 11 98765 4321", "98765 4321"),
        ("POST https://hooks.slack.com/services/T00/B00/abcdefXYZ failed", "abcdefXYZ"),
        ("Authorization: Bearer abcdef0123456789", "abcdef0123456789"),
        ("url?apikey=ABCDEF123456&x=1", "ABCDEF123456"),
        ("postgresql://u:hunter2pw@db/x", "hunter2pw"),
        ("jwt eyJhbGciOiJIUzI1NiJ9.eyJleHAiOjF9.c2ln", "eyJleHAiOjF9"),
    ]:
        assert secret not in mask_text(text), text
    kept = "chip 12 line 7 at 2026-01-05 13:00:00 trust 0.98"
    assert mask_text(kept) == kept


def test_every_string_of_a_log_line_is_masked(capsys) -> None:  # type: ignore[no-untyped-def]
    """The worker's fila.send_failed carried the number inside ``error`` (issue 12, item 11)."""
    logs.configure("INFO", "json")
    structlog.get_logger("t").warning(
        "fila.send_failed",
        telefone="+5511987654321",
        error='EvolutionError: 400 {"number":"5511987654321","jid":"5511987654321@s.whatsapp.net"}',
        detail={"nested": ["slack https://hooks.slack.com/services/T/B/secretpath"]},
    )
    out = capsys.readouterr().err
    assert "987654321" not in out and "secretpath" not in out
    line = json.loads(out.strip().splitlines()[-1])
    assert line["event"] == "fila.send_failed" and "5511...4321" in line["error"]


def test_error_messages_are_masked() -> None:
    from julia.core.errors import JuliaError

    err = JuliaError("gateway said: number 5511987654321 does not exist (apikey=abcdef12345)")
    assert "987654321" not in str(err) and "abcdef12345" not in err.message


def test_digits_inside_a_hex_id_are_not_a_phone() -> None:
    from julia.core.redact import mask_text

    assert mask_text("trace 412681234567b45e8 ok") == "trace 412681234567b45e8 ok"
    assert mask_text("trace b45e84126812345678 ok") == "trace b45e84126812345678 ok"
    assert "99999" not in mask_text("to 5511999998888@s.whatsapp.net")
    assert "99999" not in mask_text("phone=5511999998888, sent")
