"""Helpers for the migration runner's tests: paths, the test role, a runner process driver.

A plain module (not conftest) so that test modules can import it; pytest.ini puts the repository
root on sys.path, so it is ``tests.migrate.runner_harness`` (tests/ and tests/migrate/ are
namespace packages: no __init__.py).
"""

from __future__ import annotations

import atexit
import importlib.util
import json
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import IO

import pytest

from testbed import pgserver

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
RUNNER = REPO / "migrate" / "runner.py"
FAKE_MIGRATE = HERE / "fake_migrate.sh"
MIGRATIONS = HERE / "migrations"

ROLE = "migrator"
APP_DB = "app"
#: Every character that breaks a naively built URL: @ : / % ? # & and a space.
PASSWORD = "p@ss:w/rd%?#& x"


def load_runner_module() -> ModuleType:
    """Import migrate/runner.py as a module (it is a script, not a package)."""
    spec = importlib.util.spec_from_file_location("migrate_runner", RUNNER)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["migrate_runner"] = module
    spec.loader.exec_module(module)
    return module


def advisory_locks(pg: pgserver.PgServer, database: str, key: int) -> list[tuple[int, bool]]:
    """(pid, granted) of every session holding or waiting for advisory lock ``key``."""
    hi, lo = (key >> 32) & 0xFFFFFFFF, key & 0xFFFFFFFF
    with pg.admin(database) as conn:
        rows = conn.execute(
            "SELECT pid, granted FROM pg_locks WHERE locktype = 'advisory'"
            " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
            " AND classid::bigint = %s AND objid::bigint = %s AND objsubid = 1",
            (hi, lo),
        ).fetchall()
    return [(int(pid), bool(granted)) for pid, granted in rows]


@dataclass
class Result:
    code: int
    stdout: str
    stderr: str

    @property
    def stderr_lines(self) -> list[str]:
        return [line for line in self.stderr.splitlines() if line.strip()]


class Runner:
    """One ``python migrate/runner.py`` process, output captured to files (readable live)."""

    def __init__(self, env: dict[str, str], workdir: Path, name: str) -> None:
        self.name = name
        self.out_path = workdir / f"{name}.stdout"
        self.err_path = workdir / f"{name}.stderr"
        self._out: IO[bytes] = self.out_path.open("wb")
        self._err: IO[bytes] = self.err_path.open("wb")
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            [sys.executable, str(RUNNER)],
            env=env,
            cwd=str(REPO),
            stdin=subprocess.DEVNULL,
            stdout=self._out,
            stderr=self._err,
        )

    def stdout(self) -> str:
        return self.out_path.read_text(errors="replace")

    def wait_for_output(self, text: str, timeout: float = 10, *, whole_line: bool = False) -> None:
        """Wait until stdout holds ``text`` (or a line equal to it: the command's own output,
        not the runner's "running: …" line that quotes the command)."""

        def seen() -> bool:
            out = self.stdout()
            return text in out.splitlines() if whole_line else text in out

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if seen():
                return
            if self.proc.poll() is not None and not seen():
                break
            time.sleep(0.01)
        raise AssertionError(
            f"runner {self.name} never printed {text!r}; exit={self.proc.poll()}\n"
            f"stdout:\n{self.stdout()}\nstderr:\n{self.err_path.read_text()}"
        )

    def signal(self, signum: int) -> None:
        self.proc.send_signal(signum)

    def wait(self, timeout: float = 20) -> Result:
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"runner {self.name} still running after {timeout} s:\n{self.stdout()}") from None
        finally:
            self._out.close()
            self._err.close()
        return Result(code, self.stdout(), self.err_path.read_text(errors="replace"))

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)


def serve_app_database() -> Iterator[pgserver.PgServer]:
    """A TLS PostgreSQL server with the runner's role and database, stopped afterwards; the test
    is skipped where no server binaries exist. Fixtures `yield from` it."""
    try:
        server = pgserver.start_server(tls=True)
    except pgserver.PgUnavailableError as exc:
        pytest.skip(f"no PostgreSQL server to test against: {exc}")
    try:
        server.create_role_and_db(ROLE, PASSWORD, APP_DB)
        yield server
    finally:
        server.stop()


class ForkedRunner:
    """`run(env)` as `subprocess.run([python, runner.py], env=env, cwd=REPO, stdin=DEVNULL)` answers
    it, from a fork server that imported the runner once (runner_forks.py). For the tests of what the
    runner refuses before it connects: dozens of them, each otherwise a new interpreter."""

    _instance: ForkedRunner | None = None

    def __init__(self, workdir: Path) -> None:
        self._workdir = workdir
        self._count = 0
        self._lock = threading.Lock()
        self._server = subprocess.Popen(
            [sys.executable, str(HERE / "runner_forks.py")],
            cwd=str(REPO),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    @classmethod
    def shared(cls) -> ForkedRunner:
        """One server per test process, stopped when the process ends."""
        if cls._instance is None:
            cls._instance = cls(Path(tempfile.mkdtemp(prefix="runner-forks-")))
            atexit.register(cls._instance.close)
        return cls._instance

    def run(self, env: dict[str, str]) -> subprocess.CompletedProcess[bytes]:
        with self._lock:
            self._count += 1
            out, err = (self._workdir / f"{self._count}.{name}" for name in ("stdout", "stderr"))
            out.touch()
            err.touch()
            assert self._server.stdin is not None and self._server.stdout is not None
            self._server.stdin.write(json.dumps({"env": env, "out": str(out), "err": str(err)}) + "\n")
            self._server.stdin.flush()
            answer = self._server.stdout.readline()
            if not answer:
                raise AssertionError(f"the runner fork server ended (exit {self._server.wait()})")
            code = json.loads(answer)["code"]
            return subprocess.CompletedProcess([sys.executable, str(RUNNER)], code, out.read_bytes(), err.read_bytes())

    def close(self) -> None:
        if self._server.stdin is not None:
            self._server.stdin.close()
        self._server.wait(timeout=10)
        shutil.rmtree(self._workdir, ignore_errors=True)
