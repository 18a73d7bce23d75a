"""``julia fila``: the outbound queue — enqueue, status, list, show, cancel, DLQ."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from julia.core import audit
from julia.core.errors import InvalidInput
from julia.fila import manual, queue
from julia.outbound import send
from julia_cli import render
from julia_cli.base import JsonOpt, JuliaTyper, OperadorOpt, open_app

app = JuliaTyper(name="fila", help="The outbound message queue: enqueue, inspect, cancel, DLQ.")
dlq_app = JuliaTyper(name="dlq", help="The dead-letter queue: list, replay, purge.")
app.add_typer(dlq_app)

IdArg = Annotated[int, typer.Argument(help="The message id (see `julia fila list`).")]
LIST_COLUMNS = ["id", "status", "tipo", "telefone", "tentativas", "outcome", "due",
                "updated_at", "texto"]  # fmt: skip


def _row(m: queue.Mensagem, *, short: bool = True) -> dict[str, Any]:
    """A message for people: phone masked; ``due`` is when it will next be tried (a
    retry or business hours move it past ``agendar_para``), for what is still to send."""
    d = m.as_dict()
    d["telefone"] = render.mask(m.telefone)
    d["due"] = m.proxima_tentativa_em if m.status == "pendente" else m.agendar_para
    if short:
        d["texto"] = m.texto if len(m.texto) <= 40 else m.texto[:39] + "…"
    return d


def _render_list(rows: list[queue.Mensagem], json_: bool, title: str) -> None:
    if json_:
        render.print_json([m.as_dict() for m in rows])
    else:
        render.table((_row(m) for m in rows), LIST_COLUMNS, title=title)


@app.command("enqueue")
async def enqueue(
    telefone: Annotated[
        str | None, typer.Option("--telefone", help="The doctor's phone, in any common writing.")
    ] = None,
    texto: Annotated[str | None, typer.Option("--texto", help="The message text.")] = None,
    tipo: Annotated[
        str,
        typer.Option("--tipo", help="resposta, followup, prospeccao, campanha, humano, sistema."),
    ] = "humano",
    prioridade: Annotated[
        int | None, typer.Option("--prioridade", help="0-10, higher first (default 5).")
    ] = None,
    agendar_para: Annotated[
        str | None,
        typer.Option(
            "--agendar-para", help="Due time: ISO 8601 (local time if no offset) or +10m, +2h, +1d."
        ),
    ] = None,
    idempotency_key: Annotated[
        str | None, typer.Option("--idempotency-key", help="The same key twice queues one message.")
    ] = None,
    arquivo: Annotated[
        Path | None,
        typer.Option(
            "--arquivo",
            help="CSV with telefone, texto (and optional tipo, idempotency_key, prioridade,"
            " agendar_para): all rows or none.",
        ),
    ] = None,
    json_: JsonOpt = False,
    operador: OperadorOpt = None,
) -> None:
    """Queue an operator's manual message (or many, from a CSV file)."""
    if arquivo is None and (telefone is None or texto is None):
        raise InvalidInput("give --telefone and --texto, or --arquivo FILE.csv")
    if arquivo is not None and (telefone or texto):
        raise InvalidInput("--arquivo cannot be combined with --telefone/--texto")
    async with open_app() as a:
        actor = audit.Actor.of(a, operador)
        if arquivo is not None:
            many = await manual.enqueue_file(a, arquivo, actor=actor)
            if json_:
                render.print_json(many.as_dict())
            else:
                render.message(
                    f"{arquivo}: {many.inserted} queued ({many.blocked} blocked: opted out),"
                    f" {many.duplicates} already queued"
                )
            return
        one = await queue.enqueue(
            a,
            queue.NewMessage(
                telefone=telefone, texto=texto or "", tipo=tipo, prioridade=prioridade,
                agendar_para=agendar_para,
                idempotency_key=idempotency_key,
            ),
            actor=actor,
        )  # fmt: skip
    if json_:
        render.print_json({"id": one.id, "created": one.created, "status": one.status})
    else:
        what = "queued" if one.created else "already queued"
        render.message(f"message {one.id} {what} ({one.status})")


@app.command("status")
async def status(json_: JsonOpt = False) -> None:
    """Counts by status, oldest pending age, sent and errors in the last hour."""
    async with open_app() as a:
        st = await queue.stats(a)
    if json_:
        render.print_json(st)
        return
    render.table(
        ({"status": k, "count": v} for k, v in st["counts"].items()), ["status", "count"],
        title="fila_mensagens",
    )  # fmt: skip
    render.console.print(
        f"oldest pending: {st['oldest_pending_age_s']} s · sent last hour: {st['sent_last_hour']}"
        f" · errors last hour: {st['errors_last_hour']} · mean due→sent:"
        f" {render.fmt(st['mean_processing_s'])} s",
        highlight=False,
    )


