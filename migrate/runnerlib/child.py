"""The command's process: started in its own process group, signals forwarded, output redacted
and forwarded, supervised against the lock session and the deadline."""

from __future__ import annotations

import contextlib
import ctypes
import math
import os
import select
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import FrameType
from typing import IO

from runnerlib.connection import Conn
from runnerlib.exits import EXIT_COMMAND_IN_RESERVED_RANGE, EXIT_DEADLINE, EXIT_LOCK_LOST, RESERVED, RunnerExitError, Stopped, command_exit
from runnerlib.lock import LockWatch
from runnerlib.output import Redactor, log, write
from runnerlib.settings import DEFAULT_STOP_GRACE_SECONDS, Config, Deadline

#: A longer line is forwarded in pieces of this size (bounded memory; each piece redacted).
MAX_LINE_BYTES = 1 << 20


@dataclass
class _State:
    phase: str = "setup"  # setup -> command -> teardown
    child: subprocess.Popen[bytes] | None = None
    signum: int | None = None
    stop_grace: float = DEFAULT_STOP_GRACE_SECONDS
    kill_timer: threading.Timer | None = None


_state = _State()


def _signal_group(proc: subprocess.Popen[bytes], signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signum)


def _forward(signum: int) -> None:
    proc = _state.child
    if proc is None or proc.returncode is not None:
        return
    _signal_group(proc, signum)
    if _state.kill_timer is None:
        grace = _state.stop_grace

        def kill() -> None:
            if proc.poll() is None:
                log(f"command still running {grace:g} s after {signal.Signals(signum).name}: sending SIGKILL")
                _signal_group(proc, signal.SIGKILL)

        _state.kill_timer = threading.Timer(grace, kill)
        _state.kill_timer.daemon = True
        _state.kill_timer.start()


def on_signal(signum: int, _frame: FrameType | None) -> None:
    name = signal.Signals(signum).name
    if _state.phase == "setup":
        raise Stopped(signum)
    if _state.phase == "teardown":
        log(f"received {name} after the command finished: finishing clean-up")
        return
    first = _state.signum is None
    if first:
        _state.signum = signum
    if _state.child is not None:
        if first:
            log(f"received {name}: forwarding it to the command, SIGKILL in {_state.stop_grace:g} s")
        _forward(signum)


def _die_with_parent() -> Callable[[], None] | None:
    """A preexec hook making the kernel SIGKILL the command if the runner dies (Linux only).

    If the runner is killed (even by SIGKILL) its session ends and the lock with it: the command
    must not go on without it. In ECS the whole task goes anyway; this covers local runs.
    """
    if sys.platform != "linux":
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl  # resolved before fork, not in the child
    except (OSError, AttributeError):
        return None
    parent = os.getpid()

    def hook() -> None:  # runs in the child between fork and exec
        prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        if os.getppid() != parent:  # the runner died before the prctl took effect
            os._exit(1)

    return hook


def _pump(stream: IO[bytes], redact: Redactor) -> None:
    for raw in iter(lambda: stream.readline(MAX_LINE_BYTES), b""):
        line = redact(raw)
        write(sys.stdout.buffer, line if line.endswith(b"\n") else line + b"\n")


@dataclass
class Outcome:
    returncode: int
    lost: str | None = None
    deadline_hit: bool = False


def _exit_fd(proc: subprocess.Popen[bytes]) -> int:
    """A file descriptor that becomes readable when the command exits: a pidfd (Linux 5.3+), else
    a pipe a reaper thread writes to."""
    with contextlib.suppress(AttributeError, OSError):
        return os.pidfd_open(proc.pid)
    exit_r, exit_w = os.pipe()

    def reap() -> None:
        proc.wait()
        with contextlib.suppress(OSError):
            os.write(exit_w, b"x")

    threading.Thread(target=reap, name="reaper", daemon=True).start()
    return exit_r


