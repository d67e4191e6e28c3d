"""Connecting to the database with TLS: the lock session's parameters, error classes, retries."""

from __future__ import annotations

import contextlib
import math
import os
import random
import re
import socket
import time
from collections.abc import Mapping
from typing import Any

import psycopg

from runnerlib.exits import EXIT_CONFIG, EXIT_DB_UNREACHABLE, EXIT_DEADLINE, EXIT_LOGIN_REFUSED, RunnerExitError
from runnerlib.output import PROG, log, one_line
from runnerlib.settings import Config, Deadline

Conn = psycopg.Connection[tuple[Any, ...]]

CONNECT_TIMEOUT_SECONDS = 10
#: Client side: keepalives and TCP_USER_TIMEOUT end a silent connection while the runner waits
#: for the lock (while the command runs, the heartbeat notices much sooner).
CLIENT_KEEPALIVE = {"keepalives_idle": 10, "keepalives_interval": 5, "keepalives_count": 3, "tcp_user_timeout": 15000}
#: Server side, for the lock session only: the server cannot free the lock of a silent runner
#: sooner than about 60 s (30 s idle + 3 probes 10 s apart; unacknowledged data: 60 s).
SERVER_KEEPALIVE = {"tcp_keepalives_idle": 30, "tcp_keepalives_interval": 10, "tcp_keepalives_count": 3, "tcp_user_timeout": 60000}


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
    ident = "".join(c if c.isprintable() and c.isascii() else "?" for c in ident)
    return f"{PROG} {ident}"[:63]  # the server keeps at most 63 bytes


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


def where(cfg: Config) -> str:
    return f"{cfg.host}:{cfg.port} database {cfg.dbname} as {cfg.user}"


def connect_with_retry(cfg: Config, app_name: str, deadline: Deadline) -> Conn:
    """Connect, retrying transient errors with exponential backoff and jitter.

    Retried for MIGRATE_CONNECT_WAIT_SECONDS (an RDS failover takes 30-120 s); authentication
    and configuration errors end the run at once, each with its own exit code.
    """
    started = time.monotonic()
    give_up_at = min(started + cfg.connect_wait, time.monotonic() + deadline.left())
    delay, attempts = 0.25, 0
    while True:
        attempts += 1
        try:
            return connect(cfg, app_name, min(CONNECT_TIMEOUT_SECONDS, max(2.0, give_up_at - time.monotonic())))
        except psycopg.Error as exc:
            kind = classify_connect_error(exc)
            if kind == "auth":
                raise RunnerExitError(EXIT_LOGIN_REFUSED, f"login refused at {where(cfg)}: {one_line(exc)}") from None
            if kind == "config":
                raise RunnerExitError(EXIT_CONFIG, f"cannot connect to {where(cfg)} as configured: {one_line(exc)}") from None
            left = give_up_at - time.monotonic()
            if left <= 0:
                waited = time.monotonic() - started
                if deadline.left() <= 0:
                    raise RunnerExitError(
                        EXIT_DEADLINE, f"{deadline.name} reached while connecting to {where(cfg)}: {one_line(exc)}"
                    ) from None
                raise RunnerExitError(
                    EXIT_DB_UNREACHABLE,
                    f"cannot connect to {where(cfg)} after {attempts} attempt(s) in {waited:.0f} s (MIGRATE_CONNECT_WAIT_SECONDS): {one_line(exc)}",
                ) from None
            pause = min(left, random.uniform(delay / 2, delay))  # noqa: S311 - jitter, not a secret
            log(f"database not reachable yet ({one_line(exc)}); retrying in {pause:.2f} s, {left:.0f} s left")
            time.sleep(pause)
            delay = min(delay * 2, 5.0)
