"""``julia top``'s drawing: one function from the overview data to a Rich renderable.

Kept apart from the live loop so it can be tested on real data without a terminal.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from rich.console import Group, RenderableType
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from julia_cli.render import fmt, local_time

_BARS = "▁▂▃▄▅▆▇█"
_STATE_STYLE = {"closed": "green", "half_open": "yellow", "open": "red", "forced_open": "red",
                "disabled": "dim"}  # fmt: skip
_SEVERITY_STYLE = {"info": "cyan", "warning": "yellow", "critical": "bold red"}
_LEVEL_STYLE = {"verde": "green", "amarelo": "yellow", "laranja": "dark_orange",
                "vermelho": "red", "critico": "bold red"}  # fmt: skip


def sparkline(values: list[int]) -> str:
    """One block character per value, scaled to the largest."""
    if not values:
        return ""
    top = max(values)
    if top == 0:
        return _BARS[0] * len(values)
    return "".join(_BARS[min(len(_BARS) - 1, round(v / top * (len(_BARS) - 1)))] for v in values)


def _na(title: str) -> Panel:
    return Panel(Text("not available", style="dim"), title=title, title_align="left")


def _queue(view: dict[str, Any]) -> Panel:
    q = view.get("queue")
    if q is None:
        return _na("queue")
    counts = q.get("counts", {})
    line = Text()
    for status in ("pendente", "processando", "enviada", "incerta", "dlq", "bloqueada",
                   "expirada", "cancelada"):  # fmt: skip
        n = counts.get(status, 0)
        style = "bold red" if status in ("dlq", "incerta") and n else ""
        line.append(f"{status} ", style="dim")
        line.append(f"{n}  ", style=style)
    tp = view.get("throughput") or []
    spark = Text(f"sent/min (last {len(tp)} min) ")
    spark.append(sparkline(tp), style="green")
    spark.append(f"  {tp[-1] if tp else 0}/min now, {sum(tp)} total")
    age = q.get("oldest_pending_age_s") or 0
    facts = Text(
        f"oldest due {age / 60:.1f} min · sent 1 h {q.get('sent_last_hour', 0)}"
        f" · errors 1 h {q.get('errors_last_hour', 0)}"
        f" · mean due→sent {fmt(q.get('mean_processing_s'))} s"
    )
    return Panel(Group(line, spark, facts), title="queue", title_align="left")


def _workers(view: dict[str, Any]) -> Panel:
    rows = view.get("workers")
    if rows is None:
        return _na("workers")
    t = Table(box=None, show_header=True, header_style="bold", expand=True)
    for col in ("worker", "state", "last beat", "processed", "failed"):
        t.add_column(col)
    for w in rows:
        style = {"alive": "green", "dead": "bold red", "stopped": "dim"}.get(w["state"], "")
        t.add_row(Text(w["id"]), Text(w["state"], style=style), f"{w['age_s']:.0f} s ago",
                  str(w["processed"]), str(w["failed"]))  # fmt: skip
    if not rows:
        t.add_row(Text("no worker", style="bold red"), "", "", "", "")
    return Panel(t, title="workers", title_align="left")


def _chips(view: dict[str, Any]) -> Panel:
    rows = view.get("chips")
    if rows is None:
        return _na("chips")
    t = Table(box=None, show_header=True, header_style="bold", expand=True)
    for col in ("id", "number", "status", "trust", "circuit", "sent 24h", "err 24h"):
        t.add_column(col)
    for c in rows:
        level = Text(f"{c['trust_score']} {c['trust_level']}",
                     style=_LEVEL_STYLE.get(c["trust_level"], ""))  # fmt: skip
        t.add_row(str(c["id"]), Text(c["telefone"]), Text(c["status"]), level,
                  Text(c["circuit"], style=_STATE_STYLE.get(c["circuit"], "")),
                  str(c["sent_24h"]), str(c["errors_24h"]))  # fmt: skip
    return Panel(t, title=f"chips ({len(rows)})", title_align="left")


def _circuits(view: dict[str, Any]) -> Panel:
    states = view.get("circuits")
    if states is None:
        return _na("circuits")
    line = Text()
    for name, state in sorted(states.items()):
        if name.startswith("chip:") and state == "closed":
            continue
        line.append(f"{name} ", style="dim")
        line.append(f"{state}  ", style=_STATE_STYLE.get(state, ""))
    return Panel(line, title="circuits", title_align="left")


def _alerts(view: dict[str, Any]) -> Panel:
    t = Table(box=None, show_header=False, expand=True)
    t.add_column("when", no_wrap=True)
    t.add_column("severity", no_wrap=True)
    t.add_column("kind", no_wrap=True)
    t.add_column("message")
    for a in view.get("alerts") or []:
        when = a["created_at"]
        repeats = f" (×{a['repeats'] + 1})" if a["repeats"] else ""
        t.add_row(local_time(when).strftime("%H:%M:%S") if isinstance(when, datetime)
                  else str(when),
                  Text(a["severity"], style=_SEVERITY_STYLE.get(a["severity"], "")),
                  Text(a["kind"]), Text(a["message"] + repeats))  # fmt: skip
    if not view.get("alerts"):
        t.add_row("", "", "", Text("no alerts", style="dim"))
    return Panel(t, title="recent alerts", title_align="left")


def _handoffs(view: dict[str, Any]) -> Panel:
    h = view.get("handoffs")
    if h is None:
        return _na("handoffs waiting")
    lines = [Text(f"{h['count']} conversation(s) with a human")]
    for item in h["items"]:
        lines.append(Text(f"  #{item['conversa_id']} {item['nome']} {item['telefone']}"
                          f" · {item['waiting_min']} min"))  # fmt: skip
    return Panel(Group(*lines), title="handoffs waiting", title_align="left")


def render_top(view: dict[str, Any], *, live: bool = True) -> RenderableType:
    """The whole dashboard for one overview (see :func:`julia.ops.overview.overview`);
    ``live`` adds the how-to-quit hint (not on a ``--once`` frame)."""
    at = view.get("at")
    header = Text(f"Júlia · {local_time(at):%Y-%m-%d %H:%M:%S %Z}" if isinstance(at, datetime)
                  else "Júlia", style="bold")  # fmt: skip
    if live:
        header.append("   q or Ctrl-C to quit", style="dim")
    return Group(header, _queue(view), _workers(view), _chips(view), _circuits(view),
                 _alerts(view), _handoffs(view))  # fmt: skip
