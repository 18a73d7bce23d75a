"""``julia fila`` and ``julia worker status`` through the CLI runner, on the real database."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import psycopg
import pytest


def count(database_url: str, where: str = "true") -> int:
    with psycopg.connect(database_url) as conn:
        row = conn.execute(f"SELECT count(*) FROM fila_mensagens WHERE {where}").fetchone()
    assert row is not None
    return int(row[0])


def ok(result: Any) -> Any:
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout) if result.stdout.strip().startswith(("{", "[")) else None


def test_enqueue_list_show_status_cancel(cli: Any, database_url: str) -> None:
    queued = ok(cli("fila", "enqueue", "--telefone", "(11) 99999-0001", "--texto", "Oi, Dra.",
                    "--prioridade", "8", "--idempotency-key", "op-1", "--json"))  # fmt: skip
    assert queued["created"] and queued["status"] == "pendente"
    again = ok(cli("fila", "enqueue", "--telefone", "11999990001", "--texto", "Oi",
                   "--idempotency-key", "op-1", "--json"))  # fmt: skip
    assert again == queued | {"created": False}
    later = ok(cli("fila", "enqueue", "--telefone", "11999990002", "--texto", "Amanhã",
                   "--agendar-para", "2030-01-02T09:30", "--json"))  # fmt: skip
    [shown] = [ok(cli("fila", "show", str(queued["id"]), "--json"))]
    assert shown["telefone"] == "+5511999990001" and shown["prioridade"] == 8
    assert shown["tipo"] == "humano" and shown["history"] == []
    sched = ok(cli("fila", "show", str(later["id"]), "--json"))
    assert sched["agendar_para"].startswith("2030-01-02T12:30")  # 09:30 in São Paulo
    rows = ok(cli("fila", "list", "--status", "pendente", "--json"))
    assert {r["id"] for r in rows} == {queued["id"], later["id"]}
    st = ok(cli("fila", "status", "--json"))
    for s in ("pendente", "processando", "enviada", "dlq", "cancelada", "bloqueada", "incerta",
              "expirada"):  # fmt: skip
        assert s in st
    assert st["pendente"] == 2 and "oldest_pending_age_s" in st
    cancelled = ok(cli("fila", "cancel", str(later["id"]), "--motivo", "engano", "--json"))
    assert cancelled["status"] == "cancelada"
    shown = ok(cli("fila", "show", str(later["id"]), "--json"))
    assert [(h["de"], h["para"]) for h in shown["history"]] == [("pendente", "cancelada")]
    assert cli("fila", "status").exit_code == 0
    assert cli("fila", "list").exit_code == 0
    assert cli("fila", "show", str(queued["id"])).exit_code == 0


@pytest.mark.parametrize(
    ("args", "code", "text"),
    [
        (["fila", "show", "987654"], 4, "no message with id 987654"),
        (["fila", "cancel", "987654"], 4, "no message with id 987654"),
        (["fila", "dlq", "replay", "987654"], 4, "no message with id 987654"),
        (["fila", "enqueue", "--telefone", "12345", "--texto", "x"], 2, "invalid phone"),
        (["fila", "enqueue", "--telefone", "+1 415 555 0100", "--texto", "x"], 2, "invalid phone"),
        (
            [
                "fila",
                "enqueue",
                "--telefone",
                "11999990001",
                "--texto",
                "x",
                "--agendar-para",
                "amanhã às 9",
            ],
            2,
            "bad due time",
        ),
        (
            [
                "fila",
                "enqueue",
                "--telefone",
                "11999990001",
                "--texto",
                "x",
                "--agendar-para",
                "2030-13-45",
            ],
            2,
            "bad due time",
        ),
        (
            ["fila", "enqueue", "--telefone", "11999990001", "--texto", "x", "--tipo", "spam"],
            2,
            "tipo",
        ),
        (["fila", "enqueue", "--telefone", "11999990001"], 2, "--texto"),
        (["fila", "list", "--status", "perdida"], 2, "status 'perdida'"),
        (["fila", "dlq", "replay"], 2, "--all"),
    ],
)
def test_bad_input_gets_one_clear_line_and_changes_nothing(
    cli: Any, database_url: str, args: list[str], code: int, text: str
) -> None:
    ok(cli("fila", "enqueue", "--telefone", "11999990001", "--texto", "antes"))
    before = count(database_url)
    result = cli(*args)
    assert result.exit_code == code, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and text in lines[0] and "Traceback" not in result.stderr
    assert count(database_url) == before
    assert count(database_url, "status <> 'pendente'") == 0


def test_a_csv_is_queued_whole_or_not_at_all(cli: Any, database_url: str, tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text(
        "telefone,texto,tipo,idempotency_key\n"
        "11999990001,Oi,campanha,c1\n"
        "123,Oi,campanha,c2\n"
        "11999990003,Oi,nada,c3\n"
        "11999990004,,campanha,c4\n"
    )
    result = cli("fila", "enqueue", "--arquivo", str(bad))
    assert result.exit_code == 2
    [line] = result.stderr.strip().splitlines()
    assert "3 invalid row(s)" in line and "line 3" in line and "line 5" in line
    assert count(database_url) == 0
    good = tmp_path / "good.csv"
    good.write_text(
        "telefone,texto,tipo,idempotency_key\n11999990001,Oi,campanha,c1\n11999990002,Olá,,c2\n"
    )
    assert ok(cli("fila", "enqueue", "--arquivo", str(good), "--json")) == {
        "total": 2, "inserted": 2, "duplicates": 0, "blocked": 0,
    }  # fmt: skip
    assert ok(cli("fila", "enqueue", "--arquivo", str(good), "--json"))["duplicates"] == 2
    assert count(database_url, "tipo = 'campanha'") == 1 and count(database_url) == 2


def test_dlq_list_replay_dry_run_and_purge(cli: Any, database_url: str) -> None:
    ok(cli("fila", "enqueue", "--telefone", "11999990001", "--texto", "x"))
    with psycopg.connect(database_url) as conn:
        conn.execute(
            "UPDATE fila_mensagens SET status = 'dlq', outcome = 'FAILED_MAX_ATTEMPTS',"
            " tentativas = 5, updated_at = now() - interval '10 days'"
        )
    [dead] = ok(cli("fila", "dlq", "list", "--json"))
    assert dead["outcome"] == "FAILED_MAX_ATTEMPTS"
    assert ok(cli("fila", "dlq", "replay", "--all", "--dry-run", "--json")) == {
        "replayed": [dead["id"]], "dry_run": True,
    }  # fmt: skip
    assert count(database_url, "status = 'dlq'") == 1
    assert ok(cli("fila", "dlq", "purge", "--older-than", "30", "--json")) == {"purged": 0}
    assert ok(cli("fila", "dlq", "purge", "--older-than", "7", "--json")) == {"purged": 1}
    with psycopg.connect(database_url) as conn:
        row = conn.execute(
            "SELECT operador FROM audit_log WHERE acao = 'fila.dlq_purge'"
        ).fetchall()
    assert row == [("tester",), ("tester",)]


def test_worker_status_with_no_worker(cli: Any) -> None:
    assert ok(cli("worker", "status", "--json")) == []
    assert cli("worker", "status").exit_code == 0
