"""``julia sandbox``: local servers that speak external services' wire protocols."""

from __future__ import annotations

import os
from typing import Annotated

import typer

from julia.sandbox import chatwoot as chatwoot_sandbox
from julia.sandbox import gateway
from julia.sandbox import llm as llm_sandbox
from julia.sandbox import slack as slack_sandbox
from julia_cli import render
from julia_cli.base import JuliaTyper

app = JuliaTyper(name="sandbox", help="Sandbox servers for tests and demos.")


@app.command("gateway")
def gateway_(
    port: Annotated[int, typer.Option("--port", help="Port to listen on.")] = 8081,
    host: Annotated[str, typer.Option("--host", help="Address to bind.")] = "127.0.0.1",
    webhook_url: Annotated[
        str | None,
        typer.Option("--webhook-url", help="Where to POST webhooks (messages.upsert / update)."),
    ] = None,
    api_key: Annotated[
        str | None, typer.Option("--api-key", help="Require this apikey header (default: any).")
    ] = None,
    auto_ack: Annotated[
        bool, typer.Option("--auto-ack", help="POST a DELIVERY_ACK webhook after each send.")
    ] = False,
) -> None:
    """Run an Evolution API v2 sandbox gateway (GET /_sandbox/messages, POST /_sandbox/faults)."""
    render.message(f"sandbox gateway on http://{host}:{port} (webhooks: {webhook_url or 'off'})")
    gateway.serve(host=host, port=port, webhook_url=webhook_url, api_key=api_key, auto_ack=auto_ack)


@app.command("slack")
def slack(
    port: Annotated[int, typer.Option("--port", help="Port to listen on.")] = 8090,
    host: Annotated[str, typer.Option("--host", help="Address to bind.")] = "127.0.0.1",
) -> None:
    """Run a Slack incoming-webhook sandbox (GET /_sandbox/messages, POST /_sandbox/faults)."""
    render.message(f"Slack sandbox on http://{host}:{port}/services/T000/B000/sandbox")
    slack_sandbox.serve(host=host, port=port)


@app.command("chatwoot")
def chatwoot(
    port: Annotated[int, typer.Option("--port", help="Port to listen on.")] = 8095,
    host: Annotated[str, typer.Option("--host", help="Address to bind.")] = "127.0.0.1",
    webhook_url: Annotated[
        str | None,
        typer.Option("--webhook-url", help="Where to POST Chatwoot webhooks (the shim's)."),
    ] = None,
    api_token: Annotated[
        str | None,
        typer.Option("--api-token", help="Require this api_access_token (default: any)."),
    ] = None,
) -> None:
    """Run a Chatwoot Application API sandbox; webhooks signed with
    JULIA_CHATWOOT_WEBHOOK_SECRET (GET /_sandbox/calls, /_sandbox/conversations,
    POST /_sandbox/reply, /_sandbox/resolve, /_sandbox/unlabel, /_sandbox/faults)."""
    secret = os.environ.get("JULIA_CHATWOOT_WEBHOOK_SECRET") or None
    render.message(
        f"Chatwoot sandbox on http://{host}:{port} (webhooks: {webhook_url or 'off'},"
        f" signed: {'yes' if secret else 'no'})"
    )
    chatwoot_sandbox.serve(
        host=host, port=port, webhook_url=webhook_url, secret=secret, api_token=api_token
    )


@app.command("llm")
def llm(
    port: Annotated[int, typer.Option("--port", help="Port to listen on.")] = 8093,
    host: Annotated[str, typer.Option("--host", help="Address to bind.")] = "127.0.0.1",
) -> None:
    """Run the rule-based sandbox model (POST /v1/messages; POST /_sandbox/faults)."""
    render.message(
        f"sandbox model on http://{host}:{port} (JULIA_ANTHROPIC_BASE_URL=http://{host}:{port})"
    )
    llm_sandbox.serve(host=host, port=port)
