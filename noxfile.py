"""Developer and CI sessions. CI runs ``nox -s lint typecheck tests`` (see .ci/run)."""

from __future__ import annotations

import os

import nox

nox.options.default_venv_backend = "venv"
nox.options.reuse_existing_virtualenvs = True
nox.options.sessions = ["lint", "typecheck", "tests"]

PYTHON = "3.11"


@nox.session(python=PYTHON)
def tests(session: nox.Session) -> None:
    """Run the test suite against JULIA_TEST_DATABASE_URL/JULIA_TEST_REDIS_URL, else embedded."""
    session.install("-e", ".[local,test]")
    session.run("pytest", *session.posargs)


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    """ruff check, ruff format --check, and the library's floors (import-linter)."""
    # pinned: a new release must not turn CI red
    session.install("ruff==0.17.6", "import-linter==2.17")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")
    # The floors need the package importable: lint-imports reads the installed tree.
    session.install("-e", ".", "--no-deps")
    session.run("lint-imports")


@nox.session(python=PYTHON)
def typecheck(session: nox.Session) -> None:
    """mypy, strict on src/julia."""
    session.install("-e", ".[local,test]", "mypy>=1.11")
    session.run("mypy")


@nox.session(python=PYTHON)
def demo(session: nox.Session) -> None:
    """``julia demo --headless``: the whole system on this machine, the report as JSON last."""
    session.install("-e", ".[local]")
    env = {"JULIA_HOME": os.environ.get("JULIA_HOME", os.path.abspath(".julia"))}
    session.run("julia", "demo", "--headless", *session.posargs, env=env)


@nox.session(python=PYTHON)
def bench(session: nox.Session) -> None:
    """Run the benchmarks in benchmarks/ (each prints its figures, last line JSON)."""
    session.install("-e", ".[local,bench]")
    scripts = session.posargs or sorted(
        f"benchmarks/{f}" for f in os.listdir("benchmarks") if f.endswith(".py") and f[0] != "_"
    )
    for script in scripts:
        session.run("python", script)
