#!/usr/bin/env python3
"""Migration runner: the entrypoint of the migrate container.

Takes a PostgreSQL session-level advisory lock (waiting for it, with a deadline), runs the
migration command (default ``npx prisma migrate deploy``) with a ``DATABASE_URL`` built from the
environment, and watches its lock session while the command runs: if the session ends or stops
answering, the command's process group is killed at once and the runner exits 5 ("lock lost").
It exits with the command's code only when the session that took the lock verifiably lived until
the command ended (the final ``pg_advisory_unlock`` on that same session returns true).

Environment (see docs/migrations.md):
  DB_HOST, DB_PORT, DB_NAME, DB_USER, DB_PASSWORD   the database (single keys of the owner secret)
  DATABASE_URL              instead of DB_*: a whole postgresql:// URL
  DB_SSLMODE                disable|allow|prefer|require|verify-ca|verify-full (default verify-full)
  DB_SSLROOTCERT            CA bundle file; required for verify-ca/verify-full
  MIGRATE_URL_TLS           prisma|libpq: how TLS is spelled in the command's URL (default prisma)
  MIGRATE_COMMAND           the command, split like a shell would (default npx prisma migrate deploy)
  MIGRATE_LOCK_KEY          int64 advisory lock key (default 7883946363647714593, "migrate!")
  MIGRATE_LOCK_WAIT_SECONDS how long to wait for the lock (default 900)
  MIGRATE_LOCK_LOG_SECONDS  while waiting, log who holds the lock this often (default 15)
  MIGRATE_CONNECT_WAIT_SECONDS how long transient connect errors are retried (default 120)
  MIGRATE_DEADLINE_SECONDS  runner-wide deadline from start (default: none)
  MIGRATE_HEARTBEAT_SECONDS / MIGRATE_HEARTBEAT_TIMEOUT_SECONDS
                            lock-session heartbeat interval and answer timeout (default 1 / 3)
  MIGRATE_STOP_GRACE_SECONDS after forwarding SIGTERM/SIGINT (or at the deadline), how long the
                            command gets before SIGKILL (default 20; below the task's stopTimeout)

Exit codes: the command's own code; 2 configuration error (including TLS verification and an
unknown database); 3 database unreachable for MIGRATE_CONNECT_WAIT_SECONDS; 4 lock wait ran out;
5 lock lost; 6 MIGRATE_DEADLINE_SECONDS reached; 7 login refused (authentication); 126 command
not executable; 127 command not found; 128+N stopped by signal N; 70 unexpected internal error.

Python standard library + psycopg 3 only.
"""

from __future__ import annotations

import contextlib
import ctypes
import datetime as dt
import math
import os
import random
import re
import select
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import FrameType
from typing import IO, Any, NoReturn
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit, urlunsplit

import psycopg
from psycopg import errors as pg_errors
from psycopg import pq

EXIT_INTERNAL = 70
EXIT_CONFIG = 2
EXIT_DB_UNREACHABLE = 3
EXIT_LOCK_TIMEOUT = 4
EXIT_LOCK_LOST = 5
EXIT_DEADLINE = 6
EXIT_LOGIN_REFUSED = 7
EXIT_NOT_EXECUTABLE = 126
EXIT_NOT_FOUND = 127

#: Prisma's own migrate lock key; the wrapper lock must differ or Prisma would wait on us.
PRISMA_LOCK_KEY = 72707369
#: Default wrapper lock key: the ASCII bytes "migrate!" read as a big-endian int64.
DEFAULT_LOCK_KEY = int.from_bytes(b"migrate!", "big")  # 7883946363647714593
DEFAULT_COMMAND = "npx prisma migrate deploy"
DEFAULT_SSLMODE = "verify-full"
DEFAULT_LOCK_WAIT_SECONDS = 900.0
DEFAULT_STOP_GRACE_SECONDS = 20.0
DEFAULT_CONNECT_WAIT_SECONDS = 120.0
DEFAULT_HEARTBEAT_SECONDS = 1.0
DEFAULT_HEARTBEAT_TIMEOUT_SECONDS = 3.0
SSL_MODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")
VERIFYING_MODES = ("verify-ca", "verify-full")
URL_TLS_STYLES = ("prisma", "libpq")

