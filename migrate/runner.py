#!/usr/bin/env python3
"""Migration runner: the entrypoint of the migrate container.

Takes a PostgreSQL session-level advisory lock (waiting for it, with a deadline), runs the
migration command (default ``npx prisma migrate deploy``) with a ``DATABASE_URL`` built from the
environment, streams the command's output, releases the lock and exits with the command's exit
code. Only one runner at a time runs its command against a database; the others wait their turn
and then run theirs (``prisma migrate deploy`` is idempotent, so the later ones find nothing to do).

Environment (see docs/migrations.md):
  DB_HOST, DB_PORT, DB_NAME, DB_USER, DB_PASSWORD   the database (single keys of the RDS secret)
  DATABASE_URL              instead of DB_*: a whole postgresql:// URL (passed through unchanged,
                            except that sslmode is added when missing)
  DB_SSLMODE                disable|allow|prefer|require|verify-ca|verify-full (default require)
  MIGRATE_COMMAND           the command, split like a shell would (default npx prisma migrate deploy)
  MIGRATE_LOCK_KEY          int64 advisory lock key (default 7883946363647714593, "migrate!")
  MIGRATE_LOCK_WAIT_SECONDS how long to wait for the lock (default 900)
  MIGRATE_LOCK_LOG_SECONDS  while waiting, log who holds the lock this often (default 15)
  MIGRATE_STOP_GRACE_SECONDS after forwarding SIGTERM/SIGINT, how long the command gets before
                            SIGKILL (default 20; keep it below the task's stopTimeout)

Exit codes: the command's own code; 2 configuration error; 3 database unreachable (or the
connection was lost while waiting); 4 lock wait ran out; 126 command not executable; 127 command
not found; 128+N stopped by signal N (143 for SIGTERM); 70 unexpected internal error.

Python standard library + psycopg 3 only.
"""

from __future__ import annotations

import contextlib
import ctypes
import datetime as dt
import json
import math
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import FrameType
from typing import IO, Any, NoReturn
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit, urlunsplit

import psycopg
from psycopg import errors as pg_errors

EXIT_INTERNAL = 70
EXIT_CONFIG = 2
EXIT_DB_UNREACHABLE = 3
EXIT_LOCK_TIMEOUT = 4
EXIT_NOT_EXECUTABLE = 126
EXIT_NOT_FOUND = 127

#: Prisma's own migrate lock key; the wrapper lock must differ or Prisma would wait on us.
PRISMA_LOCK_KEY = 72707369
#: Default wrapper lock key: the ASCII bytes "migrate!" read as a big-endian int64.
DEFAULT_LOCK_KEY = int.from_bytes(b"migrate!", "big")  # 7883946363647714593
DEFAULT_COMMAND = "npx prisma migrate deploy"
DEFAULT_LOCK_WAIT_SECONDS = 900.0
DEFAULT_STOP_GRACE_SECONDS = 20.0
SSL_MODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")

CONNECT_TIMEOUT_SECONDS = 10
#: While waiting, each blocking attempt lasts at most this long; a progress line follows each.
DEFAULT_LOCK_LOG_SECONDS = 15.0
#: Client-side keepalives notice a dead server; the same values are set server-side for the
#: session (options below) so the server notices a vanished runner and frees its lock.
KEEPALIVE_IDLE, KEEPALIVE_INTERVAL, KEEPALIVE_COUNT = 30, 10, 3
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
PROG = "migrate-runner"


class ConfigError(Exception):
    """A missing or invalid environment variable (the message names it)."""


class LockTimeoutError(Exception):
    """The lock was not acquired before the deadline (the message names the holder)."""


class Stopped(SystemExit):
    """Raised from the signal handler before the command runs.

    A SystemExit subclass on purpose: psycopg cancels a running query (the lock wait) on the
    server when a SystemExit/KeyboardInterrupt interrupts it, so no waiter is left behind.
    """

    def __init__(self, signum: int) -> None:
        super().__init__(128 + signum)
        self.signum = signum


