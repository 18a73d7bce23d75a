"""``julia info``, ``julia config``, ``julia db``, ``julia local``."""

from __future__ import annotations

import asyncio

from julia.core import local, migrations, system
from julia.core.app import resolve_endpoints
from julia_cli import render
from julia_cli.base import JsonOpt, JuliaTyper, settings


async def info(json_: JsonOpt = False) -> None:
    """Which database and Redis are in use, the migrations, and the version."""
    data = await system.describe(settings())
    if json_:
        render.print_json(data)
        return
    render.message(f"Júlia {data['version']}  (home: {data['home']})")
    for name in ("database", "redis"):
        kind = "embedded" if data[name]["embedded"] else "external"
        render.message(f"{name:9} {data[name]['url']}  ({kind})")
    m = data["migrations"]
    render.message(f"migrations: {len(m['applied'])} applied, {len(m['pending'])} pending")
    for name in m["pending"]:
        render.message(f"  pending: {name}")


config_app = JuliaTyper(name="config", help="Show the effective configuration.")


@config_app.command("show")
def config_show(json_: JsonOpt = False) -> None:
    """Print every setting's effective value, secrets masked."""
    values = settings().masked()
    if json_:
        render.print_json(values)
        return
    render.table(
        ({"setting": f"JULIA_{k.upper()}", "value": v} for k, v in values.items()),
        ["setting", "value"],
    )


db_app = JuliaTyper(name="db", help="Database schema: migrate and status.")


def _db_url() -> str:
    return resolve_endpoints(settings()).database_url


@db_app.command("migrate")
async def db_migrate(json_: JsonOpt = False) -> None:
    """Apply pending migrations (safe to run concurrently and repeatedly)."""
    url = await asyncio.to_thread(_db_url)
    applied = await migrations.migrate(url, settings().migrations_dir)
    if json_:
        render.print_json({"applied": applied})
    elif applied:
        for name in applied:
            render.message(f"applied {name}")
    else:
        render.message("nothing to apply: the schema is up to date")


@db_app.command("status")
async def db_status(json_: JsonOpt = False) -> None:
    """List applied and pending migrations."""
    url = await asyncio.to_thread(_db_url)
    st = await migrations.status(url, settings().migrations_dir)
    if json_:
        render.print_json(
            {
                "applied": [
                    {"name": m.name, "checksum": m.checksum, "applied_at": m.applied_at,
                     "changed": m.changed}
                    for m in st.applied
                ],
                "pending": st.pending,
            }
        )  # fmt: skip
        return
    rows = [{"migration": m.name, "state": "changed!" if m.changed else "applied",
             "applied_at": m.applied_at} for m in st.applied]  # fmt: skip
    rows += [{"migration": name, "state": "pending", "applied_at": None} for name in st.pending]
    render.table(rows, ["migration", "state", "applied_at"])


local_app = JuliaTyper(name="local", help="The embedded PostgreSQL and Redis under JULIA_HOME.")


@local_app.command("status")
def local_status(json_: JsonOpt = False) -> None:
    """Show whether the embedded servers are running."""
    servers = local.status(settings().home)
    if json_:
        render.print_json(servers)
        return
    render.table((s.__dict__ for s in servers), ["name", "running", "pid", "url", "data_dir"])


@local_app.command("stop")
def local_stop() -> None:
    """Stop the embedded servers (they start again on next use)."""
    home = settings().home
    clients = local.postgres_clients(home)
    if clients:
        render.notice(
            f"warning: {clients} client connection(s) on the embedded PostgreSQL (a shim,"
            " worker or scheduler?): they fail until the servers start again"
        )
    stopped = local.stop(home)
    render.message("stopped: " + (", ".join(stopped) if stopped else "nothing was running"))