CONNECT_TIMEOUT_SECONDS = 10
#: While waiting, each blocking attempt lasts at most this long; a progress line follows each.
DEFAULT_LOCK_LOG_SECONDS = 15.0
#: Client side: keepalives and TCP_USER_TIMEOUT end a silent connection while the runner waits
#: for the lock (while the command runs, the heartbeat notices much sooner).
CLIENT_KEEPALIVE = {"keepalives_idle": 10, "keepalives_interval": 5, "keepalives_count": 3, "tcp_user_timeout": 15000}
#: Server side, for the lock session only: the server cannot free the lock of a silent runner
#: sooner than about 60 s (30 s idle + 3 probes 10 s apart; unacknowledged data: 60 s).
SERVER_KEEPALIVE = {"tcp_keepalives_idle": 30, "tcp_keepalives_interval": 10, "tcp_keepalives_count": 3, "tcp_user_timeout": 60000}
#: Heartbeat interval + timeout must stay far below the server's 60 s.
MAX_HEARTBEAT_WINDOW_SECONDS = 20.0
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
PROG = "migrate-runner"


class ConfigError(Exception):
    """A missing or invalid environment variable (the message names it)."""


class LockTimeoutError(Exception):
    """The lock was not acquired before the deadline (the message names the holder)."""


class RunnerExitError(Exception):
    """Ends the run with ``code`` and a one-line ``message`` on stderr."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


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
    sslrootcert: str | None
    #: The DATABASE_URL handed to the command (contains the password: never log it).
    child_url: str = field(repr=False)
    source: str
    command: list[str]
    lock_key: int
    lock_wait: float
    lock_log_every: float
    stop_grace: float
    connect_wait: float = DEFAULT_CONNECT_WAIT_SECONDS
    deadline: float | None = None
    heartbeat_every: float = DEFAULT_HEARTBEAT_SECONDS
    heartbeat_timeout: float = DEFAULT_HEARTBEAT_TIMEOUT_SECONDS


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


def _parse_seconds(env: Mapping[str, str], name: str, default: float, *, positive: bool = False) -> float:
    raw = _get(env, name)
    if raw is None:
        return default
    try:
        value = float(raw.strip())
    except ValueError:
        raise ConfigError(f"{name} must be a number of seconds, got {raw!r}") from None
    if not math.isfinite(value) or value < 0 or (positive and value == 0):
        kind = "positive" if positive else "non-negative"
        raise ConfigError(f"{name} must be a {kind} number of seconds, got {raw!r}")
    return value


def _parse_sslmode(value: str, name: str) -> str:
    if value not in SSL_MODES:
        raise ConfigError(f"{name} must be one of {', '.join(SSL_MODES)}; got {value!r}")
    return value


def _check_host(host: str, name: str) -> str:
    if host.startswith("/") or any(c.isspace() for c in host) or "/" in host:
        raise ConfigError(f"{name} must be a host name or IP address, got {host!r}")
    return host


def _tls_query(style: str, sslmode: str, rootcert: str | None) -> list[tuple[str, str]]:
    """The command's URL parameters for this TLS setting.

    libpq (psql, node-postgres): ``sslmode`` + ``sslrootcert``. Prisma's engine knows only
    disable/prefer/require and falls back to ``prefer`` for any other sslmode, so a verifying
    mode is spelled the way Prisma documents it: ``sslmode=require&sslaccept=strict&sslcert=<CA>``.
    """
    verifying = sslmode in VERIFYING_MODES
    if style == "libpq":
        return [("sslmode", sslmode)] + ([("sslrootcert", rootcert)] if verifying and rootcert else [])
    if verifying:
        return [("sslmode", "require"), ("sslaccept", "strict"), ("sslcert", rootcert or "")]
    if sslmode == "allow":
        raise ConfigError("DB_SSLMODE allow has no Prisma equivalent (MIGRATE_URL_TLS=prisma): use prefer or a verifying mode")
    return [("sslmode", sslmode)]


def _url_tls(query: list[tuple[str, str]], style: str) -> tuple[str | None, str | None]:
    """(sslmode, CA file) a DATABASE_URL asks for, read in the command's own dialect."""
    values = dict(query)
    if style == "prisma" and values.get("sslaccept") == "strict" and values.get("sslcert"):
        if values.get("sslmode", "require") != "require":
            raise ConfigError("DATABASE_URL: with sslaccept=strict, sslmode must be require (MIGRATE_URL_TLS=prisma)")
        return "verify-full", values["sslcert"]
    mode = values.get("sslmode")
    if mode is not None:
        _parse_sslmode(mode, "DATABASE_URL sslmode")
    return mode, values.get("sslrootcert") if style == "libpq" else None


