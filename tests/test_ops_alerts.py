"""Alerts: dedupe by kind within the cooldown, Slack through the sandbox over real HTTP,
and Slack down never blocks (or fails) the caller."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta

import httpx
import pytest
from pydantic import SecretStr

from julia.core.app import App
from julia.core.clock import FrozenClock
from julia.core.errors import InvalidInput
from julia.notify import alerts
from julia.sandbox import slack as slack_sandbox
from julia.settings import Settings


@pytest.fixture
def slack() -> Iterator[tuple[str, slack_sandbox.SlackState]]:
    with slack_sandbox.running() as running:
        yield running


@pytest.fixture
async def slack_app(
    settings: Settings, clock: FrozenClock, slack: tuple[str, slack_sandbox.SlackState]
) -> AsyncIterator[App]:
    url, _ = slack
    configured = settings.model_copy(update={"slack_webhook_url": SecretStr(url)})
    async with App.open(configured, clock=clock) as opened:
        yield opened


async def _rows(app: App) -> list[dict[str, object]]:
    async with app.pool.connection() as conn:
        cur = await conn.execute("SELECT * FROM alerts ORDER BY id")
        return list(await cur.fetchall())


async def test_same_kind_within_cooldown_is_one_row(app: App, clock: FrozenClock) -> None:
    first = await alerts.raise_alert(app, "fila.backlog", "63 due", details={"n": 63})
    clock.advance(minutes=10)
    again = await alerts.raise_alert(app, "fila.backlog", "70 due", details={"n": 70})
    assert first.new and not again.new
    assert again.alert.id == first.alert.id and again.alert.repeats == 1
    # another subject of a kind (a chip) is its own alert
    other = await alerts.raise_alert(app, "chip.demoted", "chip 1 demoted", key="1")
    other2 = await alerts.raise_alert(app, "chip.demoted", "chip 2 demoted", key="2")
    assert other.new and other2.new
    # fila.backlog's cooldown is 60 min by default: past it, a new alert
    clock.advance(minutes=51)
    later = await alerts.raise_alert(app, "fila.backlog", "80 due")
    assert later.new and later.alert.id != first.alert.id
    rows = await _rows(app)
    assert [r["kind"] for r in rows] == ["fila.backlog", "chip.demoted", "chip.demoted",
                                         "fila.backlog"]  # fmt: skip
    assert rows[0]["severity"] == "warning" and rows[0]["details"] == {"n": 63}


async def test_concurrent_raisers_write_one_row(settings: Settings, clock: FrozenClock) -> None:
    import asyncio

    async with App.open(settings, clock=clock) as a, App.open(settings, clock=clock) as b:
        results = await asyncio.gather(
            *(alerts.raise_alert(x, "worker.heartbeat", "no worker") for x in (a, b) * 5)
        )
        assert sum(r.new for r in results) == 1
        rows = await _rows(a)
    assert len(rows) == 1 and rows[0]["repeats"] == 9


async def test_bad_alert_input_changes_nothing(app: App) -> None:
    with pytest.raises(InvalidInput):
        await alerts.raise_alert(app, "fila.backlog", "x", severity="fatal")
    with pytest.raises(InvalidInput):
        await alerts.raise_alert(app, "fila.backlog", "  ")
    assert await _rows(app) == []
    with pytest.raises(InvalidInput):
        alerts.parse_since("yesterday-ish", app.clock.now())


async def test_slack_receives_each_new_alert_once(
    slack_app: App, slack: tuple[str, slack_sandbox.SlackState]
) -> None:
    _, state = slack
    await alerts.raise_alert(slack_app, "worker.heartbeat", "no live worker, 60 due")
    await alerts.raise_alert(slack_app, "worker.heartbeat", "no live worker, 61 due")  # dup
    assert await alerts.flush(slack_app) == 1
    assert len(state.messages) == 1
    msg = state.messages[0]
    assert "CRITICAL" in msg["text"] and "Worker without heartbeat" in msg["text"]
    assert "no live worker, 60 due" in msg["text"]
    assert msg["blocks"][0]["type"] == "section"
    row = (await _rows(slack_app))[0]
    assert row["notified_at"] is not None and row["notify_attempts"] == 1
    assert row["notify_error"] is None


async def test_slack_down_never_blocks_and_is_resent_later(
    slack_app: App, slack: tuple[str, slack_sandbox.SlackState], clock: FrozenClock
) -> None:
    url, state = slack
    base = url.split("/services/")[0]
    async with httpx.AsyncClient() as client:
        await client.post(f"{base}/_sandbox/faults", json={"status": 500, "error_rate": 1.0})
    raised = await alerts.raise_alert(slack_app, "chip.pool_active_low", "1 active chip, minimum 3")
    # the caller got its alert back before Slack answered anything
    assert raised.new
    assert len(slack_app.extensions["alerts.deliveries"]) == 1
    assert (await _rows(slack_app))[0]["notified_at"] is None
    await alerts.flush(slack_app)
    row = (await _rows(slack_app))[0]
    assert row["notified_at"] is None
    assert row["notify_attempts"] == slack_app.settings.slack_attempts == state.received
    assert "500" in row["notify_error"]
    assert state.messages == []
    # Slack back: the watchdog's resend delivers it, once
    async with httpx.AsyncClient() as client:
        await client.delete(f"{base}/_sandbox/faults")
    clock.advance(minutes=3)
    assert await alerts.resend_pending(slack_app) == 1
    assert await alerts.resend_pending(slack_app) == 0
    assert len(state.messages) == 1 and "1 active chip" in state.messages[0]["text"]
    assert (await _rows(slack_app))[0]["notified_at"] is not None


async def test_slack_unreachable_is_recorded(settings: Settings, clock: FrozenClock) -> None:
    configured = settings.model_copy(
        update={"slack_webhook_url": SecretStr("http://127.0.0.1:9/services/x"),
                "slack_attempts": 2}
    )  # fmt: skip
    async with App.open(configured, clock=clock) as a:
        raised = await alerts.raise_alert(a, "fila.dlq_growth", "7 dead-lettered")
        assert raised.new
        await alerts.flush(a)
        row = (await _rows(a))[0]
    assert row["notified_at"] is None and row["notify_attempts"] == 2
    assert "ConnectError" in row["notify_error"]


def test_sandbox_rejects_what_slack_rejects(slack: tuple[str, slack_sandbox.SlackState]) -> None:
    url, state = slack
    with httpx.Client() as client:
        assert client.post(url, content=b"not json").text == "invalid_payload"
        assert client.post(url, json={"foo": 1}).status_code == 400
        ok = client.post(url, json={"text": "hi"})
        assert (ok.status_code, ok.text) == (200, "ok")
        base = url.split("/services/")[0]
        assert json.loads(client.get(f"{base}/_sandbox/stats").text) == {
            "received": 3, "accepted": 1
        }  # fmt: skip
    assert [m["text"] for m in state.messages] == ["hi"]


async def test_list_and_since(app: App, clock: FrozenClock) -> None:
    await alerts.raise_alert(app, "job.late", "old", key="a")
    clock.advance(hours=3)
    await alerts.raise_alert(app, "job.late", "new", key="b")
    recent = await alerts.list_alerts(app, since=alerts.parse_since("2h", clock.now()))
    assert [a.message for a in recent] == ["new"]
    assert [a.message for a in await alerts.list_alerts(app)] == ["new", "old"]
    since = alerts.parse_since((clock.now() - timedelta(hours=4)).isoformat(), clock.now())
    assert len(await alerts.list_alerts(app, since=since)) == 2


def test_alerts_cli(cli, app: App) -> None:  # type: ignore[no-untyped-def]
    bad = cli("alerts", "list", "--since", "soon")
    assert bad.exit_code == 2 and "--since" in bad.output
    result = cli("alerts", "list", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == []


async def test_alert_inside_a_callers_transaction(
    slack_app: App, slack: tuple[str, slack_sandbox.SlackState], clock: FrozenClock
) -> None:
    _, state = slack
    with pytest.raises(RuntimeError):
        async with slack_app.pool.connection() as conn, conn.transaction():
            await alerts.raise_alert(slack_app, "fila.dlq", "3 dead", conn=conn)
            raise RuntimeError("the caller's transaction rolls back")
    assert await _rows(slack_app) == []
    async with slack_app.pool.connection() as conn, conn.transaction():
        raised = await alerts.raise_alert(slack_app, "fila.dlq", "3 dead", conn=conn)
    assert raised.new and await alerts.flush(slack_app) == 0  # not sent before the commit
    clock.advance(minutes=3)
    assert await alerts.resend_pending(slack_app) == 1
    assert [m["text"].rsplit(": ", 1)[1] for m in state.messages] == ["3 dead"]
