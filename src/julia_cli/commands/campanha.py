"""``julia campanha``: create, preview, send, pause, resume, cancel, list, status."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.markup import escape

from julia.campanhas import envio, store
from julia.campanhas import status as campanha_status
from julia.campanhas.segment import Segmento
from julia.core import audit
from julia_cli import render
from julia_cli.base import JsonOpt, JuliaTyper, OperadorOpt, open_app
from julia_cli.commands._progress import progress_bar

app = JuliaTyper(name="campanha", help="Campaigns: a message to a segment, paced by the chips.")

IdArg = Annotated[int, typer.Argument(help="The campaign id.")]
ReasonOpt = Annotated[str, typer.Option("--motivo", help="Why (recorded with your name).")]


@app.command("criar")
async def criar(
    nome: Annotated[str, typer.Option("--nome", help="The campaign's name.")],
    texto: Annotated[
        str,
        typer.Option(
            "--texto",
            help="Template: {nome}, {especialidade},"
            " {cidade}, {uf}; with --vaga {hospital}, {data}, {periodo}, {valor}.",
        ),
    ],
    especialidade: Annotated[
        str | None, typer.Option("--especialidade", help="Doctors of this specialty.")
    ] = None,
    uf: Annotated[
        str | None, typer.Option("--uf", help="Doctors in this state (two letters).")
    ] = None,
    cidade: Annotated[str | None, typer.Option("--cidade", help="Doctors in this city.")] = None,
    tag: Annotated[list[str] | None, typer.Option("--tag", help="Repeat: every tag.")] = None,
    sem_contato_dias: Annotated[
        float | None,
        typer.Option(
            "--sem-contato-dias", help="Last message sent more than N days ago (or never)."
        ),
    ] = None,
    nunca_contatado: Annotated[
        bool, typer.Option("--nunca-contatado", help="Only doctors never sent a message.")
    ] = False,
    respondeu_antes: Annotated[
        bool, typer.Option("--respondeu-antes", help="Only doctors who wrote to Júlia before.")
    ] = False,
    vaga_aberta: Annotated[
        bool,
        typer.Option("--vaga-aberta", help="Only doctors with an open shift in their specialty."),
    ] = False,
    vaga: Annotated[
        int | None, typer.Option("--vaga", help="The shift the message offers.")
    ] = None,
    ritmo: Annotated[
        int | None, typer.Option("--ritmo", help="Messages per hour in total.")
    ] = None,
    janela: Annotated[
        str | None,
        typer.Option(
            "--janela", help="Days and hours, e.g. 'seg-sex 09:00-18:00' (business time)."
        ),
    ] = None,
    inicio: Annotated[
        str | None, typer.Option("--inicio", help="Start date (schedules it).")
    ] = None,
    fim: Annotated[str | None, typer.Option("--fim", help="End date (inclusive).")] = None,
    json_: JsonOpt = False,
    operador: OperadorOpt = None,
) -> None:
    """Create a campaign (validated against its recipients; nothing written on bad input)."""
    seg = Segmento(especialidade=especialidade, uf=uf, cidade=cidade, tags=list(tag or []),
                   sem_contato_dias=sem_contato_dias, nunca_contatado=nunca_contatado,
                   respondeu_antes=respondeu_antes, vaga_aberta=vaga_aberta)  # fmt: skip
    async with open_app() as a:
        c = await envio.criar(a, store.NovaCampanha(
            nome=nome, texto=texto, segmento=seg, ritmo=ritmo, janela=janela, inicio=inicio,
            fim=fim, vaga_id=vaga), actor=audit.Actor.of(a, operador))  # fmt: skip
    if json_:
        render.print_json(c.as_dict())
    else:
        render.message(f"campanha {c.id} criada ({c.status}): {escape(c.nome)}")


@app.command("listar")
async def listar(json_: JsonOpt = False) -> None:
    """List campaigns, newest first."""
    async with open_app() as a:
        rows = await store.list_campanhas(a)
    if json_:
        render.print_json(rows)
        return
    render.table(({**r, "nome": escape(r["nome"])} for r in rows),
                 ["id", "nome", "status", "ritmo", "mensagens", "enviadas", "na_fila", "inicio",
                  "fim"], title=f"{len(rows)} campanhas")  # fmt: skip


@app.command("preview")
async def preview(cid: IdArg, json_: JsonOpt = False) -> None:
    """How many would get it, how many each rule removes, and ten rendered examples."""
    async with open_app() as a:
        p = await envio.preview(a, cid)
    if json_:
        render.print_json(p)
        return
    removed = ", ".join(f"{k} {v}" for k, v in p["removed"].items()) or "none"
    render.message(f"campanha {cid}: {p['count']} of {p['segment']} doctors; removed: {removed};"
                   f" pace {p['pace']}/h ({escape(p['capacity']['why'])})")  # fmt: skip
    for e in p["examples"]:
        render.message(f"  {e['telefone']}: {escape(e['texto'])}")


@app.command("enviar")
async def enviar(
    cid: IdArg,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Count and schedule, write nothing.")
    ] = False,
    json_: JsonOpt = False,
    operador: OperadorOpt = None,
) -> None:
    """Enqueue the campaign in batches (safe to run twice or after an interruption)."""
    async with open_app() as a:
        with progress_bar("enqueue", enabled=not json_) as progress:
            r = await envio.enviar(a, cid, actor=audit.Actor.of(a, operador), dry_run=dry_run,
                                   progress=progress)  # fmt: skip
    if json_:
        render.print_json(r)
        return
    skipped = ", ".join(f"{k} {v}" for k, v in r["skipped"].items()) or "none"
    verb = "would enqueue" if dry_run else "enqueued"
    render.message(
        f"campanha {cid}: {verb} {r['enqueued']}, already {r['already']},"
        f" skipped: {skipped}; pace {r['pace']}/h, last due {render.fmt(r['last_due'])}"
    )


def _simple(result: dict[str, Any], json_: bool, text: str) -> None:
    if json_:
        render.print_json(result)
    else:
        render.message(text)


@app.command("pausar")
async def pausar(cid: IdArg, motivo: ReasonOpt = "",
                 json_: JsonOpt = False, operador: OperadorOpt = None) -> None:  # fmt: skip
    """Pause: queued messages wait."""
    async with open_app() as a:
        r = await envio.pausar(a, cid, actor=audit.Actor.of(a, operador), motivo=motivo)
    _simple(r, json_, f"campanha {cid} pausada; {r['held']} messages wait")


@app.command("retomar")
async def retomar(cid: IdArg, motivo: ReasonOpt = "",
                  json_: JsonOpt = False, operador: OperadorOpt = None) -> None:  # fmt: skip
    """Resume: the waiting messages are spread again from now."""
    async with open_app() as a:
        r = await envio.retomar(a, cid, actor=audit.Actor.of(a, operador), motivo=motivo)
    _simple(r, json_, f"campanha {cid} retomada; {r['rescheduled']} rescheduled")


@app.command("cancelar")
async def cancelar(cid: IdArg, motivo: ReasonOpt = "",
                   json_: JsonOpt = False, operador: OperadorOpt = None) -> None:  # fmt: skip
    """Cancel: queued messages are cancelled (visible as such)."""
    async with open_app() as a:
        r = await envio.cancelar(a, cid, actor=audit.Actor.of(a, operador), motivo=motivo)
    _simple(r, json_, f"campanha {cid} cancelada; {r['cancelled']} messages cancelled")


@app.command("status")
async def status(cid: IdArg, json_: JsonOpt = False) -> None:
    """Queued, sent, delivered, read, replied, opted out, blocked, failed; sends per hour."""
    async with open_app() as a:
        s = await campanha_status.status(a, cid)
    if json_:
        render.print_json(s)
        return
    render.message(
        f"campanha {cid} {escape(s['nome'])}: {s['status']}"
        + (f" ({escape(s['status_motivo'])})" if s["status_motivo"] else "")
    )
    keys = [
        "queued",
        "sent",
        "delivered",
        "read",
        "replied",
        "opted_out",
        "blocked",
        "failed",
        "cancelled",
    ]
    render.message("  " + ", ".join(f"{k} {s[k]}" for k in keys))
    if s["blocked_by_reason"]:
        render.message("  blocked: " + ", ".join(f"{k} {v}" for k, v in
                                                 s["blocked_by_reason"].items()))  # fmt: skip
    for line in campanha_status.chart(s["sends_per_hour"]):
        render.message("  " + line)
