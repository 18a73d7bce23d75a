"""The console as an operator meets it: answers on stdout, logs on stderr, one-line errors,
tables that keep every value, one time zone, outside text never markup, secrets masked."""

from __future__ import annotations

import asyncio
import io
import json
import re
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from pydantic import SecretStr
from shim.app import create_app

from julia.core import logs
from julia.core.app import App
from julia.core.clock import FrozenClock
from julia.settings import Settings

FIXTURES = Path(__file__).resolve().parent / "fixtures"


def ok(result: Any) -> Any:
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout) if result.stdout.strip().startswith(("{", "[")) else None


# --- stdout / stderr, verbosity, --debug, usage errors ---------------------------------


def test_answer_on_stdout_and_no_logs_by_default(cli: Any) -> None:
    r = cli("fila", "enqueue", "--telefone", "11999990001", "--texto", "Oi")
    assert r.exit_code == 0 and re.fullmatch(r"message \d+ queued \(pendente\)\n", r.stdout)
    assert r.stderr == ""  # no INFO log line before the answer


@pytest.mark.parametrize("where", ["before", "after"])
def test_verbose_shows_info_logs_on_stderr(cli: Any, where: str) -> None:
    args = ["fila", "enqueue", "--telefone", "11999990001", "--texto", "Oi"]
    r = cli(*(["-v", *args] if where == "before" else [*args, "-v"]))
    assert r.exit_code == 0 and "queued" in r.stdout
    events = [json.loads(line) for line in r.stderr.splitlines()]
    assert any(e["event"] == "fila.enqueued" and e["level"] == "info" for e in events)


@pytest.mark.parametrize("where", ["before", "after"])
def test_debug_anywhere_keeps_the_exit_code(cli: Any, where: str) -> None:
    args = ["fila", "show", "987654"]
    r = cli(*(["--debug", *args] if where == "before" else [*args, "--debug"]))
    assert r.exit_code == 4
    assert "Traceback" in r.stderr and "no message with id 987654" in r.stderr


def test_usage_error_is_one_line_with_a_hint(cli: Any) -> None:
    r = cli("fila", "enqueue", "--bogus")
    assert r.exit_code == 2
    [line] = r.stderr.strip().splitlines()
    assert "--bogus" in line and line.endswith("fila enqueue -h)") and r.stdout == ""
    r = cli("circuits", "open", "evolution")
    [line] = r.stderr.strip().splitlines()
    assert r.exit_code == 2 and "--motivo" in line and "circuits open -h" in line