# --------------------------------------------------------------------------------------- output

_out_lock = threading.RLock()


def _timestamp() -> str:
    now = dt.datetime.now(dt.UTC)
    return now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z"


def _write(stream: IO[bytes], data: bytes) -> None:
    with _out_lock:
        try:
            stream.write(data)
            stream.flush()
        except (BrokenPipeError, ValueError):
            pass


def log(message: str) -> None:
    """One plain line on stdout (CloudWatch), prefixed with a UTC timestamp."""
    _write(
        sys.stdout.buffer,
        f"{_timestamp()} {PROG}: {message}\n".encode(errors="replace"),
    )


def die(code: int, message: str) -> NoReturn:
    """One line on stderr, then exit with ``code``."""
    _write(
        sys.stderr.buffer,
        f"{_timestamp()} {PROG}: error: {message}\n".encode(errors="replace"),
    )
    raise SystemExit(code)


def one_line(exc: BaseException) -> str:
    text = " ".join(part.strip() for part in str(exc).splitlines() if part.strip())
    return text or type(exc).__name__


# --------------------------------------------------------------------------------------- config


@dataclass(frozen=True)
class Config:
    host: str
    port: int
    dbname: str
    user: str
    password: str | None = field(repr=False)
    sslmode: str
    #: The DATABASE_URL handed to the command (contains the password: never log it).
    child_url: str = field(repr=False)
    source: str
    command: list[str]
    lock_key: int
    lock_wait: float
    lock_log_every: float
    stop_grace: float


def _get(env: Mapping[str, str], name: str) -> str | None:
    value = env.get(name)
    return value if value else None


def _require(env: Mapping[str, str], name: str) -> str:
    value = _get(env, name)
    if value is None:
        raise ConfigError(f"{name} is required (or set DATABASE_URL)")
    return value


def _parse_port(value: str, name: str) -> int:
    try:
        port = int(value.strip(), 10)
    except ValueError:
        raise ConfigError(f"{name} must be a port number, got {value!r}") from None
    if not 1 <= port <= 65535:
        raise ConfigError(f"{name} must be between 1 and 65535, got {port}")
    return port


def _parse_seconds(env: Mapping[str, str], name: str, default: float) -> float:
    raw = _get(env, name)
    if raw is None:
        return default
    try:
        value = float(raw.strip())
    except ValueError:
        raise ConfigError(f"{name} must be a number of seconds, got {raw!r}") from None
    if not math.isfinite(value) or value < 0:
        raise ConfigError(f"{name} must be a non-negative number of seconds, got {raw!r}")
    return value


def _parse_sslmode(value: str, name: str) -> str:
    if value not in SSL_MODES:
        raise ConfigError(f"{name} must be one of {', '.join(SSL_MODES)}; got {value!r}")
    return value


def _check_host(host: str, name: str) -> str:
    if host.startswith("/") or any(c.isspace() for c in host) or "/" in host:
        raise ConfigError(f"{name} must be a host name or IP address, got {host!r}")
    return host


def _url_from_parts(*, host: str, port: int, dbname: str, user: str, password: str, sslmode: str) -> str:
    netloc_host = f"[{host}]" if ":" in host else host
    userinfo = f"{quote(user, safe='')}:{quote(password, safe='')}"
    query = urlencode({"sslmode": sslmode})
    return f"postgresql://{userinfo}@{netloc_host}:{port}/{quote(dbname, safe='')}?{query}"