def supervise(proc: subprocess.Popen[bytes], watch: LockWatch, deadline: Deadline) -> Outcome:
    """Wait for the command while watching the lock session and the deadline.

    A lost session kills the command's whole process group at once (SIGKILL: another runner may
    already hold the lock); the deadline stops it like SIGTERM from ECS would (grace, then SIGKILL).
    """
    deadline_at = deadline.at
    exit_r = _exit_fd(proc)
    outcome = Outcome(returncode=0)
    try:
        while True:
            now = time.monotonic()
            wake = min(watch.wake_at(), deadline_at if deadline_at is not None and not outcome.deadline_hit else math.inf)
            fds = [exit_r] + ([watch.fileno()] if watch.fileno() >= 0 else [])
            readable = select.select(fds, [], [], max(0.0, wake - now))[0]
            if exit_r in readable:
                break
            lost = watch.step(watch.fileno() in readable)
            if lost:
                _signal_group(proc, signal.SIGKILL)
                outcome.lost = lost
                log(f"lock lost: {lost}; command's process group killed")
                break
            if deadline_at is not None and not outcome.deadline_hit and time.monotonic() >= deadline_at:
                outcome.deadline_hit = True
                log(f"{deadline.name} reached: stopping the command (SIGTERM, SIGKILL in {_state.stop_grace:g} s)")
                _forward(signal.SIGTERM)
    finally:
        outcome.returncode = proc.wait()
        os.close(exit_r)
    return outcome


def run_command(cfg: Config, env: dict[str, str], conn: Conn, deadline: Deadline) -> int:
    """Run the command under the lock watch; returns the runner's exit code."""
    redact = Redactor([cfg.password or ""])
    log(redact(f"running: {shlex.join(cfg.command)}".encode()).decode(errors="replace"))
    started = time.monotonic()
    _state.stop_grace = cfg.stop_grace
    _state.phase = "command"
    proc = subprocess.Popen(
        cfg.command,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group: signals reach the whole tree
        preexec_fn=_die_with_parent(),  # noqa: PLW1509 - no other thread exists yet
    )
    _state.child = proc
    if _state.signum is not None:  # a signal arrived while starting it
        _forward(_state.signum)
    assert proc.stdout is not None
    pump = threading.Thread(target=_pump, args=(proc.stdout, redact), name="output", daemon=True)
    pump.start()
    watch = LockWatch(conn, cfg.heartbeat_every, cfg.heartbeat_timeout)
    outcome = supervise(proc, watch, deadline)
    _state.phase = "teardown"
    if _state.kill_timer is not None:
        _state.kill_timer.cancel()
    pump.join(timeout=5)  # a background process may keep the pipe open: do not wait for it
    elapsed = time.monotonic() - started
    returncode = outcome.returncode
    if returncode < 0:
        log(f"command killed by {signal.Signals(-returncode).name} after {elapsed:.2f} s")
    else:
        log(f"command exited {returncode} after {elapsed:.2f} s")
    lost = outcome.lost or watch.final_unlock(cfg.lock_key)
    if lost:
        if outcome.lost is None:
            log(f"lock lost: {lost}")
        raise RunnerExitError(EXIT_LOCK_LOST, f"lock key {cfg.lock_key} lost while the command ran ({lost}); its result cannot be trusted")
    log(f"lock key {cfg.lock_key} released (held by this session throughout)")
    if _state.signum is not None:
        return 128 + _state.signum
    if outcome.deadline_hit:
        raise RunnerExitError(EXIT_DEADLINE, f"{deadline.name} reached: the command was stopped")
    if returncode in RESERVED:
        log(
            f"the command's exit code {returncode} is in the runner's reserved range {RESERVED.start}-{RESERVED.stop - 1}: "
            f"exiting {EXIT_COMMAND_IN_RESERVED_RANGE} (the command failed)"
        )
    return command_exit(returncode)


def teardown() -> None:
    """From now on a signal only logs: the command has ended and clean-up must finish."""
    _state.phase = "teardown"
