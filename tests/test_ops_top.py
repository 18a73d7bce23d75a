"""``julia top``'s drawing on real data, the metrics module, and the metrics snapshot."""

from __future__ import annotations

import asyncio
import dataclasses
import socket
import urllib.request
from datetime import timedelta

from rich.console import Console

from julia.core import metrics
from julia.core.app import App
from julia.core.clock import FrozenClock
from julia.fila import queue
from julia.notify import alerts
from julia.ops import gauges, heartbeat, overview
from julia.ops.jobs import runner
from julia_cli.dashboard import render_top, sparkline


async def _seed(app: App, clock: FrozenClock) -> None:
    from julia.chips import pool

    await queue.enqueue_many(
        app, [queue.NewMessage(texto=f"oi {i}", telefone=f"+55119876501{i:02d}") for i in range(7)]
    )
    async with app.pool.connection() as conn:  # three sent in the last minutes (throughput)
        await conn.execute(
            "UPDATE fila_mensagens SET status = 'enviada', outcome = 'SENT', enviada_em = %s"
            " WHERE id IN (SELECT id FROM fila_mensagens ORDER BY id LIMIT 3)",
            (clock.now() - timedelta(seconds=30),),
        )
    await heartbeat.register(app, "w-top", ["fila"])
    await heartbeat.beat(app, "w-top")
    await pool.add(app, instance="chip-a", telefone="+5511999990011", trust_score=85,
                   status="active")  # fmt: skip
    await alerts.raise_alert(app, "fila.backlog", "63 messages due for more than 30 min")


async def test_top_draws_the_system_from_real_data(app: App, clock: FrozenClock) -> None:
    await _seed(app, clock)
    view = await overview.overview(app)
    console = Console(record=True, width=130, color_system=None)
    console.print(render_top(view))
    text = console.export_text()
    assert "pendente 4" in text and "enviada 3" in text
    assert "w-top" in text and "alive" in text
    assert "85 verde" in text and "chip-a" not in text  # the table shows the masked number
    assert "fila.backlog" in text and "63 messages due" in text
    assert "0 conversation(s) with a human" in text
    assert view["throughput"][-1] == 3 and sparkline(view["throughput"]).endswith("█")


def test_sparkline() -> None:
    assert sparkline([]) == ""
    assert sparkline([0, 0]) == "▁▁"
    assert sparkline([0, 5, 10]) == "▁▅█"


async def test_snapshot_keeps_seven_days(app: App, clock: FrozenClock) -> None:
    await _seed(app, clock)
    await runner.run_job(app, "metrics_snapshot")
    clock.advance(days=8)
    await runner.run_job(app, "metrics_snapshot")
    kept = await overview.snapshots(app, hours=24 * 30)
    assert len(kept) == 1  # the first is past the 7-day retention
    data = kept[0]["data"]
    assert data["queue"]["pendente"] == 4 and data["chips"]["total"] == 1


async def test_metrics_module_exports_and_serves(app: App, clock: FrozenClock) -> None:
    await _seed(app, clock)
    await runner.run_job(app, "watchdog")
    text = (await gauges.render(app)).decode()
    assert 'julia_queue_depth{status="pendente"} 4.0' in text
    assert 'julia_job_runs_total{job="watchdog",status="ok"}' in text
    assert 'julia_alerts_total{deduplicated="false",kind="fila.backlog",severity="warning"}' in text
    assert "julia_circuit_state" in text or "# HELP julia_circuit_state" in text
    server = metrics.serve(0)
    assert server is None
    with socket.socket() as probe:  # a free port
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = metrics.serve(port)
    url = f"http://127.0.0.1:{port}/metrics"
    try:
        body = await asyncio.to_thread(lambda: urllib.request.urlopen(url).read().decode())
    finally:
        server.shutdown()
    assert "julia_job_runs_total" in body


async def test_worker_instrumentation_counts_sends(sandbox_app: App, clock: FrozenClock) -> None:
    from julia.outbound import send

    def sent_count() -> float:
        value = metrics.REGISTRY.get_sample_value(
            "julia_sends_total", {"outcome": "SENT", "chip": "julia"}
        )
        return value or 0.0

    before = sent_count()
    latency_before = metrics.REGISTRY.get_sample_value("julia_send_latency_seconds_count") or 0
    no_port = sandbox_app.settings.model_copy(update={"worker_metrics_port": 0})
    server = gauges.instrument_worker(dataclasses.replace(sandbox_app, settings=no_port))
    assert server is None  # port 0: counting only
    try:
        await queue.enqueue_many(
            sandbox_app,
            [queue.NewMessage(f"oi {i}", telefone=f"+55119876502{i}") for i in range(2)],
        )
        clock.advance(5)
        batch = await queue.claim(sandbox_app, "w1", 10)
        await send.process_batch(sandbox_app, "w1", batch)
    finally:
        send.remove_outcome_hook(gauges.count_send)
    assert sent_count() - before == 2
    latency_after = metrics.REGISTRY.get_sample_value("julia_send_latency_seconds_count") or 0
    assert latency_after - latency_before == 2


def test_webhook_and_turn_helpers() -> None:
    from julia.inbox.events import Ack, Ignored

    def sample(name: str, labels: dict[str, str]) -> float:
        return metrics.REGISTRY.get_sample_value(name, labels) or 0.0

    ack = {"provider": "evolution", "event": "ack", "outcome": "accepted"}
    ignored = {"provider": "evolution", "event": "presence.update", "outcome": "accepted"}
    before = (sample("julia_webhooks_received_total", ack),
              sample("julia_webhooks_received_total", ignored))  # fmt: skip
    metrics.count_webhook(
        "evolution",
        [Ack("evolution", "i", "x", "READ"), Ignored("presence.update", "-")],
        "accepted",
    )
    assert sample("julia_webhooks_received_total", ack) == before[0] + 1
    assert sample("julia_webhooks_received_total", ignored) == before[1] + 1
    turns = sample("julia_turns_total", {"outcome": "aguardando_resposta"})
    metrics.observe_turn("aguardando_resposta", 0.2, lag_s=4.5)
    assert sample("julia_turns_total", {"outcome": "aguardando_resposta"}) == turns + 1
    assert sample("julia_inbox_lag_seconds_count", {}) >= 1