def _url_from_parts(*, host: str, port: int, dbname: str, user: str, password: str, tls: list[tuple[str, str]]) -> str:
    netloc_host = f"[{host}]" if ":" in host else host
    userinfo = f"{quote(user, safe='')}:{quote(password, safe='')}"
    return f"postgresql://{userinfo}@{netloc_host}:{port}/{quote(dbname, safe='')}?{urlencode(tls)}"


@dataclass(frozen=True)
class _Target:
    host: str
    port: int
    dbname: str
    user: str
    password: str | None
    sslmode: str
    sslrootcert: str | None
    child_url: str
    source: str


def _from_database_url(url: str, env_mode: str | None, env_root: str | None, style: str) -> _Target:
    """Parse DATABASE_URL. Messages never quote the URL: it holds the password."""
    try:
        parts = urlsplit(url.strip())
        port_value = parts.port
    except ValueError:
        raise ConfigError("DATABASE_URL is not a valid URL (is the password percent-encoded?)") from None
    if parts.scheme not in ("postgresql", "postgres"):
        raise ConfigError("DATABASE_URL must start with postgresql:// or postgres://")
    host = _check_host(unquote(parts.hostname or ""), "DATABASE_URL host")
    if not host:
        raise ConfigError("DATABASE_URL has no host")
    user = unquote(parts.username or "")
    if not user:
        raise ConfigError("DATABASE_URL has no user name")
    dbname = unquote(parts.path.lstrip("/"))
    if not dbname or "/" in dbname:
        raise ConfigError("DATABASE_URL must name one database in its path (postgresql://…/dbname)")
    query = parse_qsl(parts.query, keep_blank_values=True)
    url_mode, url_root = _url_tls(query, style)
    if url_mode is not None and env_mode is not None and url_mode != env_mode:
        raise ConfigError(
            f"DATABASE_URL asks for sslmode {url_mode} but DB_SSLMODE is {env_mode}: they contradict each other; set only one, or make them agree"
        )
    if url_root is not None and env_root is not None and url_root != env_root:
        raise ConfigError(f"DATABASE_URL names CA file {url_root} but DB_SSLROOTCERT is {env_root}: they contradict each other")
    sslmode = url_mode or env_mode or DEFAULT_SSLMODE
    rootcert = url_root or env_root
    present = {key for key, _ in query}
    added = [(k, v) for k, v in _tls_query(style, sslmode, rootcert) if k not in present]
    child_url = url.strip()
    if added:
        sep = "&" if parts.query else ""
        child_url = urlunsplit(parts._replace(query=f"{parts.query}{sep}{urlencode(added)}"))
    password = unquote(parts.password) if parts.password is not None else None
    return _Target(host, port_value or 5432, dbname, user, password, sslmode, rootcert, child_url, "DATABASE_URL")


def _from_parts(env: Mapping[str, str], env_mode: str | None, env_root: str | None, style: str) -> _Target:
    host = _check_host(_require(env, "DB_HOST"), "DB_HOST")
    port = _parse_port(_require(env, "DB_PORT"), "DB_PORT")
    dbname = _require(env, "DB_NAME")
    user = _require(env, "DB_USER")
    password = _require(env, "DB_PASSWORD")
    sslmode = env_mode or DEFAULT_SSLMODE
    tls = _tls_query(style, sslmode, env_root)
    child_url = _url_from_parts(host=host, port=port, dbname=dbname, user=user, password=password, tls=tls)
    return _Target(host, port, dbname, user, password, sslmode, env_root, child_url, "DB_* variables")


