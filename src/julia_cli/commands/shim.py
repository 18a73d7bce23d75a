"""``julia shim serve``: the webhook shim under uvicorn."""

from __future__ import annotations

from typing import Annotated

import typer

from julia_cli import render
from julia_cli.base import JuliaTyper, daemon

app = JuliaTyper(name="shim", help="The webhook shim (Evolution, Z-API, Chatwoot).")


@app.command("serve")
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    workers: Annotated[int, typer.Option(help="Worker processes.", min=1)] = 1,
) -> None:
    """Serve the webhook shim (POST /webhooks/..., GET /health, /health/ready, /metrics)."""
    import uvicorn

    daemon()  # fail early, as one line, on invalid settings; log as configured
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
    )