def _from_database_url(url: str, default_sslmode: str) -> tuple[str, int, str, str, str | None, str, str]:
    """Parse DATABASE_URL. Messages never quote the URL: it holds the password."""
    try:
        parts = urlsplit(url.strip())
        port_value = parts.port
    except ValueError:
        raise ConfigError("DATABASE_URL is not a valid URL (is the password percent-encoded?)") from None
    if parts.scheme not in ("postgresql", "postgres"):
        raise ConfigError("DATABASE_URL must start with postgresql:// or postgres://")
    host = unquote(parts.hostname or "")
    if not host:
        raise ConfigError("DATABASE_URL has no host")
    _check_host(host, "DATABASE_URL host")
    user = unquote(parts.username or "")
    if not user:
        raise ConfigError("DATABASE_URL has no user name")
    password = unquote(parts.password) if parts.password is not None else None
    dbname = unquote(parts.path.lstrip("/"))
    if not dbname or "/" in dbname:
        raise ConfigError("DATABASE_URL must name one database in its path (postgresql://…/dbname)")
    query = parse_qsl(parts.query, keep_blank_values=True)
    url_modes = [v for k, v in query if k == "sslmode"]
    if url_modes:
        sslmode = _parse_sslmode(url_modes[-1], "DATABASE_URL sslmode")
        child_url = url.strip()
    else:
        sslmode = default_sslmode
        sep = "&" if parts.query else ""
        new_query = f"{parts.query}{sep}{urlencode({'sslmode': sslmode})}"
        child_url = urlunsplit(parts._replace(query=new_query))
    return host, port_value or 5432, dbname, user, password, sslmode, child_url


def load_config(env: Mapping[str, str]) -> Config:
    sslmode_env = _get(env, "DB_SSLMODE")
    sslmode = _parse_sslmode(sslmode_env, "DB_SSLMODE") if sslmode_env is not None else "require"

    database_url = _get(env, "DATABASE_URL")
    if database_url is not None:
        host, port, dbname, user, password, sslmode, child_url = _from_database_url(database_url, sslmode)
        source = "DATABASE_URL"
    else:
        host = _check_host(_require(env, "DB_HOST"), "DB_HOST")
        port = _parse_port(_require(env, "DB_PORT"), "DB_PORT")
        dbname = _require(env, "DB_NAME")
        user = _require(env, "DB_USER")
        password = _require(env, "DB_PASSWORD")
        child_url = _url_from_parts(host=host, port=port, dbname=dbname, user=user, password=password, sslmode=sslmode)
        source = "DB_* variables"

    raw_command = env.get("MIGRATE_COMMAND") or DEFAULT_COMMAND
    try:
        command = shlex.split(raw_command)
    except ValueError as exc:
        raise ConfigError(f"MIGRATE_COMMAND cannot be split like a shell command: {exc}") from None
    if not command:
        raise ConfigError("MIGRATE_COMMAND is empty")

    raw_key = _get(env, "MIGRATE_LOCK_KEY")
    lock_key = DEFAULT_LOCK_KEY
    if raw_key is not None:
        try:
            lock_key = int(raw_key.strip(), 10)
        except ValueError:
            raise ConfigError(f"MIGRATE_LOCK_KEY must be an integer, got {raw_key!r}") from None
        if not INT64_MIN <= lock_key <= INT64_MAX:
            raise ConfigError(f"MIGRATE_LOCK_KEY must fit in a signed 64-bit integer, got {raw_key!r}")
        if lock_key == PRISMA_LOCK_KEY:
            raise ConfigError(
                f"MIGRATE_LOCK_KEY must not be {PRISMA_LOCK_KEY}: that is Prisma's own migrate lock, "
                "which it would then wait on and give up after 10 s (P1002)"
            )

    return Config(
        host=host,
        port=port,
        dbname=dbname,
        user=user,
        password=password,
        sslmode=sslmode,
        child_url=child_url,
        source=source,
        command=command,
        lock_key=lock_key,
        lock_wait=_parse_seconds(env, "MIGRATE_LOCK_WAIT_SECONDS", DEFAULT_LOCK_WAIT_SECONDS),
        lock_log_every=_parse_seconds(env, "MIGRATE_LOCK_LOG_SECONDS", DEFAULT_LOCK_LOG_SECONDS) or DEFAULT_LOCK_LOG_SECONDS,
        stop_grace=_parse_seconds(env, "MIGRATE_STOP_GRACE_SECONDS", DEFAULT_STOP_GRACE_SECONDS),
    )


