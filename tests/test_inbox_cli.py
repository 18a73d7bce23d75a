"""``julia inbox list/show/replay`` over real stored messages."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx
from shim.app import create_app

from julia.core.app import App
from julia.core.clock import FrozenClock
from julia.settings import Settings

FIXTURES = Path(__file__).resolve().parent / "fixtures"


def store_fixtures(settings: Settings) -> list[int]:
    async def go() -> list[int]:
        async with App.open(settings, clock=FrozenClock()) as app:
            transport = httpx.ASGITransport(app=create_app(julia=app))
            async with httpx.AsyncClient(transport=transport, base_url="http://shim") as c:
                ids: list[int] = []
                for provider, name in [
                    ("evolution", "evolution_messages_upsert_text.json"),
                    ("zapi", "zapi_on_message_received_text.json"),
                ]:
                    body = (FIXTURES / name).read_bytes()
                    ids += (await c.post(f"/webhooks/{provider}", content=body)).json()["ids"]
                async with app.pool.connection() as conn:
                    await conn.execute(
                        "UPDATE mensagens_recebidas SET status = 'erro', last_error = 'boom'"
                        " WHERE id = %s",
                        (ids[0],),
                    )
                return ids

    return asyncio.run(go())


def test_inbox_list_show_replay(cli, settings: Settings) -> None:  # type: ignore[no-untyped-def]
    evo, zapi = store_fixtures(settings)
    out = cli("inbox", "list", "--json")
    assert out.exit_code == 0, out.output
    rows = json.loads(out.stdout)
    assert [(r["provider"], r["provider_message_id"], r["telefone"], r["texto"], r["tipo"],
             r["status"]) for r in rows] == [
        ("zapi", "A20DA9C0183A2D35A260F53F5D2B9244", "+5544999999999", "test", "texto",
         "pendente"),
        ("evolution", "782647C0073AA0039110EB72593C4AC5", "+5564981140676", "Oii", "texto",
         "erro"),
    ]  # fmt: skip
    parked = json.loads(cli("inbox", "list", "--status", "erro", "--limit", "5", "--json").stdout)
    assert [r["id"] for r in parked] == [evo] and parked[0]["last_error"] == "boom"
    shown = json.loads(cli("inbox", "show", str(zapi), "--json").stdout)
    assert shown["payload"]["type"] == "ReceivedCallback"
    table = cli("inbox", "list")
    assert table.exit_code == 0 and "2 mensagens" in table.stdout
    assert "5544999999999" not in table.stdout  # tables mask phones
    replayed = cli("inbox", "replay", str(evo), "--json", "--operador", "ana")
    assert replayed.exit_code == 0 and json.loads(replayed.stdout)["status"] == "pendente"
    again = cli("inbox", "replay", str(evo))
    assert again.exit_code == 5 and "already pendente" in again.stderr
    assert cli("inbox", "show", "999999").exit_code == 4
    assert cli("inbox", "list", "--status", "nope").exit_code == 2
