"""deploy/ ships what runs: alert rules and a dashboard over metrics that exist, a
Compose file and systemd units whose commands are real ``julia`` commands."""

from __future__ import annotations

import configparser
import json
import re
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Any

import prometheus_client
import pytest
import typer
import yaml

from julia.core import metrics
from julia_cli.main import app

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"
METRIC = re.compile(r"\bjulia_[a-z0-9_]+\b")


def _exported_series() -> set[str]:
    """Every series name julia.core.metrics can expose (with the _total/_bucket... suffixes)."""
    names: set[str] = set()
    for value in vars(metrics).values():
        if isinstance(value, prometheus_client.metrics.MetricWrapperBase):
            for family in value.describe():
                base = family.name
                kind = family.type
                if kind == "counter":
                    names |= {f"{base}_total", f"{base}_created"}
                elif kind == "histogram":
                    names |= {f"{base}_bucket", f"{base}_sum", f"{base}_count"}
                else:
                    names.add(base)
    return names


def _rules() -> list[dict[str, Any]]:
    doc = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text())
    return [rule for group in doc["groups"] for rule in group["rules"]]


def test_every_metric_the_alerts_and_dashboard_name_exists() -> None:
    exported = _exported_series()
    assert "julia_sends_total" in exported and "julia_queue_depth" in exported
    rules = _rules()
    dash = json.loads((DEPLOY / "grafana" / "julia.json").read_text())
    exprs = [r["expr"] for r in rules] + [
        t["expr"] for p in dash["panels"] for t in p.get("targets", [])
    ]
    named = {m for e in exprs for m in METRIC.findall(e)}
    assert named and named - exported == set()


def test_the_alerts_cover_what_operators_asked_for() -> None:
    exprs = " ".join(r["expr"] for r in _rules())
    for metric in ("julia_queue_oldest_due_seconds", 'julia_queue_depth{status="dlq"}',
                   "julia_workers_alive", "julia_circuit_state", "julia_sends_total",
                   "julia_inbox_lag_seconds_bucket", "julia_llm_calls_total",
                   "julia_handoffs_waiting", "julia_redis_used_memory_bytes"):  # fmt: skip
        assert metric in exprs, metric
    assert all(r["labels"]["severity"] in ("warning", "critical") for r in _rules())


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool is not installed")
def test_promtool_accepts_the_rules() -> None:
    done = subprocess.run(
        ["promtool", "check", "rules", str(DEPLOY / "prometheus" / "alerts.yml")],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr


def _is_julia_command(argv: list[str]) -> bool:
    """``argv`` (after ``julia``) names a real command and only options it has."""
    cmd: Any = typer.main.get_command(app)
    rest = list(argv)
    while rest and getattr(cmd, "commands", None) and rest[0] in cmd.commands:
        cmd = cmd.commands[rest.pop(0)]
    options = {o for p in cmd.params for o in (*p.opts, *p.secondary_opts)}
    return all(a in options for a in rest if a.startswith("-"))


def test_compose_runs_the_daemons_against_one_postgres_and_redis() -> None:
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    services = compose["services"]
    assert {"postgres", "redis", "shim", "migrate"} <= set(services)
    julia = {n: s for n, s in services.items() if s.get("image") == "julia:latest"}
    commands = {n: s["command"] for n, s in julia.items()}
    assert sum(1 for c in commands.values() if c[0] == "worker") == 2
    assert sum(1 for c in commands.values() if c[0] == "scheduler") == 2
    assert commands["migrate"] == ["db", "migrate"]
    for name, argv in commands.items():
        assert _is_julia_command(argv), (name, argv)
        env = julia[name]["environment"]
        assert env["JULIA_DATABASE_URL"].endswith("@postgres:5432/julia")
        assert env["JULIA_REDIS_URL"] == "redis://redis:6379/0"
    for name in set(julia) - {"migrate"}:
        assert julia[name]["depends_on"]["migrate"]["condition"] == (
            "service_completed_successfully"
        )  # migrations first


def test_systemd_units_start_real_commands() -> None:
    units = sorted((DEPLOY / "systemd").glob("*.service"))
    assert {u.name for u in units} == {
        "julia-shim.service", "julia-worker@.service", "julia-scheduler.service",
    }  # fmt: skip
    for unit in units:
        parser = configparser.ConfigParser(interpolation=None, strict=False)
        parser.read(unit)
        service = parser["Service"]
        for key in ("ExecStart", "ExecStartPre"):
            if key in service:
                argv = shlex.split(service[key])
                assert argv[0].endswith("/julia") and _is_julia_command(argv[1:]), unit
        assert service["KillSignal"] == "SIGTERM"
