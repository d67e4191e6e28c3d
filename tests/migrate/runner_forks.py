"""A fork server for the runner's tests: imports migrate/runner.py once, then forks one child per
request, which runs the runner's own entry point (main, then os._exit with its code) with exactly
the request's environment, working directory and standard streams a `python runner.py` gets.

Run by runner_harness.ForkServer, one per test process: a runner then costs a fork (milliseconds)
instead of an interpreter start and the psycopg import (about 0.1 s of CPU, more under load).

The server stays single-threaded (a fork of a multi-threaded process can leave the child blocked on
a lock another thread held, sys.stdout's for one) and serves any number of children at once: it
select()s on its requests and on a SIGCHLD wake-up pipe, answers a start at once with the child's
pid, and reports each child's exit status when it ends. Protocol, one JSON line each way:
  request {"id": n, "env": {...}, "out": path, "err": path, "seconds": guard}
  answers {"id": n, "pid": pid}, then {"id": n, "code": exit code as subprocess reports it
          (negative: killed by that signal)}
When its standard input ends (the test process is gone), it kills the children left and exits.
"""

from __future__ import annotations

import json
import os
import select
import signal
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

RUNNER_DIR = Path(__file__).resolve().parents[2] / "migrate"
RUNNER = RUNNER_DIR / "runner.py"


def interpreter_environment(env: dict[str, str]) -> dict[str, str]:
    """The environment a new interpreter given ``env`` ends up with: when the C locale would be in
    effect, CPython coerces it (PEP 538) by setting LC_CTYPE=C.UTF-8 in its own environment, which
    the runner's command then inherits."""
    if env.get("LC_ALL") or env.get("PYTHONCOERCECLOCALE") == "0":
        return env
    if (env.get("LC_CTYPE") or env.get("LANG") or "C") in ("C", "POSIX"):
        return env | {"LC_CTYPE": "C.UTF-8"}
    return env


def _become_runner(request: dict[str, Any]) -> None:
    """In the child: undo what the server set up, so that the runner starts as from `python runner.py`."""
    signal.set_wakeup_fd(-1)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    os.chdir(RUNNER_DIR.parent)
    os.environ.clear()
    os.environ.update(interpreter_environment(request["env"]))
    sys.argv = [str(RUNNER)]
    for fd, path, flags in ((0, os.devnull, os.O_RDONLY), (1, request["out"], os.O_WRONLY), (2, request["err"], os.O_WRONLY)):
        opened = os.open(path, flags)
        os.dup2(opened, fd)
        os.close(opened)
    os.closerange(3, os.sysconf("SC_OPEN_MAX"))  # the server's pipes, as Popen(close_fds=True) would
    # A child that has not ended by then is killed by its own alarm (the test's hang guard).
    signal.alarm(int(request["seconds"]))


def _run_child(request: dict[str, Any], entry: Callable[[], NoReturn]) -> NoReturn:
    """Never returns into the server's loop, whatever happens."""
    try:
        _become_runner(request)
        entry()
    except KeyboardInterrupt:  # SIGINT before main() installs its handler: die of it, as Python does
        traceback.print_exc()
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGINT)
    except BaseException:  # an uncaught error ends a new interpreter with 1 too
        traceback.print_exc()
    finally:
        os._exit(1)


class _Server:
    def __init__(self, entry: Callable[[], NoReturn]) -> None:
        self.entry = entry
        # The protocol pipes move off 0 and 1 (os.dup: not inherited); 0 and 1 become /dev/null.
        self.requests, self.answers = os.dup(0), os.dup(1)
        null = os.open(os.devnull, os.O_RDWR)
        os.dup2(null, 0)
        os.dup2(null, 1)
        os.close(null)
        self.wake_r, self.wake_w = os.pipe()
        for fd in (self.wake_r, self.wake_w):
            os.set_blocking(fd, False)
        # A Python handler (a no-op) is what makes the interpreter write to the wake-up fd.
        signal.signal(signal.SIGCHLD, lambda _signum, _frame: None)
        signal.set_wakeup_fd(self.wake_w)
        self.children: dict[int, int] = {}  # pid -> request id
        self.pending = b""

    def answer(self, message: dict[str, int]) -> None:
        data = (json.dumps(message) + "\n").encode()
        while data:
            data = data[os.write(self.answers, data) :]

    def start(self, request: dict[str, Any]) -> None:
        pid = os.fork()
        if pid == 0:
            _run_child(request, self.entry)
        self.children[pid] = request["id"]
        self.answer({"id": request["id"], "pid": pid})

    def reap(self) -> None:
        while self.children:
            pid, status = os.waitpid(-1, os.WNOHANG)
            if pid == 0:
                return
            self.answer({"id": self.children.pop(pid), "code": os.waitstatus_to_exitcode(status)})

    def serve(self) -> None:
        while True:
            readable = select.select([self.requests, self.wake_r], [], [])[0]
            if self.wake_r in readable:
                while True:
                    try:
                        if not os.read(self.wake_r, 512):
                            break
                    except BlockingIOError:
                        break
            self.reap()
            if self.requests in readable:
                data = os.read(self.requests, 1 << 16)
                if not data:
                    return self.close()
                *lines, self.pending = (self.pending + data).split(b"\n")
                for line in lines:
                    self.start(json.loads(line))

    def close(self) -> None:
        for pid in self.children:
            os.kill(pid, signal.SIGKILL)
        for pid in list(self.children):
            os.waitpid(pid, 0)


def serve() -> None:
    sys.path[0] = str(RUNNER_DIR)  # as for `python runner.py`: its folder first, not this one
    # runner.py's imports (psycopg, runnerlib) once here, before the first fork; its __main__ calls entry.
    import runner  # noqa: F401, PLC0415
    from runnerlib.main import entry  # noqa: PLC0415

    _Server(entry).serve()


if __name__ == "__main__":
    serve()
