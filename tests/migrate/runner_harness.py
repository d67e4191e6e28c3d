"""Helpers for the migration runner's tests: paths, the test role, a runner process driver.

A plain module (not conftest) so that test modules can import it; pytest.ini puts the repository
root on sys.path, so it is ``tests.migrate.runner_harness`` (tests/ and tests/migrate/ are
namespace packages: no __init__.py).
"""

from __future__ import annotations

import atexit
import contextlib
import importlib.util
import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import IO, Protocol, TypeVar

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

T = TypeVar("T")


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


class Process(Protocol):
    """What the tests use of a runner's process: subprocess.Popen's surface."""

    @property
    def pid(self) -> int: ...

    def poll(self) -> int | None: ...

    def wait(self, timeout: float | None = None) -> int: ...

    def send_signal(self, sig: int) -> None: ...

    def kill(self) -> None: ...


class Runner:
    """One runner, output captured to files (readable live). Its process is forked from the fork
    server (ForkServer, the same entry point with the same environment, streams and exit code);
    ``new_process=True`` starts ``python migrate/runner.py`` instead."""

    def __init__(self, env: dict[str, str], workdir: Path, name: str, *, new_process: bool = False) -> None:
        self.name = name
        self.out_path = workdir / f"{name}.stdout"
        self.err_path = workdir / f"{name}.stderr"
        self._files: list[IO[bytes]] = []
        self.proc: Process
        if new_process:
            self._files = [self.out_path.open("wb"), self.err_path.open("wb")]
            self.proc = subprocess.Popen(
                [sys.executable, str(RUNNER)],
                env=env,
                cwd=str(REPO),
                stdin=subprocess.DEVNULL,
                stdout=self._files[0],
                stderr=self._files[1],
            )
        else:
            self.proc = ForkServer.shared().start(env, self.out_path, self.err_path, LIVE_SECONDS)

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
            time.sleep(0.005)  # a file read per poll: a finer poll costs nothing, a coarser one waits
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
            self.proc.wait(timeout=10)
            raise AssertionError(f"runner {self.name} still running after {timeout} s:\n{self.stdout()}") from None
        finally:
            for file in self._files:
                file.close()
        return Result(code, self.stdout(), self.err_path.read_text(errors="replace"))

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)


def first_in_order(attempt: Callable[[float], T], seconds: Sequence[float], in_order: Callable[[T], bool]) -> T:
    """For a test that needs the runner to reach a point (a line it prints) before a wait of its
    own runs out (a deadline, a lock or connect wait): ``attempt(value)`` runs the runner with the
    shortest value first; a run that did not get there in time (a loaded machine) is repeated with
    the next, longer one. The last value's run is returned whatever it shows, for the test's own
    assertions to judge: the order is checked, never assumed from a sleep."""
    for value in seconds[:-1]:
        result = attempt(value)
        if in_order(result):
            return result
    return attempt(seconds[-1])


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


#: A forked runner still running after this long is killed by its own alarm (a hang guard far above
#: the longest wait a test allows, 40 s).
LIVE_SECONDS = 90
#: The same guard for a configuration check (refused before it connects: it never waits).
CHECK_SECONDS = 30


class ForkedProcess:
    """A runner forked by the fork server, with the part of subprocess.Popen's surface the tests
    use. Signals go to the child's own pid; its exit code comes from the server, which reaps it."""

    def __init__(self, args: list[str]) -> None:
        self.args = args
        self.pid = 0
        self.returncode: int | None = None
        self._started = threading.Event()
        self._ended = threading.Event()

    def poll(self) -> int | None:
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        if not self._ended.wait(timeout):
            raise subprocess.TimeoutExpired(self.args, timeout or 0)
        if self.returncode is None:
            raise AssertionError("the runner fork server ended before the runner did")
        return self.returncode

    def send_signal(self, sig: int) -> None:
        if self.returncode is None:  # as Popen: never signal a pid that is no longer ours
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, sig)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


class ForkServer:
    """Forks runners from one server that imported the runner once (runner_forks.py): each a
    `python runner.py` with the request's environment, REPO as working directory, stdin from
    /dev/null and its streams to the given files, without an interpreter start and psycopg import.
    A reader thread here hands each answer (the child's pid, later its exit code) to its process."""

    _instance: ForkServer | None = None

    def __init__(self, workdir: Path) -> None:
        self._workdir = workdir
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._children: dict[int, ForkedProcess] = {}
        # The server's own interpreter starts as a runner's would: no PYTHON* settings of pytest's.
        self._server = subprocess.Popen(
            [sys.executable, str(HERE / "runner_forks.py")],
            cwd=str(REPO),
            env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")},
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        self._reader = threading.Thread(target=self._read_answers, name="runner-forks", daemon=True)
        self._reader.start()

    @classmethod
    def shared(cls) -> ForkServer:
        """One server per test process, stopped when the process ends."""
        if cls._instance is None:
            cls._instance = cls(Path(tempfile.mkdtemp(prefix="runner-forks-")))
            atexit.register(cls._instance.close)
        return cls._instance

    def start(self, env: dict[str, str], out: Path, err: Path, seconds: int) -> ForkedProcess:
        """Fork a runner; returns once the server has answered with its pid."""
        out.touch()
        err.touch()
        proc = ForkedProcess([sys.executable, str(RUNNER)])
        request = {"env": env, "out": str(out), "err": str(err), "seconds": seconds}
        with self._lock:
            ident = next(self._ids)
            self._children[ident] = proc
            assert self._server.stdin is not None
            self._server.stdin.write((json.dumps(request | {"id": ident}) + "\n").encode())
            self._server.stdin.flush()
        if not proc._started.wait(CHECK_SECONDS) or not proc.pid:
            raise AssertionError(f"the runner fork server did not start a runner (server exit {self._server.poll()})")
        return proc

    def run(self, env: dict[str, str]) -> subprocess.CompletedProcess[bytes]:
        """As `subprocess.run([python, runner.py], env=env, cwd=REPO, stdin=DEVNULL, capture_output=True)`."""
        with self._lock:
            count = next(self._ids)
        out, err = (self._workdir / f"{count}.{name}" for name in ("stdout", "stderr"))
        proc = self.start(env, out, err, CHECK_SECONDS)
        code = proc.wait(timeout=CHECK_SECONDS + 10)
        return subprocess.CompletedProcess(proc.args, code, out.read_bytes(), err.read_bytes())

    def _read_answers(self) -> None:
        assert self._server.stdout is not None
        for line in self._server.stdout:
            answer = json.loads(line)
            with self._lock:
                proc = self._children[answer["id"]] if "pid" in answer else self._children.pop(answer["id"])
            if "pid" in answer:
                proc.pid = answer["pid"]
                proc._started.set()
            else:
                proc.returncode = answer["code"]
                proc._ended.set()
        with self._lock:  # the server ended: nobody waits for an answer that cannot come
            left, self._children = list(self._children.values()), {}
        for proc in left:
            proc._started.set()
            proc._ended.set()

    def close(self) -> None:
        if self._server.stdin is not None:
            self._server.stdin.close()  # the server kills the runners left, then exits
        self._server.wait(timeout=10)
        self._reader.join(timeout=10)
        shutil.rmtree(self._workdir, ignore_errors=True)
