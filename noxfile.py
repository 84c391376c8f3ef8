"""Sessions: tests, lint, typecheck, docs, bench, demo (``nox -s NAME``)."""

from __future__ import annotations

import os
import shutil

import nox

nox.options.sessions = ["lint", "typecheck", "tests"]
nox.options.reuse_existing_virtualenvs = True

PYTHON = "3.11"


def _node_packages(session: nox.Session) -> None:
    if shutil.which("npm") is None:
        if os.environ.get("CI") == "true":
            session.error("node/npm are required under CI")
        session.warn("npm not found: the Node interop tests will be skipped")
        return
    session.run("npm", "ci", "--no-audit", "--no-fund", "--prefix", "js", external=True)


@nox.session(python=PYTHON)
def tests(session: nox.Session) -> None:
    """The whole test suite (Node packages installed into js/ first), on
    two pytest-xdist workers: much of the suite waits on real servers,
    browsers and Node processes, so two workers overlap the waits. Pass
    ``-- -n 0`` for one process (and ``-s`` to see the tests' prints)."""
    session.install("-e", ".[dev]")
    _node_packages(session)
    session.run("pytest", "-n", "2", "--dist", "worksteal", *session.posargs)


@nox.session(python=PYTHON)
def soak(session: nox.Session) -> None:
    """The long soaks the default suite leaves out (``pytest -m soak``)."""
    session.install("-e", ".[dev]")
    session.run("pytest", "-m", "soak", "-s", *session.posargs)


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    session.install("ruff")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session(python=PYTHON)
def typecheck(session: nox.Session) -> None:
    session.install("-e", ".[dev]")
    session.run("mypy")


@nox.session(python=PYTHON)
def bench(session: nox.Session) -> None:
    """Benchmarks: every transport and a Node ws reference side by side
    (docs/benchmarks.md); arguments go to run.py, e.g. ``-- --quick``.
    Raw results land in benchmarks/results/, which git ignores."""
    session.install("-e", ".[dev]", "py-spy")
    if shutil.which("npm") is None:
        session.error("the benchmark needs node and npm")
    session.run(
        "npm",
        "ci",
        "--no-audit",
        "--no-fund",
        "--prefix",
        "benchmarks/node-ref",
        external=True,
    )
    session.run("python", "benchmarks/run.py", *session.posargs)
    session.run("python", "benchmarks/redis_bench.py")
    session.run("python", "benchmarks/redis_sessions_bench.py")
    session.run("python", "benchmarks/history_bench.py")
    session.run("python", "benchmarks/presence_bench.py")
    session.run("python", "benchmarks/presence_cost.py")
    session.run("python", "benchmarks/presence_life.py")
    session.run("python", "benchmarks/recovery_bench.py")


@nox.session(python=PYTHON)
def demo(session: nox.Session) -> None:
    """The demo chat server on http://127.0.0.1:8000 (Ctrl-C stops it)."""
    session.install("-e", ".")
    session.run(
        "hypercorn",
        "--worker-class",
        "trio",
        "--bind",
        "127.0.0.1:8000",
        "trio_cable.demo:app",
        *session.posargs,
    )
