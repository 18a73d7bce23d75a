"""The demo's process supervisor: every component is its own ``julia`` process.

Each child starts in its own session (a Ctrl-C on the terminal reaches only the
demo, which then stops the children in reverse order: SIGTERM, a grace period, then
SIGKILL of the child's whole process group). :meth:`Supervisor.stop` is idempotent
and also registered with :mod:`atexit`, so no path out of the demo leaves a process
behind.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Child:
    name: str
    args: list[str]
    log: Path
    proc: subprocess.Popen[bytes]
    url: str | None = None


@dataclass
class Supervisor:
    """Starts ``python -m julia_cli ...`` children with one environment; stops them all."""

    env: dict[str, str]
    logs: Path
    children: list[Child] = field(default_factory=list)
    grace_s: float = 10.0

    def __post_init__(self) -> None:
        self.logs.mkdir(parents=True, exist_ok=True)
        atexit.register(self.stop)

    def start(self, name: str, *args: str, url: str | None = None) -> Child:
        """``julia ARGS...`` (as ``python -m julia_cli``)."""
        return self.start_python(name, "-m", "julia_cli", *args, url=url)

    def start_python(self, name: str, *args: str, url: str | None = None) -> Child:
        log = self.logs / f"{name}.log"
        with log.open("ab") as out:
            proc = subprocess.Popen(  # noqa: S603 (our own interpreter)
                [sys.executable, *args],
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        child = Child(name, list(args), log, proc, url)
        self.children.append(child)
        # for an operator (and the test) to check that nothing outlived the demo
        pids = {c.name: c.proc.pid for c in self.children}
        (self.logs / "pids.json").write_text(json.dumps(pids))
        return child

    def wait_http(self, child: Child, path: str, timeout_s: float = 30.0) -> None:
        """Wait until the child answers ``GET url+path`` (any status below 500)."""
        self.wait_until(child, lambda: _answers(f"{child.url}{path}"), timeout_s)

    def wait_until(self, child: Child, ready: Callable[[], bool], timeout_s: float = 30.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if child.proc.poll() is not None:
                raise RuntimeError(f"{child.name} exited ({child.proc.returncode}): {tail(child)}")
            if ready():
                return
            time.sleep(0.1)
        raise RuntimeError(f"{child.name} did not become ready in {timeout_s:.0f}s: {tail(child)}")

    def dead(self) -> list[Child]:
        return [c for c in self.children if c.proc.poll() is not None]

    def stop(self) -> None:
        """Stop every child (reverse start order); kill what outlives the grace period."""
        for child in reversed(self.children):
            if child.proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(child.proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + self.grace_s
        for child in reversed(self.children):
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.proc.wait(max(0.0, deadline - time.monotonic()))
        for child in self.children:
            # the group too: a child's own children (uvicorn workers) must not survive it
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(child.proc.pid, signal.SIGKILL)
            if child.proc.poll() is None:
                child.proc.wait(5)
        self.children.clear()


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code < 500
    except httpx.HTTPError:
        return False


def tail(child: Child, lines: int = 5) -> str:
    try:
        text = child.log.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return " | ".join(text[-lines:])
