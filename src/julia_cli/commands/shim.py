"""``julia shim serve``: the webhook shim under uvicorn."""

from __future__ import annotations

import ipaddress
from typing import Annotated

import typer

from julia.core.errors import ConfigError
from julia.inbox.auth import unsecured_routes
from julia_cli import render
from julia_cli.base import JuliaTyper, daemon

app = JuliaTyper(name="shim", help="The webhook shim (Evolution, Z-API, Chatwoot).")


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and ``localhost``: only this machine can reach it."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a name that may resolve anywhere, or 0.0.0.0-like wildcards


@app.command("serve")
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    workers: Annotated[int, typer.Option(help="Worker processes.", min=1)] = 1,
    insecure: Annotated[
        bool,
        typer.Option(
            "--insecure",
            help="Serve on a non-loopback address although a webhook route has no secret.",
        ),
    ] = False,
) -> None:
    """Serve the webhook shim (POST /webhooks/..., GET /health, /health/ready, /metrics)."""
    import uvicorn

    config = daemon()  # fail early, as one line, on invalid settings; log as configured
    open_routes = unsecured_routes(config)
    if open_routes and not insecure and not is_loopback(host):
        raise ConfigError(
            f"refusing to serve {', '.join(open_routes)} unauthenticated on {host}: set"
            " JULIA_WEBHOOK_TOKEN / JULIA_CHATWOOT_WEBHOOK_SECRET, or pass --insecure"
        )
    render.notice(
        f"shim listening on http://{host}:{port} ({workers} process(es)): POST /webhooks/...,"
        " GET /health, /health/ready, /metrics"
    )
    uvicorn.run(
        "shim.app:app_from_env",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        access_log=False,
        log_level="warning",
        # h11 bounds what it buffers for one request's head (httptools has no limit).
        http="h11",
        h11_max_incomplete_event_size=config.webhook_max_header_bytes,
        timeout_keep_alive=5,
    )
