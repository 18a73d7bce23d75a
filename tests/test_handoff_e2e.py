"""End to end with real processes: the sandbox gateway (Evolution), the shim, a worker
(fila, inbox, handoff consumers), the Chatwoot and Slack sandboxes. A doctor asks for a
person; Chatwoot and Slack are told; the operator answers from Chatwoot; resolves; Júlia
has the conversation again. And Chatwoot down for the whole handoff."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from julia.core.app import App
from julia.fila.queue import NewMessage, enqueue
from julia.settings import Settings

pytestmark = pytest.mark.slow

DOCTOR = "+5511987650001"
SECRET = "e2e-chatwoot-secret"


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Stack:
    gateway: str
    chatwoot: str
    slack: str
    env: dict[str, str]
    procs: dict[str, subprocess.Popen[bytes]]
    logs: Path

    def tail(self) -> str:
        return "\n".join(
            f"--- {p.name}\n{p.read_text()[-1500:]}" for p in sorted(self.logs.glob("*.log"))
        )


def _spawn(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "julia_cli", *args], env=env, stdout=out, stderr=out
        )


def _wait_http(url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    for _ in range(400):
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=1).status_code < 500:
                return
        if proc.poll() is not None:
            raise RuntimeError(log.read_text())
        time.sleep(0.05)
    raise RuntimeError(f"{url} did not come up")


@pytest.fixture
def stack(env: dict[str, str], tmp_path: Path) -> Iterator[Stack]:
    shim_port, gw_port, cw_port, slack_port = _port(), _port(), _port(), _port()
    shim = f"http://127.0.0.1:{shim_port}"
    gateway, chatwoot = f"http://127.0.0.1:{gw_port}", f"http://127.0.0.1:{cw_port}"
    slack = f"http://127.0.0.1:{slack_port}"
    full = env | {
        "JULIA_EVOLUTION_URL": gateway,
        "JULIA_RATE_LIMITS_ENABLED": "false",
        "JULIA_BUSINESS_HOURS_START": "00:00",  # the wall clock may be any hour
        "JULIA_BUSINESS_HOURS_END": "23:59",
        "JULIA_BUSINESS_DAYS": "[0,1,2,3,4,5,6]",
        "JULIA_INBOX_DEBOUNCE_S": "0.3",
        "JULIA_INBOX_DEBOUNCE_MAX_S": "1",
        "JULIA_CHATWOOT_URL": chatwoot,
        "JULIA_CHATWOOT_API_TOKEN": "e2e-token",
        "JULIA_CHATWOOT_ACCOUNT_ID": "1",
        "JULIA_CHATWOOT_INBOX_ID": "1",
        "JULIA_CHATWOOT_WEBHOOK_SECRET": SECRET,
        "JULIA_SLACK_WEBHOOK_URL": f"{slack}/services/T000/B000/e2e",
        "JULIA_HANDOFF_WEBHOOK_SETTLE_S": "0.5",
        "JULIA_RETRY_BASE_S": "0.05",
        "JULIA_RETRY_CAP_S": "0.2",
        "JULIA_LOG_LEVEL": "WARNING",
    }
    specs = {
        "slack": (["sandbox", "slack", "--port", str(slack_port)], f"{slack}/_sandbox/stats"),
        "chatwoot": (
            ["sandbox", "chatwoot", "--port", str(cw_port), "--api-token", "e2e-token",
             "--webhook-url", f"{shim}/webhooks/chatwoot"],
            f"{chatwoot}/_sandbox/calls",
        ),
        "gateway": (
            ["sandbox", "gateway", "--port", str(gw_port), "--webhook-url",
             f"{shim}/webhooks/evolution"],
            f"{gateway}/_sandbox/messages",
        ),
        "shim": (["shim", "serve", "--port", str(shim_port)], f"{shim}/health"),
        "worker": (
            ["worker", "--consumer", "fila", "--consumer", "inbox", "--consumer", "handoff",
             "--name", "e2e"],
            None,
        ),
    }  # fmt: skip
    procs: dict[str, subprocess.Popen[bytes]] = {}
    try:
        for name, (args, ready) in specs.items():
            log = tmp_path / f"{name}.log"
            procs[name] = _spawn(args, full, log)
            if ready:
                _wait_http(ready, procs[name], log)
        yield Stack(gateway, chatwoot, slack, full, procs, tmp_path)
    finally:
        for p in procs.values():
            p.terminate()
        for p in procs.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(20)


async def get(url: str) -> Any:
    async with httpx.AsyncClient() as http:
        r = await http.get(url, timeout=10)
        r.raise_for_status()
        return r.json()


async def post(url: str, body: dict[str, Any]) -> Any:
    async with httpx.AsyncClient() as http:
        r = await http.post(url, json=body, timeout=10)
        r.raise_for_status()
        return r.json()


async def until(
    stack: Stack, what: str, check: Callable[[], Awaitable[Any]], limit_s: float = 60
) -> Any:
    deadline = asyncio.get_running_loop().time() + limit_s
    while True:
        result = await check()
        if result:
            return result
        dead = {n: p.returncode for n, p in stack.procs.items() if p.poll() is not None}
        assert not dead, f"{dead} died waiting for {what}\n{stack.tail()}"
        assert asyncio.get_running_loop().time() < deadline, f"timed out: {what}\n{stack.tail()}"
        await asyncio.sleep(0.2)


async def doctor_writes(stack: Stack, text: str) -> None:
    await post(f"{stack.gateway}/_sandbox/incoming",
               {"instance": "julia", "number": DOCTOR[1:], "text": text})  # fmt: skip


async def rows(app: App, sql: str, *args: Any) -> list[dict[str, Any]]:
    async with app.pool.connection() as conn:
        return list(await (await conn.execute(sql, args)).fetchall())


async def turns(app: App) -> list[dict[str, Any]]:
    return await rows(app, "SELECT id, texto, status, parado_por FROM inbox_turnos ORDER BY id")


async def sent_to_doctor(stack: Stack) -> list[str]:
    return [m["text"] for m in await get(f"{stack.gateway}/_sandbox/messages")]


async def test_a_doctor_asks_for_a_person_and_gets_julia_back(
    settings: Settings, stack: Stack
) -> None:
    async with App.open(settings) as app:
        await doctor_writes(stack, "Oi, tem plantão no sábado?")
        await until(stack, "the first turn", lambda: _n(turns(app), 1))
        [conversa] = await rows(app, "SELECT id, medico_id FROM conversas")
        await enqueue(app, NewMessage("Tenho sim! Hospital X, 12h.", tipo="resposta",
                                      medico_id=conversa["medico_id"],
                                      conversa_id=conversa["id"]))  # fmt: skip
        await until(stack, "Júlia's reply sent", lambda: _n(sent_to_doctor(stack), 1))

        await doctor_writes(stack, "quero falar com uma pessoa")

        async def labelled() -> Any:
            convs = await get(f"{stack.chatwoot}/_sandbox/conversations")
            return [c for c in convs if "humano" in c["labels"] and c["status"] == "open"]

        [conv] = await until(stack, "the Chatwoot conversation", labelled)
        assert conv["phone_number"] == DOCTOR
        public = [(m["message_type"], m["content"]) for m in conv["messages"] if not m["private"]]
        assert public == [
            ("incoming", "Oi, tem plantão no sábado?"),
            ("outgoing", "Tenho sim! Hospital X, 12h."),
            ("incoming", "quero falar com uma pessoa"),
        ]
        [note] = [m["content"] for m in conv["messages"] if m["private"]]
        assert "pediu: falar com uma pessoa" in note and "Resumo" in note
        paths = [(c["method"], c["path"].split("/accounts/1")[-1]) for c in
                 await get(f"{stack.chatwoot}/_sandbox/calls")]  # fmt: skip
        assert ("POST", "/contacts") in paths and ("POST", "/conversations") in paths
        slack = await until(
            stack, "the Slack message", lambda: get(f"{stack.slack}/_sandbox/messages")
        )
        await asyncio.sleep(1.5)  # anything else would have arrived by now
        slack = await get(f"{stack.slack}/_sandbox/messages")
        assert len(slack) == 1 and "Handoff" in slack[0]["text"]
        assert await sent_to_doctor(stack) == ["Tenho sim! Hospital X, 12h."]  # Júlia is quiet

        # The operator answers in Chatwoot: the doctor gets it through the gateway, once.
        await post(f"{stack.chatwoot}/_sandbox/reply",
                   {"conversation_id": conv["id"], "content": "Oi! Sou a Ana, da escala."
                    " Te ligo amanhã às 10h para fechar o sábado."})  # fmt: skip
        await until(stack, "the operator's reply sent", lambda: _n(sent_to_doctor(stack), 2))
        # While a person is in control, the doctor's messages are mirrored to Chatwoot.
        await doctor_writes(stack, "combinado, obrigada")

        async def mirrored() -> Any:
            [c] = await get(f"{stack.chatwoot}/_sandbox/conversations")
            return any(m["content"] == "combinado, obrigada" for m in c["messages"])

        await until(stack, "the doctor's message mirrored", mirrored)
        await asyncio.sleep(1.5)
        assert (await sent_to_doctor(stack))[1:] == [
            "Oi! Sou a Ana, da escala. Te ligo amanhã às 10h para fechar o sábado."
        ]
        [h] = await rows(app, "SELECT status FROM handoffs")
        assert h["status"] == "em_atendimento"

        # The operator resolves: control back to Júlia, who knows what the operator said.
        await post(f"{stack.chatwoot}/_sandbox/resolve", {"conversation_id": conv["id"]})

        async def back() -> Any:
            [c] = await rows(app, "SELECT controlled_by FROM conversas")
            return c["controlled_by"] == "julia"

        await until(stack, "control back to Júlia", back)
        await doctor_writes(stack, "e o valor do plantão?")
        last = await until(
            stack, "the next turn",
            lambda: _last_turn(app, "e o valor do plantão?"),
        )  # fmt: skip
        assert last["status"] == "aguardando_resposta" and last["parado_por"] != "human_control"
        history = await rows(
            app, "SELECT tipo, conteudo FROM interacoes WHERE direcao = 'saida' ORDER BY id"
        )
        assert ("humano", "Oi! Sou a Ana, da escala. Te ligo amanhã às 10h para fechar o"
                " sábado.") in [(r["tipo"], r["conteudo"]) for r in history]  # fmt: skip
        assert any(r["tipo"] == "nota_handoff" for r in history)


async def test_chatwoot_down_for_the_whole_handoff(settings: Settings, stack: Stack) -> None:
    await post(f"{stack.chatwoot}/_sandbox/faults", {"status": 503, "error_rate": 1.0})
    async with App.open(settings) as app:
        await doctor_writes(stack, "quero falar com um atendente agora")

        async def alerted() -> Any:
            return await rows(
                app, "SELECT severity, details FROM alerts WHERE kind = 'handoff.not_notified'"
            )

        [alert] = await until(stack, "handoff.not_notified", alerted)
        assert alert["severity"] == "critical"
        [c] = await rows(app, "SELECT controlled_by FROM conversas")
        assert c["controlled_by"] == "humano"
    listed = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "julia_cli", "handoff", "list", "--status", "pendente", "--json"],
        env=stack.env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert listed.returncode == 0, listed.stderr
    [item] = json.loads(listed.stdout)
    assert item["status"] == "pendente" and item["telefone"] == "5511...0001"
    assert item["notified_at"] is None and "503" in item["notify_error"]
    calls = await get(f"{stack.chatwoot}/_sandbox/calls")
    assert len(calls) == 3  # the one call that could not pass, tried three times

    async def slack_critical() -> Any:
        msgs = await get(f"{stack.slack}/_sandbox/messages")
        return [m for m in msgs if "CRITICAL" in (m["text"] or "")]

    await until(stack, "the critical alert on Slack", slack_critical)
    assert await sent_to_doctor(stack) == []


async def _n(rows_coro: Awaitable[list[Any]], n: int) -> bool:
    return len(await rows_coro) >= n


async def _last_turn(app: App, text: str) -> dict[str, Any] | None:
    found = [t for t in await turns(app) if t["texto"] == text]
    return found[-1] if found else None