def _parse_command(env: Mapping[str, str]) -> list[str]:
    raw = env.get("MIGRATE_COMMAND")
    if raw is not None and not raw.strip():
        raise ConfigError(
            "MIGRATE_COMMAND is set but empty: name the migration command, or unset it for the default (npx prisma migrate deploy)"
        )
    try:
        command = shlex.split(raw if raw is not None else DEFAULT_COMMAND)
    except ValueError as exc:
        raise ConfigError(f"MIGRATE_COMMAND cannot be split like a shell command: {exc}") from None
    if not command:
        raise ConfigError("MIGRATE_COMMAND holds no command")
    return command


def _parse_lock_key(env: Mapping[str, str]) -> int:
    raw_key = _get(env, "MIGRATE_LOCK_KEY")
    if raw_key is None:
        return DEFAULT_LOCK_KEY
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
    return lock_key


def _check_rootcert(target: _Target) -> None:
    if target.sslmode not in VERIFYING_MODES:
        return
    if target.sslrootcert is None:
        raise ConfigError(f"DB_SSLMODE {target.sslmode} needs DB_SSLROOTCERT, the CA bundle to verify the server with")
    if not os.path.isabs(target.sslrootcert) or not os.path.isfile(target.sslrootcert):
        raise ConfigError(f"DB_SSLROOTCERT must be the absolute path of a readable CA bundle file, got {target.sslrootcert!r}")


