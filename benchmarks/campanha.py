"""A campaign to 100,000 doctors: segment resolution, enqueueing, rows per second.

Fills a scratch database (created on the configured server, dropped at the end) with
100,000 doctors, 3 % opted out and 5 % sent a message within the week, then, for
each of 3 runs, creates a campaign over all of them and times the segment resolution
(query, guardrails screen, rendering) and ``enviar`` (resolution again, scheduling,
and the enqueue in batches of 1,000). Rate limits are off so the pool's capacity does
not spread the schedule over years; pacing costs the same either way. Prints the
median of the runs; the last line is a JSON object of the figures.

    python benchmarks/campanha.py            # JULIA_DATABASE_URL, else the embedded server
"""

from __future__ import annotations

import asyncio
import json
import statistics
import time
import uuid
from typing import Any

import psycopg
from pydantic import SecretStr

from julia.campanhas import envio, store
from julia.campanhas.segment import Segmento
from julia.core import audit, logs, migrations
from julia.core.app import App, resolve_endpoints
from julia.settings import Settings

DOCTORS, RUNS = 100_000, 3

FILL = f"""
INSERT INTO especialidades (nome) VALUES ('Clínica Médica');
INSERT INTO medicos (telefone, nome, especialidade_id, uf, cidade, opted_out, opted_out_em)
SELECT '+55119' || lpad(i::text, 8, '0'), 'Dr. Médico ' || i, 1, 'SP', 'São Paulo',
       i % 33 = 0, CASE WHEN i % 33 = 0 THEN now() END
FROM generate_series(1, {DOCTORS}) i;
INSERT INTO fila_mensagens (medico_id, telefone, tipo, texto, agendar_para, proxima_tentativa_em,
    status, outcome, created_at, updated_at, enviada_em)
SELECT id, telefone, 'prospeccao', 'oi', now() - interval '3 days', now() - interval '3 days',
       'enviada', 'SENT', now() - interval '3 days', now() - interval '3 days',
       now() - interval '3 days'
FROM medicos WHERE id % 20 = 1;
ANALYZE;
"""


async def run(settings: Settings) -> list[dict[str, float]]:
    out = []
    actor = audit.Actor("bench")
    async with App.open(settings) as app:
        for i in range(RUNS):
            nova = store.NovaCampanha(
                nome=f"bench {i}", texto="Oi {nome}, plantão de {especialidade} em {cidade}?",
                segmento=Segmento(uf="SP"), ritmo=100_000, janela="seg-dom 00:00-23:59",
            )  # fmt: skip
            c = await envio.criar(app, nova, actor=actor)
            t0 = time.perf_counter()
            async with app.pool.connection() as conn:
                rec = await envio._recipients(app, conn, c.texto, c.seg, None)
            t1 = time.perf_counter()
            result = await envio.enviar(app, c.id, actor=actor)
            t2 = time.perf_counter()
            assert result["enqueued"] == len(rec.eligible), result
            enqueue_s = (t2 - t1) - (t1 - t0)  # enviar resolves the segment again
            out.append({
                "resolve_s": t1 - t0, "enqueue_s": enqueue_s, "enviar_s": t2 - t1,
                "rows": result["enqueued"], "rows_per_s": result["enqueued"] / (t2 - t1),
            })  # fmt: skip
            print(
                f"run {i + 1}: {result['enqueued']:,} enqueued ({result['skipped']}),"
                f" resolve {t1 - t0:.2f} s, enviar {t2 - t1:.2f} s"
            )
    return out


def main() -> None:
    base = Settings()
    logs.configure("WARNING", base.log_format)  # the per-batch info line is not the subject
    server = resolve_endpoints(base).database_url
    name = f"julia_bench_{uuid.uuid4().hex[:8]}"
    url = psycopg.conninfo.make_conninfo(server, dbname=name)
    with psycopg.connect(server, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        asyncio.run(migrations.migrate(url))
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(FILL.encode())
        settings = base.model_copy(
            update={"database_url": SecretStr(url), "rate_limits_enabled": False}
        )
        runs = asyncio.run(run(settings))
    finally:
        with psycopg.connect(server, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    print(
        f"median of {RUNS}: segment resolution {med['resolve_s']:.2f} s, enqueue"
        f" {med['enqueue_s']:.2f} s, enviar {med['enviar_s']:.2f} s,"
        f" {med['rows_per_s']:,.0f} rows/s"
    )
    result: dict[str, Any] = {
        "doctors": DOCTORS, "enqueued": int(med["rows"]),
        "resolve_s": round(med["resolve_s"], 3), "enqueue_s": round(med["enqueue_s"], 3),
        "total_s": round(med["enviar_s"], 3), "rows_per_s": round(med["rows_per_s"]),
        "target_total_s": 5.0,
    }  # fmt: skip
    print(json.dumps(result))


if __name__ == "__main__":
    main()