def child_environment(env: Mapping[str, str], cfg: Config) -> dict[str, str]:
    """The command's environment: ours, without DB_PASSWORD, plus the DATABASE_URL we built."""
    child = {k: v for k, v in env.items() if k != "DB_PASSWORD"}
    child["DATABASE_URL"] = cfg.child_url
    return child


def application_name(env: Mapping[str, str]) -> str:
    """``migrate-runner <ECS task id>`` on ECS, else ``migrate-runner <hostname>:<pid>``."""
    uri = env.get("ECS_CONTAINER_METADATA_URI_V4", "").rstrip("/")
    ident = ""
    if uri.startswith("http://"):
        with contextlib.suppress(Exception):
            # The task metadata endpoint is link-local: never go through an HTTP(S)_PROXY.
            opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
            with opener.open(f"{uri}/task", timeout=1.0) as resp:
                arn = json.loads(resp.read(65536)).get("TaskARN", "")
            if isinstance(arn, str) and "/" in arn:
                ident = arn.rsplit("/", 1)[-1]
        if not ident:
            segment = uri.rsplit("/", 1)[-1]
            match = re.fullmatch(r"([0-9a-f]{32})-\d+", segment)
            ident = match.group(1) if match else segment[:32]
    if not ident:
        ident = f"{socket.gethostname()}:{os.getpid()}"
    return f"{PROG} {ident}"[:63]  # the server keeps at most 63 bytes


# ------------------------------------------------------------------------------------- database


def connect(cfg: Config, app_name: str) -> psycopg.Connection[tuple[Any, ...]]:
    options = " ".join(
        f"-c {name}={value}"
        for name, value in (
            ("statement_timeout", 0),
            ("lock_timeout", 0),
            ("idle_in_transaction_session_timeout", 0),
            ("tcp_keepalives_idle", KEEPALIVE_IDLE),
            ("tcp_keepalives_interval", KEEPALIVE_INTERVAL),
            ("tcp_keepalives_count", KEEPALIVE_COUNT),
        )
    )
    params: dict[str, Any] = {
        "host": cfg.host,
        "port": cfg.port,
        "dbname": cfg.dbname,
        "user": cfg.user,
        "sslmode": cfg.sslmode,
        "connect_timeout": CONNECT_TIMEOUT_SECONDS,
        "application_name": app_name,
        "keepalives": 1,
        "keepalives_idle": KEEPALIVE_IDLE,
        "keepalives_interval": KEEPALIVE_INTERVAL,
        "keepalives_count": KEEPALIVE_COUNT,
        "options": options,
    }
    if cfg.password is not None:
        params["password"] = cfg.password
    conn = psycopg.connect(autocommit=True, **params)
    if conn.info.server_version >= 140000:
        # The lock session sits idle while the command runs: a role-level idle timeout must not
        # end it (that would free the lock mid-migration).
        conn.execute("SET idle_session_timeout = 0")
    return conn


def _version(number: int) -> str:
    return f"{number // 10000}.{number % 10000}"


def _fmt_time(value: object) -> str:
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return "unknown"


def describe_holder(conn: psycopg.Connection[tuple[Any, ...]], key: int) -> str:
    """Who holds advisory lock ``key`` in this database, from pg_locks + pg_stat_activity."""
    try:
        return _describe_holder(conn, key)
    except pg_errors.QueryCanceled:
        raise
    except psycopg.DatabaseError as exc:  # never let the description fail the wait itself
        if conn.broken:
            raise
        return f"(unknown: {one_line(exc)})"


