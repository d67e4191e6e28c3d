"""A fork server for the runner's refusals: imports migrate/runner.py once, then forks one child per
request, which runs the runner's own entry point (main, then os._exit with its code) with exactly
the request's environment, working directory and standard streams a `python runner.py` gets.

Run by runner_harness.ForkedRunner, one per test process: a configuration check then costs a fork
(milliseconds) instead of an interpreter start and the psycopg import (about 0.15 s, more under
load). Protocol: one JSON line per request, {"env": {...}, "out": path, "err": path}; one JSON line
per answer, {"code": exit code as subprocess reports it (negative: killed by that signal)}.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path

RUNNER_DIR = Path(__file__).resolve().parents[2] / "migrate"
# A child that has not ended by then is killed by its own alarm (the subprocess timeout it replaces).
CHILD_SECONDS = 30


def serve() -> None:
    sys.path.insert(0, str(RUNNER_DIR))
    # runner.py's imports (psycopg, runnerlib) once here, before the first fork; its __main__ calls entry.
    import runner  # noqa: F401, PLC0415
    from runnerlib.main import entry  # noqa: PLC0415

    for line in sys.stdin:
        request = json.loads(line)
        pid = os.fork()
        if pid == 0:  # the child: become `python runner.py` with the request's environment
            os.chdir(RUNNER_DIR.parent)
            os.environ.clear()
            os.environ.update(request["env"])
            for fd, path, flags in ((0, os.devnull, os.O_RDONLY), (1, request["out"], os.O_WRONLY), (2, request["err"], os.O_WRONLY)):
                os.dup2(os.open(path, flags), fd)
            signal.alarm(CHILD_SECONDS)
            entry()
        _, status = os.waitpid(pid, 0)
        sys.stdout.write(json.dumps({"code": os.waitstatus_to_exitcode(status)}) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    serve()
