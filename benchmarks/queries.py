"""Hot-query latency at production-like volume, and the time of a 100,000-doctor import.

Fills a scratch database (created on the configured server, dropped at the end)
with 100,000 doctors, 1,000,000 interactions and 10,000 vagas, then prints
p50/p99 of the four hot queries (median of 3 runs of 2,000 lookups each), and
the time to import a 100,000-row doctors CSV (insert, then re-import/update).

    python benchmarks/queries.py            # JULIA_DATABASE_URL, else the embedded server

The last line is a JSON object of the figures.
"""

from __future__ import annotations

import asyncio
import csv
import json
import random
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import psycopg
from pydantic import SecretStr

from julia.core import migrations
from julia.core.app import App, resolve_endpoints
from julia.domain import medicos
from julia.settings import Settings

DOCTORS, INTERACTIONS, VAGAS = 100_000, 1_000_000, 10_000
LOOKUPS, RUNS = 2_000, 3

FILL = f"""
SELECT julia_create_interacoes_partitions((now() - interval '4 months')::date, 6);
INSERT INTO especialidades (nome) SELECT 'Especialidade ' || i FROM generate_series(1, 20) i;
INSERT INTO hospitais (nome) SELECT 'Hospital ' || i FROM generate_series(1, 100) i;
INSERT INTO medicos (telefone, nome, especialidade_id, uf)
  SELECT '+55119' || lpad(i::text, 8, '0'), 'Medico ' || i, 1 + i % 20, 'SP'
  FROM generate_series(1, {DOCTORS}) i;
INSERT INTO conversas (medico_id, status, last_message_at)
  SELECT id, CASE WHEN id % 3 = 0 THEN 'encerrada' ELSE 'ativa' END, now() FROM medicos;
INSERT INTO interacoes (conversa_id, medico_id, direcao, conteudo, created_at)
  SELECT 1 + i % {DOCTORS}, 1 + i % {DOCTORS}, CASE WHEN i % 2 = 0 THEN 'entrada' ELSE 'saida' END,
         'mensagem ' || i, now() - (i % 7776000) * interval '1 second'
  FROM generate_series(1, {INTERACTIONS}) i;
INSERT INTO vagas (hospital_id, especialidade_id, data, inicio, fim, periodo, valor, status,
                   reservada_por)
  SELECT 1 + i % 100, 1 + i % 20, current_date + (i % 60), '07:00', '19:00', 'diurno', 1500,
         CASE WHEN i % 4 = 0 THEN 'reservada' ELSE 'aberta' END,
         CASE WHEN i % 4 = 0 THEN 1 + i % {DOCTORS} END
  FROM generate_series(1, {VAGAS}) i;
ANALYZE;
"""

QUERIES: dict[str, tuple[str, Any]] = {
    "medico_by_phone": (
        "SELECT id, nome, opted_out FROM medicos WHERE telefone = %s",
        lambda r: ("+55119" + str(r.randint(1, DOCTORS)).zfill(8),),
    ),
    "active_conversation": (
        "SELECT id, chip_id, controlled_by FROM conversas"
        " WHERE medico_id = %s AND status = 'ativa'",
        lambda r: (r.randint(1, DOCTORS),),
    ),
    "last_20_interactions": (
        "SELECT direcao, conteudo, created_at FROM interacoes WHERE conversa_id = %s"
        " ORDER BY created_at DESC LIMIT 20",
        lambda r: (r.randint(1, DOCTORS),),
    ),
    "open_vagas_by_specialty": (
        "SELECT id, hospital_id, data, inicio, valor FROM vagas WHERE especialidade_id = %s"
        " AND status = 'aberta' AND data >= current_date + %s ORDER BY data, inicio LIMIT 10",
        lambda r: (r.randint(1, 20), r.randint(0, 30)),
    ),
}


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


async def measure(url: str) -> dict[str, dict[str, float]]:
    rng = random.Random(7)
    out: dict[str, dict[str, float]] = {}
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        for name, (sql, params) in QUERIES.items():
            p50s, p99s = [], []
            for _ in range(RUNS):
                samples = []
                for _ in range(LOOKUPS):
                    args = params(rng)
                    t0 = time.perf_counter()
                    cur = await conn.execute(sql, args)
                    await cur.fetchall()
                    samples.append((time.perf_counter() - t0) * 1000)
                p50s.append(percentile(samples, 50))
                p99s.append(percentile(samples, 99))
            out[name] = {"p50_ms": statistics.median(p50s), "p99_ms": statistics.median(p99s)}
            print(f"{name:26} p50 {out[name]['p50_ms']:.3f} ms   p99 {out[name]['p99_ms']:.3f} ms")
    return out


def write_csv(path: Path, n: int) -> None:
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["nome", "telefone", "crm", "especialidade", "uf", "cidade", "tags"])
        for i in range(n):
            w.writerow(
                [f"Dr {i}", f"(21) 9{i:08d}", f"CRM {i}", f"Esp {i % 15}", "RJ", "Rio", "a;b"]
            )


async def time_import(settings: Settings, path: Path) -> tuple[float, float]:
    async with App.open(settings) as app:
        t0 = time.perf_counter()
        first = await medicos.import_medicos(app, path)
        t1 = time.perf_counter()
        again = await medicos.import_medicos(app, path)
        t2 = time.perf_counter()
    assert first.inserted == again.updated == 100_000
    return t1 - t0, t2 - t1


def main() -> None:
    base = Settings()
    server = resolve_endpoints(base).database_url
    name = f"julia_bench_{uuid.uuid4().hex[:8]}"
    url = psycopg.conninfo.make_conninfo(server, dbname=name)
    with psycopg.connect(server, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        asyncio.run(migrations.migrate(url))
        t0 = time.perf_counter()
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(FILL.encode())
        print(
            f"filled {DOCTORS:,} doctors, {INTERACTIONS:,} interactions, {VAGAS:,} vagas"
            f" in {time.perf_counter() - t0:.1f} s"
        )
        figures = asyncio.run(measure(url))
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "medicos.csv"
            write_csv(path, 100_000)
            settings = base.model_copy(update={"database_url": SecretStr(url)})
            insert_s, update_s = asyncio.run(time_import(settings, path))
        print(f"import 100,000 doctors: {insert_s:.2f} s (insert), {update_s:.2f} s (re-import)")
    finally:
        with psycopg.connect(server, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    result: dict[str, Any] = {
        f"{q}_{k}": round(v, 3) for q, d in figures.items() for k, v in d.items()
    }
    result |= {"import_100k_s": round(insert_s, 2), "reimport_100k_s": round(update_s, 2)}
    result["worst_p99_ms"] = max(d["p99_ms"] for d in figures.values())
    print(json.dumps(result))


if __name__ == "__main__":
    sys.exit(main())