def test_enqueue_file_error_offers_no_missing_option(cli: Any, tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("telefone,texto\n123,oi\n11999990001,ok\n")
    r = cli("fila", "enqueue", "--arquivo", str(bad))
    assert r.exit_code == 2 and "line 2" in r.stderr
    assert "--skip-invalid" not in r.stderr


# --- outside text is never markup ------------------------------------------------------


def test_doctor_named_like_markup_is_shown_as_text(cli: Any, tmp_path: Path) -> None:
    csv = tmp_path / "m.csv"
    csv.write_text("nome,telefone\n[/x],11999990001\n[bold]Ana[/bold],11999990002\n")
    ok(cli("medicos", "import", str(csv)))
    r = cli("medicos", "list")
    assert r.exit_code == 0, r.output
    assert "[/x]" in r.stdout and "[bold]Ana[/bold]" in r.stdout
    r = cli("fila", "enqueue", "--telefone", "11999990001", "--texto", "oi [/x] [red]")
    assert r.exit_code == 0
    assert "[/x]" in cli("fila", "list").stdout


def test_markup_in_an_option_value_is_one_plain_error_line(cli: Any) -> None:
    r = cli("fila", "list", "--status", "[/x]")
    assert r.exit_code == 2
    [line] = r.stderr.strip().splitlines()
    assert "[/x]" in line and "Traceback" not in r.stderr


def _store_webhook(settings: Settings, provider: str, body: bytes) -> int:
    async def go() -> int:
        async with App.open(settings, clock=FrozenClock()) as app:
            transport = httpx.ASGITransport(app=create_app(julia=app))
            async with httpx.AsyncClient(transport=transport, base_url="http://shim") as c:
                resp = await c.post(f"/webhooks/{provider}", content=body)
                assert resp.status_code == 200, resp.text
                return int(resp.json()["ids"][0])

    return asyncio.run(go())


def test_inbox_text_with_markup_and_show_masks_the_payload(cli: Any, settings: Settings) -> None:
    payload = json.loads((FIXTURES / "evolution_messages_upsert_text.json").read_text())
    payload["data"]["message"]["conversation"] = "Oi [/x] [bold]plantão[/bold]"
    mid = _store_webhook(settings, "evolution", json.dumps(payload).encode())
    listed = cli("inbox", "list")
    assert listed.exit_code == 0, listed.output
    assert "[/x]" in listed.stdout
    shown = cli("inbox", "show", str(mid))
    assert shown.exit_code == 0, shown.output
    assert "556481140676" not in shown.stdout and "556492469875" not in shown.stdout
    assert "493ED0BEB1A8-47F2-A6EE-731DBFDB99D2" not in shown.stdout
    assert "[/x]" in shown.stdout
    data = json.loads(cli("inbox", "show", str(mid), "--json").stdout)
    assert data["payload"]["event"] == "messages.upsert"  # the shape stays, values masked
    payload = json.dumps(data["payload"])
    assert "556481140676" not in payload and "556492469875" not in payload
    assert "493ED0BEB1A8-47F2-A6EE-731DBFDB99D2" not in payload
    assert data["telefone"] == "+5564981140676"  # --json keeps the row's own number
    with psycopg.connect(Settings.secret(settings.database_url) or "") as conn:
        row = conn.execute("SELECT payload FROM mensagens_recebidas WHERE id = %s", (mid,))
        stored = row.fetchone()
    assert stored is not None and stored[0]["apikey"] == "493ED0BEB1A8-47F2-A6EE-731DBFDB99D2"


# --- tables that keep every value, one time zone ---------------------------------------


def test_pipe_tables_keep_reasons_and_dates_whole(cli: Any) -> None:
    ok(cli("circuits", "open", "evolution", "--motivo", "manutencao-programada-do-gateway"))
    r = cli("circuits", "history", "evolution")
    assert r.exit_code == 0
    assert "manutencao-programada-do-gateway" in r.stdout and "…" not in r.stdout
    assert re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", r.stdout)
    assert "times in America/Sao_Paulo" in r.stdout


def test_times_are_business_time(cli: Any) -> None:
    r = cli("ratelimit", "override", "--telefone", "11999990001", "--motivo", "plantão",
            "--ate", "2030-12-02T18:00")  # fmt: skip
    assert r.exit_code == 0 and "until 2030-12-02 18:00:00" in r.stdout
    data = ok(cli("ratelimit", "status", "--telefone", "11999990001", "--json"))
    assert datetime.fromisoformat(data["override"]["ate"]) == datetime(2030, 12, 2, 21, tzinfo=UTC)


def test_fila_list_shows_next_due_and_show_the_whole_text(cli: Any, database_url: str) -> None:
    text = "Olá, Dra. Ana! " + "Temos um plantão no Hospital São Luiz amanhã. " * 3
    queued = ok(cli("fila", "enqueue", "--telefone", "11999990001", "--texto", text, "--json"))
    with psycopg.connect(database_url) as conn:  # business hours pushed it to 11:00 local
        conn.execute(
            "UPDATE fila_mensagens SET agendar_para = '2030-01-02 11:13+00',"
            " proxima_tentativa_em = '2030-01-02 14:00+00' WHERE id = %s",
            (queued["id"],),
        )
    listed = cli("fila", "list")
    assert "2030-01-02 11:00:00" in listed.stdout and "08:13" not in listed.stdout
    shown = cli("fila", "show", str(queued["id"]))
    assert text.strip() in shown.stdout and "…" not in shown.stdout


def test_fila_rescue_prints_counts_not_a_dict(cli: Any) -> None:
    r = cli("fila", "rescue")
    assert r.exit_code == 0 and "{" not in r.stdout and "rescued:" in r.stdout


def test_cooldown_zero_says_it_ended(cli: Any) -> None:
    chip = ok(cli("chips", "add", "--instance", "c1", "--telefone", "11988887777", "--json"))
    r = cli("chips", "cooldown", str(chip["id"]), "--minutos", "0", "--motivo", "ok")
    assert r.exit_code == 0 and "out of cooldown" in r.stdout and "until -" not in r.stdout


def test_top_once_has_no_quit_hint(cli: Any) -> None:
    r = cli("top", "--once")
    assert r.exit_code == 0 and "Júlia" in r.stdout and "to quit" not in r.stdout


def test_pool_check_counts_the_alerts_it_raised(cli: Any) -> None:
    ok(cli("chips", "add", "--instance", "c1", "--telefone", "11988887777"))
    ran = ok(cli("jobs", "run", "chips_pool_check", "--json"))
    assert ran["items"] == ran["details"]["alerts_raised"] >= 2


def test_log_values_are_iso_not_reprs(monkeypatch: pytest.MonkeyPatch) -> None:
    err = io.StringIO()
    monkeypatch.setattr(sys, "stderr", err)
    logs.configure("INFO", "json")
    logs.get_logger("t").info("t.event", retry_at=datetime(2026, 12, 1, 11, tzinfo=UTC))
    line = json.loads(err.getvalue())
    assert line["retry_at"] == "2026-12-01T11:00:00+00:00"


# --- secrets masked everywhere ----------------------------------------------------------

SECRETISH = re.compile(
    r"(^|_)(token|key|api_key|secret|password|passwd|credentials?|dsn|pepper)$"
    r"|webhook_url$|database_url$|redis_url$"
)


def _secret_fields() -> list[str]:
    return [n for n in Settings.model_fields if SECRETISH.search(n)]


def test_every_secret_like_setting_is_a_secretstr() -> None:
    names = _secret_fields()
    assert {"database_url", "slack_webhook_url", "evolution_api_key"} <= set(names)
    for name in names:
        assert "SecretStr" in str(Settings.model_fields[name].annotation), name


def test_every_secret_is_masked_in_config_show_and_info(
    cli: Any, env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Each secret gets a value whose secret part would be visible if shown unmasked.
    values: dict[str, str] = {}
    for name in _secret_fields():
        if name in ("database_url", "redis_url"):
            continue  # the test's own storage; checked through masked() below
        values[name] = (
            "https://hooks.example.com/services/T0/B0/SEKRITPART"
            if name.endswith("url")
            else "SEKRITPART-0123456789"
        )
    for name, value in values.items():
        env[f"JULIA_{name.upper()}"] = value
    for args in (["config", "show"], ["config", "show", "--json"], ["info"], ["info", "--json"]):
        r = cli(*args)
        assert r.exit_code == 0, r.output
        assert "SEKRITPART" not in r.stdout + r.stderr, args
    shown = json.loads(cli("config", "show", "--json").stdout)
    assert shown["slack_webhook_url"] == "https://hooks.example.com/****"
    direct = Settings(  # type: ignore[call-arg]
        _env_file=None,
        database_url=SecretStr("postgresql://julia:SEKRITPART@db.example.com:5432/julia"),
        redis_url=SecretStr("redis://:SEKRITPART@cache.example.com:6379/0"),
    ).masked()
    assert "SEKRITPART" not in json.dumps(direct, default=str)
    assert direct["database_url"].startswith("postgresql://julia:****@db.example.com")


def test_shim_serve_says_where_it_listens(cli: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    import uvicorn

    seen: dict[str, Any] = {}
    monkeypatch.setattr(uvicorn, "run", lambda *a, **kw: seen.update(kw))
    r = cli("shim", "serve", "--port", "8123")
    assert r.exit_code == 0 and seen["port"] == 8123
    assert "shim listening on http://127.0.0.1:8123" in r.stderr and r.stdout == ""


def test_a_terminal_table_folds_long_values_instead_of_cutting(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from rich.console import Console

    from julia_cli import render

    out = io.StringIO()
    monkeypatch.setattr(
        render, "console", Console(file=out, width=80, force_terminal=True, color_system=None)
    )
    reason = "manutencao-programada-do-gateway-evolution-na-madrugada-de-terca"
    render.table(
        [{"at": datetime(2026, 12, 1, 11, tzinfo=UTC), "reason": reason, "id": 123456789}],
        ["at", "reason", "id"],
        title="history",
    )
    text = out.getvalue()
    assert "…" not in text and "123456789" in text
    assert "2026-12-01 08:00:00" in text  # business time, labelled
    assert "times in America/Sao_Paulo" in text
    assert all(len(line) <= 80 for line in text.splitlines())
    assert "manutencao-programada-do-gateway" in text and "madrugada-de-terca" in text