def _describe_holder(conn: psycopg.Connection[tuple[Any, ...]], key: int) -> str:
    hi, lo = (key >> 32) & 0xFFFFFFFF, key & 0xFFFFFFFF
    rows = conn.execute(
        """
        SELECT l.pid, l.granted, a.application_name, host(a.client_addr), a.usename,
               a.backend_start, a.state, a.state_change, now()
        FROM pg_locks l
        LEFT JOIN pg_stat_activity a ON a.pid = l.pid
        WHERE l.locktype = 'advisory'
          AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
          AND l.classid::bigint = %s AND l.objid::bigint = %s AND l.objsubid = 1
          AND l.pid <> pg_backend_pid()
        ORDER BY l.granted DESC, l.pid
        """,
        (hi, lo),
    ).fetchall()
    holders = [r for r in rows if r[1]]
    waiting = len(rows) - len(holders)
    if not holders:
        text = "nobody any more (just released)"
    else:
        pid, _, app, addr, usename, started, state, state_change, now = holders[0]
        held_for = ""
        if isinstance(state_change, dt.datetime) and isinstance(now, dt.datetime) and state == "idle":
            held_for = f", idle since {_fmt_time(state_change)} ({(now - state_change).total_seconds():.0f} s)"
        text = (
            f"pid {pid} (application_name {app!r}, user {usename or 'unknown'}, "
            f"client {addr or 'local or hidden'}, connected since {_fmt_time(started)}, "
            f"state {state or 'unknown'}{held_for})"
        )
        if app is None and usename is None:
            text = f"pid {pid} (details hidden: grant pg_read_all_stats to see them)"
    if waiting:
        text += f"; {waiting} other session(s) waiting"
    return text


