"""Campaign rows: create (validated, nothing written on bad input), look up, list, and the
one recorded status transition."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime, time
from typing import Any
from zoneinfo import ZoneInfo

from psycopg import AsyncConnection
from psycopg.types.json import Jsonb

from julia.campanhas import states, template, window
from julia.campanhas.segment import Segmento
from julia.core import audit
from julia.core.app import App
from julia.core.errors import InvalidInput, NotFound
from julia.core.logs import get_logger

log = get_logger(__name__)

_COLUMNS = (
    "id, nome, texto, vaga_id, segmento, ritmo, janela_dias, janela_inicio, janela_fim, inicio,"
    " fim, status, status_motivo, criado_por, created_at, updated_at, iniciada_em"
)


@dataclass(frozen=True)
class Campanha:
    id: int
    nome: str
    texto: str
    vaga_id: int | None
    segmento: dict[str, Any]
    ritmo: int
    janela_dias: list[int]
    janela_inicio: time
    janela_fim: time
    inicio: datetime | None
    fim: datetime | None
    status: str
    status_motivo: str | None
    criado_por: str
    created_at: datetime
    updated_at: datetime
    iniciada_em: datetime | None

    def janela(self, tz: str) -> window.Janela:
        return window.Janela(
            frozenset(self.janela_dias), self.janela_inicio, self.janela_fim,
            ZoneInfo(tz), self.inicio, self.fim,
        )  # fmt: skip

    @property
    def seg(self) -> Segmento:
        return Segmento.of(self.segmento)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class NovaCampanha:
    nome: str
    texto: str
    segmento: Segmento
    ritmo: int | None = None
    janela: str | None = None
    inicio: str | None = None
    fim: str | None = None
    vaga_id: int | None = None


async def vaga_values(conn: AsyncConnection[Any], vaga_id: int | None) -> dict[str, str]:
    if vaga_id is None:
        return {}
    cur = await conn.execute(
        "SELECT h.nome AS hospital, v.data, v.periodo, v.valor FROM vagas v"
        " JOIN hospitais h ON h.id = v.hospital_id WHERE v.id = %s",
        (vaga_id,),
    )
    row = await cur.fetchone()
    if row is None:
        raise NotFound(f"no vaga with id {vaga_id}")
    return template.shift_values(row)


def validate(app: App, n: NovaCampanha) -> tuple[window.Janela, int, list[str]]:
    """Everything checkable without the database; raises one clear InvalidInput."""
    if not (n.nome or "").strip():
        raise InvalidInput("the campaign needs a name (--nome)")
    used = template.placeholders(n.texto)
    if n.vaga_id is None and (shift := [p for p in used if p in template.SHIFT]):
        raise InvalidInput(f"{{{shift[0]}}} needs a shift: give --vaga ID")
    ritmo = n.ritmo if n.ritmo is not None else app.settings.campanha_ritmo_default
    if ritmo < 1:
        raise InvalidInput("--ritmo must be at least 1 message per hour")
    s, tz = app.settings, app.settings.timezone
    janela = window.parse(
        n.janela, tz=tz, default_days=s.business_days, default_start=s.business_hours_start,
        default_end=s.business_hours_end, inicio=window.parse_date(n.inicio, tz),
        fim=window.parse_date(n.fim, tz, end=True),
    )  # fmt: skip
    if janela.end is not None and janela.end <= app.clock.now():
        raise InvalidInput("the campaign's end date (--fim) is already past")
    return janela, ritmo, used


async def insert(
    conn: AsyncConnection[Any],
    app: App,
    n: NovaCampanha,
    janela: window.Janela,
    ritmo: int,
    actor: audit.Actor,
) -> int:
    now = app.clock.now()
    status = states.Status.AGENDADA if janela.start is not None else states.Status.RASCUNHO
    cur = await conn.execute(
        "INSERT INTO campanhas (nome, texto, vaga_id, segmento, ritmo, janela_dias,"
        " janela_inicio, janela_fim, inicio, fim, status, criado_por, created_at, updated_at)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING id",
        (n.nome.strip(), n.texto, n.vaga_id, Jsonb(n.segmento.as_dict()), ritmo,
         sorted(janela.dias), janela.inicio, janela.fim, janela.start, janela.end,
         status.value, actor.name, now, now),
    )  # fmt: skip
    row = await cur.fetchone()
    assert row is not None
    cid = int(row["id"])
    await _record(conn, cid, "-", status.value, actor, "created", now)
    await audit.record(conn, now, actor, "campanha.criar", alvo=str(cid),
                       detalhes={"nome": n.nome, "status": status.value})  # fmt: skip
    return cid


async def _record(
    conn: AsyncConnection[Any], cid: int, de: str, para: str, actor: audit.Actor, motivo: str,
    now: datetime,
) -> None:  # fmt: skip
    await conn.execute(
        "INSERT INTO campanha_transicoes (campanha_id, de, para, operador, motivo, at)"
        " VALUES (%s, %s, %s, %s, %s, %s)",
        (cid, de, para, actor.name, motivo, now),
    )


async def get(app: App, cid: int, conn: AsyncConnection[Any] | None = None) -> Campanha:
    sql = f"SELECT {_COLUMNS} FROM campanhas WHERE id = %s"
    if conn is None:
        async with app.pool.connection() as own:
            cur = await own.execute(sql, (cid,))
            row = await cur.fetchone()
    else:
        cur = await conn.execute(sql + " FOR UPDATE", (cid,))
        row = await cur.fetchone()
    if row is None:
        raise NotFound(f"no campaign with id {cid}")
    return Campanha(**row)


async def list_campanhas(app: App, *, limit: int = 100) -> list[dict[str, Any]]:
    async with app.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT c.id, c.nome, c.status, c.ritmo, c.inicio, c.fim, c.created_at,"
            " count(f.id) AS mensagens,"
            " count(f.id) FILTER (WHERE f.status = 'enviada') AS enviadas,"
            " count(f.id) FILTER (WHERE f.status IN ('pendente', 'processando')) AS na_fila"
            " FROM campanhas c LEFT JOIN fila_mensagens f ON f.campanha_id = c.id"
            " GROUP BY c.id ORDER BY c.id DESC LIMIT %s",
            (limit,),
        )
        return list(await cur.fetchall())


async def transition(
    app: App,
    conn: AsyncConnection[Any],
    c: Campanha,
    to: states.Status,
    actor: audit.Actor,
    motivo: str,
) -> Campanha:
    """Move a campaign (locked by the caller's ``get(..., conn)``) and record who and why."""
    states.check(c.status, to)
    now = app.clock.now()
    await conn.execute(
        "UPDATE campanhas SET status = %s, status_motivo = %s, updated_at = %s,"
        " iniciada_em = CASE WHEN %s = 'enviando' THEN COALESCE(iniciada_em, %s)"
        " ELSE iniciada_em END WHERE id = %s",
        (to.value, motivo, now, to.value, now, c.id),
    )
    await _record(conn, c.id, c.status, to.value, actor, motivo, now)
    await audit.record(conn, now, actor, f"campanha.{to.value}", alvo=str(c.id), motivo=motivo)
    log.info("campanha.transition", id=c.id, de=c.status, para=to.value, operador=actor.name)
    return await get(app, c.id, conn)


async def transitions(app: App, cid: int) -> list[dict[str, Any]]:
    async with app.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT de, para, operador, motivo, at FROM campanha_transicoes"
            " WHERE campanha_id = %s ORDER BY id",
            (cid,),
        )
        return list(await cur.fetchall())