def load_config(env: Mapping[str, str]) -> Config:
    sslmode_env = _get(env, "DB_SSLMODE")
    env_mode = _parse_sslmode(sslmode_env, "DB_SSLMODE") if sslmode_env is not None else None
    env_root = _get(env, "DB_SSLROOTCERT")
    style = _get(env, "MIGRATE_URL_TLS") or "prisma"
    if style not in URL_TLS_STYLES:
        raise ConfigError(f"MIGRATE_URL_TLS must be one of {', '.join(URL_TLS_STYLES)}; got {style!r}")
    command = _parse_command(env)
    database_url = _get(env, "DATABASE_URL")
    if database_url is not None:
        target = _from_database_url(database_url, env_mode, env_root, style)
    else:
        target = _from_parts(env, env_mode, env_root, style)
    _check_rootcert(target)

    heartbeat_every = _parse_seconds(env, "MIGRATE_HEARTBEAT_SECONDS", DEFAULT_HEARTBEAT_SECONDS, positive=True)
    heartbeat_timeout = _parse_seconds(env, "MIGRATE_HEARTBEAT_TIMEOUT_SECONDS", DEFAULT_HEARTBEAT_TIMEOUT_SECONDS, positive=True)
    if heartbeat_every + heartbeat_timeout > MAX_HEARTBEAT_WINDOW_SECONDS:
        raise ConfigError(
            f"MIGRATE_HEARTBEAT_SECONDS + MIGRATE_HEARTBEAT_TIMEOUT_SECONDS must be at most {MAX_HEARTBEAT_WINDOW_SECONDS:g} s, "
            "far below the ~60 s after which the server may free the lock of a silent runner"
        )
    deadline = _parse_seconds(env, "MIGRATE_DEADLINE_SECONDS", 0.0) or None
    return Config(
        host=target.host,
        port=target.port,
        dbname=target.dbname,
        user=target.user,
        password=target.password,
        sslmode=target.sslmode,
        sslrootcert=target.sslrootcert,
        child_url=target.child_url,
        source=target.source,
        command=command,
        lock_key=_parse_lock_key(env),
        lock_wait=_parse_seconds(env, "MIGRATE_LOCK_WAIT_SECONDS", DEFAULT_LOCK_WAIT_SECONDS),
        lock_log_every=_parse_seconds(env, "MIGRATE_LOCK_LOG_SECONDS", DEFAULT_LOCK_LOG_SECONDS) or DEFAULT_LOCK_LOG_SECONDS,
        stop_grace=_parse_seconds(env, "MIGRATE_STOP_GRACE_SECONDS", DEFAULT_STOP_GRACE_SECONDS),
        connect_wait=_parse_seconds(env, "MIGRATE_CONNECT_WAIT_SECONDS", DEFAULT_CONNECT_WAIT_SECONDS),
        deadline=deadline,
        heartbeat_every=heartbeat_every,
        heartbeat_timeout=heartbeat_timeout,
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
        import json  # noqa: PLC0415 - only on ECS: keeps start-up short elsewhere
        import urllib.request  # noqa: PLC0415

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

Conn = psycopg.Connection[tuple[Any, ...]]


def connect(cfg: Config, app_name: str, timeout: float = CONNECT_TIMEOUT_SECONDS) -> Conn:
    settings = {"statement_timeout": 0, "lock_timeout": 0, "idle_in_transaction_session_timeout": 0, **SERVER_KEEPALIVE}
    params: dict[str, Any] = {
        "host": cfg.host,
        "port": cfg.port,
        "dbname": cfg.dbname,
        "user": cfg.user,
        "sslmode": cfg.sslmode,
        "connect_timeout": max(2, math.ceil(timeout)),
        "application_name": app_name,
        "keepalives": 1,
        **CLIENT_KEEPALIVE,
        "options": " ".join(f"-c {name}={value}" for name, value in settings.items()),
    }
    if cfg.sslrootcert is not None:
        params["sslrootcert"] = cfg.sslrootcert
    if cfg.password is not None:
        params["password"] = cfg.password
    conn = psycopg.connect(autocommit=True, **params)
    if conn.info.server_version >= 140000:
        # The lock session sits idle while the command runs: a role-level idle timeout must not
        # end it (that would free the lock mid-migration).
        conn.execute("SET idle_session_timeout = 0")
    return conn


_AUTH_MARKERS = (
    "password authentication failed",
    "no pg_hba.conf entry",
    "authentication failed",
    "no password supplied",
    "password is required",
)
_CONFIG_MARKERS = (
    "certificate verify failed",
    "does not match host name",
    "root certificate",
    "certificate",
    "server does not support ssl",
    "invalid sslmode",
    "invalid connection option",
    "unrecognized configuration parameter",  # a server older than PostgreSQL 12 (tcp_user_timeout)
)


def classify_connect_error(exc: psycopg.Error) -> str:
    """ "auth", "config" or "transient" (refused, timeout, DNS, starting up, shutting down, …)."""
    sqlstate = getattr(exc, "sqlstate", None) or ""
    text = str(exc).lower()
    if sqlstate.startswith("28") or sqlstate == "42501" or any(m in text for m in _AUTH_MARKERS):
        return "auth"
    if re.search(r'role "[^"]*" does not exist', text):
        return "auth"
    if sqlstate == "3D000" or re.search(r'database "[^"]*" does not exist', text) or any(m in text for m in _CONFIG_MARKERS):
        return "config"
    return "transient"


def _deadline_left(deadline_at: float | None) -> float:
    return math.inf if deadline_at is None else deadline_at - time.monotonic()


def _where(cfg: Config) -> str:
    return f"{cfg.host}:{cfg.port} database {cfg.dbname} as {cfg.user}"


def connect_with_retry(cfg: Config, app_name: str, deadline_at: float | None) -> Conn:
    """Connect, retrying transient errors with exponential backoff and jitter.

    Retried for MIGRATE_CONNECT_WAIT_SECONDS (an RDS failover takes 30-120 s); authentication
    and configuration errors end the run at once, each with its own exit code.
    """
    started = time.monotonic()
    give_up_at = min(started + cfg.connect_wait, time.monotonic() + _deadline_left(deadline_at))
    delay, attempts = 0.25, 0
    while True:
        attempts += 1
        try:
            return connect(cfg, app_name, min(CONNECT_TIMEOUT_SECONDS, max(2.0, give_up_at - time.monotonic())))
        except psycopg.Error as exc:
            kind = classify_connect_error(exc)
            if kind == "auth":
                raise RunnerExitError(EXIT_LOGIN_REFUSED, f"login refused at {_where(cfg)}: {one_line(exc)}") from None
            if kind == "config":
                raise RunnerExitError(EXIT_CONFIG, f"cannot connect to {_where(cfg)} as configured: {one_line(exc)}") from None
            left = give_up_at - time.monotonic()
            if left <= 0:
                waited = time.monotonic() - started
                if _deadline_left(deadline_at) <= 0:
                    raise RunnerExitError(
                        EXIT_DEADLINE, f"MIGRATE_DEADLINE_SECONDS reached while connecting to {_where(cfg)}: {one_line(exc)}"
                    ) from None
                raise RunnerExitError(
                    EXIT_DB_UNREACHABLE,
                    f"cannot connect to {_where(cfg)} after {attempts} attempt(s) in {waited:.0f} s (MIGRATE_CONNECT_WAIT_SECONDS): {one_line(exc)}",
                ) from None
            pause = min(left, random.uniform(delay / 2, delay))  # noqa: S311 - jitter, not a secret
            log(f"database not reachable yet ({one_line(exc)}); retrying in {pause:.2f} s, {left:.0f} s left")
            time.sleep(pause)
            delay = min(delay * 2, 5.0)


def _version(number: int) -> str:
    return f"{number // 10000}.{number % 10000}"


def _fmt_time(value: object) -> str:
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return "unknown"


def describe_holder(conn: Conn, key: int) -> str:
    """Who holds advisory lock ``key`` in this database, from pg_locks + pg_stat_activity."""
    try:
        return _describe_holder(conn, key)
    except pg_errors.QueryCanceled:
        raise
    except psycopg.DatabaseError as exc:  # never let the description fail the wait itself
        if conn.broken:
            raise
        return f"(unknown: {one_line(exc)})"


def _describe_holder(conn: Conn, key: int) -> str:
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
    conn: Conn,
    key: int,
    wait: float,
    log_every: float = DEFAULT_LOCK_LOG_SECONDS,
    configured: float | None = None,
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
        # lock_timeout keeps the attempt's value: nothing this session runs from now on waits for a
        # lock, and resetting it would cost the hand-over a round trip.
        return time.monotonic() - start
    raise LockTimeoutError(
        f"lock key {key} not acquired within {configured if configured is not None else wait:g} s (MIGRATE_LOCK_WAIT_SECONDS); "
        f"held by {describe_holder(conn, key)}"
    )


def acquire(cfg: Config, app_name: str, deadline_at: float | None) -> tuple[Conn, float]:
    """Connect and take the lock; a connection lost while waiting is re-made and the wait resumed.

    Nothing is held while waiting, so a failover or restart then only costs time. The lock wait
    (MIGRATE_LOCK_WAIT_SECONDS) counts from the first attempt; the runner-wide deadline caps it.
    """
    started = time.monotonic()
    lock_until = started + cfg.lock_wait
    while True:
        conn = connect_with_retry(cfg, app_name, deadline_at)
        tls = "on" if conn.pgconn.ssl_in_use else "off"
        log(f"connected (PostgreSQL {_version(conn.info.server_version)}, backend pid {conn.info.backend_pid}, TLS {tls})")
        wait = max(0.0, min(lock_until - time.monotonic(), _deadline_left(deadline_at)))
        try:
            acquire_lock(conn, cfg.lock_key, wait, cfg.lock_log_every, cfg.lock_wait)
            return conn, time.monotonic() - started
        except LockTimeoutError as exc:
            conn.close()
            if _deadline_left(deadline_at) <= 0 and lock_until - time.monotonic() > 0:
                raise RunnerExitError(EXIT_DEADLINE, f"MIGRATE_DEADLINE_SECONDS reached while waiting for the lock: {exc}") from None
            raise RunnerExitError(EXIT_LOCK_TIMEOUT, str(exc)) from None
        except psycopg.OperationalError as exc:
            with contextlib.suppress(Exception):
                conn.close()
            log(f"connection lost while waiting for the lock ({one_line(exc)}); nothing was held: reconnecting")


class LockWatch:
    """Watches the lock session while the command runs, without blocking.

    Two signals: the socket becoming readable while nothing is expected (the server ended the
    session: its FATAL message and close arrive before it frees the lock), and a heartbeat query
    every ``every`` seconds that must be answered within ``timeout`` (a silent network).
    """

    def __init__(self, conn: Conn, every: float, timeout: float) -> None:
        self.pgconn = conn.pgconn
        self.every, self.timeout = every, timeout
        self.sent_at: float | None = None
        self.next_at = time.monotonic() + every

    def fileno(self) -> int:
        """The session's socket, or -1 once libpq has dropped the connection."""
        try:
            return self.pgconn.socket
        except psycopg.Error:
            return -1

    def wake_at(self) -> float:
        return self.next_at if self.sent_at is None else self.sent_at + self.timeout

    def step(self, readable: bool) -> str | None:
        """Advance; returns why the session is lost, or None while it is alive."""
        now = time.monotonic()
        try:
            if self.pgconn.status != pq.ConnStatus.OK:
                return "the server closed the lock session"
            if readable:
                self.pgconn.consume_input()
                lost = self._collect(now)
                if lost:
                    return lost
            if self.pgconn.status != pq.ConnStatus.OK:
                return "the server closed the lock session"
            if self.sent_at is None and now >= self.next_at:
                self.pgconn.send_query(b"SELECT 1")
                self.pgconn.flush()
                self.sent_at = now
            elif self.sent_at is not None and now - self.sent_at >= self.timeout:
                return f"the lock session did not answer a heartbeat within {self.timeout:g} s"
        except psycopg.Error as exc:
            return f"the lock session failed: {one_line(exc)}"
        return None

    def _collect(self, now: float) -> str | None:
        while self.sent_at is not None and not self.pgconn.is_busy():
            result = self.pgconn.get_result()
            if result is None:
                self.sent_at, self.next_at = None, now + self.every
                break
            if result.status != pq.ExecStatus.TUPLES_OK:
                return f"the lock session failed: {result.error_message.decode(errors='replace').strip()}"
        return None

    def final_unlock(self, key: int) -> str | None:
        """The proof: ``pg_advisory_unlock`` on this same session returns true. None if proven."""
        until = time.monotonic() + self.timeout + self.every
        try:
            while self.sent_at is not None:  # let an in-flight heartbeat finish first
                lost = self._wait_readable(until) or self.step(True)
                if lost:
                    return lost
            self.pgconn.send_query(f"SELECT pg_advisory_unlock({int(key)})".encode())
            self.pgconn.flush()
            value: bytes | None = None
            while True:
                while self.pgconn.is_busy():
                    lost = self._wait_readable(until)
                    if lost:
                        return lost
                    self.pgconn.consume_input()
                result = self.pgconn.get_result()
                if result is None:
                    break
                if result.status != pq.ExecStatus.TUPLES_OK:
                    return f"the final check failed: {result.error_message.decode(errors='replace').strip()}"
                value = result.get_value(0, 0)
        except psycopg.Error as exc:
            return f"the final check failed: {one_line(exc)}"
        return None if value == b"t" else f"lock key {key} was no longer held by this session"

    def _wait_readable(self, until: float) -> str | None:
        left = until - time.monotonic()
        if left <= 0 or not select.select([self.fileno()], [], [], left)[0]:
            return "the lock session did not answer the final check in time"
        return None


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


def supervise(proc: subprocess.Popen[bytes], watch: LockWatch, deadline_at: float | None) -> Outcome:
    """Wait for the command while watching the lock session and the deadline.

    A lost session kills the command's whole process group at once (SIGKILL: another runner may
    already hold the lock); the deadline stops it like SIGTERM from ECS would (grace, then SIGKILL).
    """
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
                log(f"MIGRATE_DEADLINE_SECONDS reached: stopping the command (SIGTERM, SIGKILL in {_state.stop_grace:g} s)")
                _forward(signal.SIGTERM)
    finally:
        outcome.returncode = proc.wait()
        os.close(exit_r)
    return outcome


def run_command(cfg: Config, env: dict[str, str], conn: Conn, deadline_at: float | None) -> int:
    """Run the command under the lock watch; returns the runner's exit code."""
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
    watch = LockWatch(conn, cfg.heartbeat_every, cfg.heartbeat_timeout)
    outcome = supervise(proc, watch, deadline_at)
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
        raise RunnerExitError(EXIT_DEADLINE, f"MIGRATE_DEADLINE_SECONDS ({cfg.deadline:g} s) reached: the command was stopped")
    return 128 - returncode if returncode < 0 else returncode


# ----------------------------------------------------------------------------------------- main


def _resolve(command: list[str], env: Mapping[str, str]) -> None:
    """Fail fast (before waiting for the lock) when the command cannot be found."""
    if shutil.which(command[0], path=env.get("PATH", os.defpath)) is None:
        if os.path.sep in command[0] and os.path.exists(command[0]):
            die(EXIT_NOT_EXECUTABLE, f"command not executable: {command[0]} (MIGRATE_COMMAND)")
        die(EXIT_NOT_FOUND, f"command not found: {command[0]} (MIGRATE_COMMAND)")


def _start_failure(cfg: Config, exc: OSError) -> RunnerExitError:
    if isinstance(exc, FileNotFoundError):
        return RunnerExitError(EXIT_NOT_FOUND, f"command not found: {cfg.command[0]} (MIGRATE_COMMAND): {one_line(exc)}")
    if isinstance(exc, PermissionError):
        return RunnerExitError(EXIT_NOT_EXECUTABLE, f"command not executable: {cfg.command[0]} (MIGRATE_COMMAND): {one_line(exc)}")
    return RunnerExitError(EXIT_NOT_EXECUTABLE, f"cannot start {cfg.command[0]} (MIGRATE_COMMAND): {one_line(exc)}")


def run(env: Mapping[str, str]) -> int:
    started = time.monotonic()
    try:
        cfg = load_config(env)
    except ConfigError as exc:
        die(EXIT_CONFIG, str(exc))
    _resolve(cfg.command, env)
    deadline_at = started + cfg.deadline if cfg.deadline is not None else None

    app_name = application_name(env)
    log(f"connecting to {_where(cfg)} (from {cfg.source}, sslmode={cfg.sslmode}, application_name {app_name!r})")
    try:
        conn, waited = acquire(cfg, app_name, deadline_at)
    except RunnerExitError as exc:
        die(exc.code, str(exc))
    try:
        log(f"lock key {cfg.lock_key} acquired after {waited:.2f} s")
        try:
            return run_command(cfg, child_environment(env, cfg), conn, deadline_at)
        except OSError as exc:  # the command could not be started: nothing ran
            release_lock(conn, cfg.lock_key)
            raise _start_failure(cfg, exc) from None
    except RunnerExitError as exc:
        die(exc.code, str(exc))
    finally:
        _state.phase = "teardown"
        with contextlib.suppress(Exception):
            conn.close()


def release_lock(conn: Conn, key: int) -> None:
    try:
        conn.execute("SELECT pg_advisory_unlock(%s)", (key,))
    except psycopg.Error as exc:
        log(f"warning: could not release lock key {key} ({one_line(exc)}); the session ends now, and with it the lock")


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


def _exit_now(code: int) -> NoReturn:
    """Exit without the interpreter's teardown (module and thread clean-up): every line is already
    flushed and the session closed, and tearing down psycopg and threads only delays the exit code
    the state machine and the next runner are waiting for."""
    with contextlib.suppress(Exception):
        sys.stdout.flush()
        sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    try:
        status = main()
    except SystemExit as stop:
        status = stop.code if isinstance(stop.code, int) else (0 if stop.code is None else EXIT_INTERNAL)
    _exit_now(status)