@app.command("list")
async def list_(
    status: Annotated[str | None, typer.Option("--status", help="Only this status.")] = None,
    limit: Annotated[int, typer.Option("--limit", help="At most this many rows.", min=1)] = 50,
    json_: JsonOpt = False,
) -> None:
    """List messages, most recently changed first."""
    async with open_app() as a:
        rows = await queue.list_messages(a, status=status, limit=limit)
    _render_list(rows, json_, f"{len(rows)} mensagens")


@app.command("show")
async def show(id: IdArg, json_: JsonOpt = False) -> None:
    """One message with every recorded transition."""
    async with open_app() as a:
        m = await queue.get(a, id)
        events = await queue.history(a, id)
    if json_:
        render.print_json(m.as_dict() | {"history": events})
        return
    render.message(f"({render.tz_label()})")
    for k, v in _row(m, short=False).items():
        render.field(k, v, 22)
    render.table(events, ["at", "de", "para", "outcome", "motivo", "worker"], title="history")


@app.command("cancel")
async def cancel(
    id: IdArg,
    motivo: Annotated[str | None, typer.Option("--motivo", help="Why (audit log).")] = None,
    json_: JsonOpt = False,
    operador: OperadorOpt = None,
) -> None:
    """Cancel a message that was not sent yet."""
    async with open_app() as a:
        m = await queue.cancel(a, id, actor=audit.Actor.of(a, operador), motivo=motivo)
    if json_:
        render.print_json(m.as_dict())
    else:
        render.message(f"message {m.id} cancelled")


@app.command("resolve")
async def resolve(
    id: IdArg,
    enviada: Annotated[
        bool | None,
        typer.Option("--enviada/--reenviar", help="It arrived (enviada), or send it again."),
    ] = None,
    motivo: Annotated[str | None, typer.Option("--motivo", help="Why (audit log).")] = None,
    json_: JsonOpt = False,
    operador: OperadorOpt = None,
) -> None:
    """Settle an uncertain (incerta) message the gateway's history could not settle."""
    if enviada is None:
        raise InvalidInput("say --enviada (it arrived) or --reenviar (send it again)")
    async with open_app() as a:
        m = await queue.resolve_uncertain(
            a, id, sent=enviada, actor=audit.Actor.of(a, operador), motivo=motivo
        )
    if json_:
        render.print_json(m.as_dict())
    else:
        render.message(f"message {m.id} is now {m.status}")


@app.command("rescue")
async def rescue(json_: JsonOpt = False) -> None:
    """Rescue expired leases now and reconcile uncertain sends (the worker also does this)."""
    async with open_app() as a:
        rescued = await queue.rescue(a)
        reconciled = await send.reconcile(a)
    data = {"rescue": rescued.as_dict(), "reconcile": reconciled.as_dict()}
    if json_:
        render.print_json(data)
    else:
        render.message(
            f"rescued: {_counts(data['rescue'])}; reconciled: {_counts(data['reconcile'])}"
        )


def _counts(d: dict[str, Any]) -> str:
    return ", ".join(f"{k} {render.fmt(v)}" for k, v in d.items()) or "nothing"


@dlq_app.command("list")
async def dlq_list(
    limit: Annotated[int, typer.Option("--limit", help="At most this many rows.", min=1)] = 50,
    json_: JsonOpt = False,
) -> None:
    """Messages that failed all their attempts (or cannot be sent)."""
    async with open_app() as a:
        rows = await queue.dlq_list(a, limit=limit)
    _render_list(rows, json_, f"{len(rows)} in the DLQ")


@dlq_app.command("replay")
async def dlq_replay(
    ids: Annotated[list[int] | None, typer.Argument(help="Message ids to replay.")] = None,
    all_: Annotated[bool, typer.Option("--all", help="Replay every dead letter.")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only say what would move.")] = False,
    json_: JsonOpt = False,
    operador: OperadorOpt = None,
) -> None:
    """Queue dead letters again with their attempts reset (recorded in the audit log)."""
    async with open_app() as a:
        replayed = await queue.dlq_replay(
            a, ids or None, all_=all_, dry_run=dry_run, actor=audit.Actor.of(a, operador)
        )
    if json_:
        render.print_json({"replayed": replayed, "dry_run": dry_run})
    else:
        verb = "would replay" if dry_run else "replayed"
        render.message(f"{verb} {len(replayed)} message(s): {', '.join(map(str, replayed))}")


@dlq_app.command("purge")
async def dlq_purge(
    older_than: Annotated[
        float, typer.Option("--older-than", help="Delete dead letters older than DAYS.", min=0)
    ],
    json_: JsonOpt = False,
    operador: OperadorOpt = None,
) -> None:
    """Delete old dead letters (recorded in the audit log)."""
    async with open_app() as a:
        n = await queue.dlq_purge(a, older_than_days=older_than, actor=audit.Actor.of(a, operador))
    if json_:
        render.print_json({"purged": n})
    else:
        render.message(f"purged {n} dead letter(s)")
