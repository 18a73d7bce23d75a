"""Inbound media: get the bytes and keep them (Supabase Storage, or a local folder).

Where the bytes come from, in order: the webhook itself (Evolution with
``base64: true``), a plain URL (Z-API's ``audioUrl``, Evolution's S3 ``mediaUrl``),
or the gateway when its adapter offers ``get_media``. WhatsApp's own ``.enc`` CDN
URLs are encrypted and never fetched directly.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import mimetypes
import re
from pathlib import Path
from typing import Any

from julia.core.app import App
from julia.core.logs import get_logger
from julia.core.settings import secret
from julia.inbox.processors.base import Message
from julia.inbox.processors.outbound import gateway_for

log = get_logger(__name__)
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")


async def fetch(app: App, msg: Message, payload: dict[str, Any]) -> bytes | None:
    """The media bytes of a message, or None when they cannot be had."""
    inline = _inline_base64(payload)
    if inline is not None:
        try:
            return base64.b64decode(inline, validate=True)
        except (binascii.Error, ValueError):
            log.warning("inbox.media_bad_base64", id=msg.id)
    url = (msg.midia or {}).get("url")
    if isinstance(url, str) and url.startswith("https://") and ".enc" not in url:
        response = await app.http.get(url)
        if response.status_code == 200:
            return response.content
        log.warning("inbox.media_download_failed", id=msg.id, http_status=response.status_code)

    gateway = gateway_for(app, msg.provider)
    get_media = getattr(gateway, "get_media", None)
    if get_media is not None and msg.instance:
        data: bytes | None = await get_media(msg.instance, msg.provider_message_id)
        return data
    return None


def _inline_base64(payload: dict[str, Any]) -> str | None:
    data = payload.get("data")
    message = data.get("message") if isinstance(data, dict) else None
    value = message.get("base64") if isinstance(message, dict) else None
    return value if isinstance(value, str) and value else None


def object_path(msg: Message) -> str:
    """``evolution/2026-01/<message id>.ogg``: stable, so a retry overwrites, never doubles."""
    mimetype = str((msg.midia or {}).get("mimetype") or "").split(";", 1)[0].strip()
    ext = mimetypes.guess_extension(mimetype) or ".bin" if mimetype else ".bin"
    if mimetype == "audio/ogg":
        ext = ".ogg"
    name = _UNSAFE.sub("_", msg.provider_message_id)[:120]
    return f"{msg.provider}/{msg.received_at:%Y-%m}/{name}{ext}"


async def store(app: App, msg: Message, data: bytes) -> str:
    """Keep the bytes; returns where (``supabase://bucket/path`` or a file path)."""
    path = object_path(msg)
    s = app.settings
    key = secret(s.media_supabase_key)
    if s.media_supabase_url and key:
        client = app.extensions.get("supabase_media")
        if client is None:
            from supabase import acreate_client

            client = await acreate_client(s.media_supabase_url, key)
            app.extensions["supabase_media"] = client
        mimetype = str((msg.midia or {}).get("mimetype") or "application/octet-stream")
        await client.storage.from_(s.media_supabase_bucket).upload(
            path, data, {"content-type": mimetype, "upsert": "true"}
        )
        return f"supabase://{s.media_supabase_bucket}/{path}"
    target = (s.media_dir or (s.home / "media")) / path
    await asyncio.to_thread(_write, target, data)
    return str(target)


def _write(target: Path, data: bytes) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(target.suffix + ".part")
    tmp.write_bytes(data)
    tmp.replace(target)