def acquire_lock(
    conn: psycopg.Connection[tuple[Any, ...]],
    key: int,
    wait: float,
    log_every: float = DEFAULT_LOCK_LOG_SECONDS,
) -> float:
    """Block until the session lock is ours or ``wait`` seconds pass; returns seconds waited.

    A blocking ``pg_advisory_lock`` (not a poll on ``pg_try_advisory_lock``): the server hands
    the lock to the next waiter the moment it is released. ``lock_timeout`` bounds each attempt
    so that a progress line naming the holder is logged every ``log_every`` seconds.
    """
    start = time.monotonic()
    deadline = start + wait
    row = conn.execute("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone()
    if row is not None and row[0]:
        return time.monotonic() - start
    log(f"waiting for lock key {key} held by {describe_holder(conn, key)}; waiting up to {wait:g} s")
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        attempt_ms = max(1, math.ceil(min(remaining, log_every) * 1000))
        conn.execute("SELECT set_config('lock_timeout', %s, false)", (f"{attempt_ms}ms",))
        try:
            conn.execute("SELECT pg_advisory_lock(%s)", (key,))
        except pg_errors.LockNotAvailable:
            if deadline - time.monotonic() > 0:
                waited = time.monotonic() - start
                log(f"still waiting for lock key {key} after {waited:.0f} s; held by {describe_holder(conn, key)}")
            continue
        conn.execute("SELECT set_config('lock_timeout', '0', false)")
        return time.monotonic() - start
    raise LockTimeoutError(
        f"lock key {key} not acquired within {wait:g} s (MIGRATE_LOCK_WAIT_SECONDS); held by {describe_holder(conn, key)}"
    )


def release_lock(conn: psycopg.Connection[tuple[Any, ...]], key: int) -> None:
    try:
        row = conn.execute("SELECT pg_advisory_unlock(%s)", (key,)).fetchone()
    except psycopg.Error as exc:
        log(f"warning: could not release lock key {key} ({one_line(exc)}); the database session has ended, and with it the lock")
        return
    if row is not None and row[0]:
        log(f"lock key {key} released")
    else:
        log(f"warning: lock key {key} was not held by this session any more")


# -------------------------------------------------------------------------------------- command


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


def _on_signal(signum: int, _frame: FrameType | None) -> None:
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


def _pump(stream: IO[bytes]) -> None:
    for line in iter(stream.readline, b""):
        _write(sys.stdout.buffer, line if line.endswith(b"\n") else line + b"\n")


def run_command(cfg: Config, env: dict[str, str]) -> int:
    """Run the command, stream its output; returns the runner's exit code for it."""
    log(f"running: {shlex.join(cfg.command)}")
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
    pump = threading.Thread(target=_pump, args=(proc.stdout,), name="output", daemon=True)
    pump.start()
    returncode = proc.wait()
    _state.phase = "teardown"
    if _state.kill_timer is not None:
        _state.kill_timer.cancel()
    pump.join(timeout=5)  # a background process may keep the pipe open: do not wait for it
    elapsed = time.monotonic() - started
    if returncode < 0:
        name = signal.Signals(-returncode).name
        log(f"command killed by {name} after {elapsed:.2f} s")
        code = 128 - returncode
    else:
        log(f"command exited {returncode} after {elapsed:.2f} s")
        code = returncode
    if _state.signum is not None:
        code = 128 + _state.signum
    return code


# ----------------------------------------------------------------------------------------- main


def _resolve(command: list[str], env: Mapping[str, str]) -> None:
    """Fail fast (before waiting for the lock) when the command cannot be found."""
    if shutil.which(command[0], path=env.get("PATH", os.defpath)) is None:
        if os.path.sep in command[0] and os.path.exists(command[0]):
            die(
                EXIT_NOT_EXECUTABLE,
                f"command not executable: {command[0]} (MIGRATE_COMMAND)",
            )
        die(EXIT_NOT_FOUND, f"command not found: {command[0]} (MIGRATE_COMMAND)")


def run(env: Mapping[str, str]) -> int:
    try:
        cfg = load_config(env)
    except ConfigError as exc:
        die(EXIT_CONFIG, str(exc))
    _resolve(cfg.command, env)

    app_name = application_name(env)
    log(
        f"connecting to {cfg.host}:{cfg.port} database {cfg.dbname} as {cfg.user} "
        f"(from {cfg.source}, sslmode={cfg.sslmode}, application_name {app_name!r})"
    )
    try:
        conn = connect(cfg, app_name)
    except psycopg.Error as exc:
        die(
            EXIT_DB_UNREACHABLE,
            f"cannot connect to {cfg.host}:{cfg.port} database {cfg.dbname} as {cfg.user}: {one_line(exc)}",
        )
    tls = "on" if conn.pgconn.ssl_in_use else "off"
    log(f"connected (PostgreSQL {_version(conn.info.server_version)}, backend pid {conn.info.backend_pid}, TLS {tls})")

    locked = False
    try:
        try:
            waited = acquire_lock(conn, cfg.lock_key, cfg.lock_wait, cfg.lock_log_every)
        except LockTimeoutError as exc:
            die(EXIT_LOCK_TIMEOUT, str(exc))
        except psycopg.Error as exc:
            die(
                EXIT_DB_UNREACHABLE,
                f"database connection failed while waiting for the lock: {one_line(exc)}",
            )
        locked = True
        log(f"lock key {cfg.lock_key} acquired after {waited:.2f} s")
        try:
            return run_command(cfg, child_environment(env, cfg))
        except FileNotFoundError as exc:
            die(
                EXIT_NOT_FOUND,
                f"command not found: {cfg.command[0]} (MIGRATE_COMMAND): {one_line(exc)}",
            )
        except PermissionError as exc:
            die(
                EXIT_NOT_EXECUTABLE,
                f"command not executable: {cfg.command[0]} (MIGRATE_COMMAND): {one_line(exc)}",
            )
        except OSError as exc:
            die(
                EXIT_NOT_EXECUTABLE,
                f"cannot start {cfg.command[0]} (MIGRATE_COMMAND): {one_line(exc)}",
            )
    finally:
        _state.phase = "teardown"
        if locked:
            release_lock(conn, cfg.lock_key)
        with contextlib.suppress(Exception):
            conn.close()


def main() -> int:
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    try:
        return run(os.environ)
    except Stopped as stop:
        name = signal.Signals(stop.signum).name
        log(f"received {name} before the command started: exiting {128 + stop.signum}")
        return 128 + stop.signum
    except SystemExit:
        raise
    except Exception as exc:  # any other failure: one line, no traceback
        die(EXIT_INTERNAL, f"unexpected error: {type(exc).__name__}: {one_line(exc)}")


if __name__ == "__main__":
    sys.exit(main())
