"""The advisory lock: waiting for it (naming its holder) and watching its session while the command runs."""

from __future__ import annotations

import contextlib
import datetime as dt
import math
import select
import time

import psycopg
from psycopg import errors as pg_errors
from psycopg import pq

from runnerlib.connection import Conn, connect_with_retry
from runnerlib.exits import EXIT_DEADLINE, EXIT_LOCK_TIMEOUT, LockTimeoutError, RunnerExitError
from runnerlib.output import log, one_line
from runnerlib.settings import DEFAULT_LOCK_LOG_SECONDS, Config, Deadline


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


def acquire(cfg: Config, app_name: str, deadline: Deadline) -> tuple[Conn, float]:
    """Connect and take the lock; a connection lost while waiting is re-made and the wait resumed.

    Nothing is held while waiting, so a failover or restart then only costs time. The lock wait
    (MIGRATE_LOCK_WAIT_SECONDS) counts from the first attempt; the runner-wide deadline caps it.
    """
    started = time.monotonic()
    lock_until = started + cfg.lock_wait
    while True:
        conn = connect_with_retry(cfg, app_name, deadline)
        tls = "on" if conn.pgconn.ssl_in_use else "off"
        log(f"connected (PostgreSQL {_version(conn.info.server_version)}, backend pid {conn.info.backend_pid}, TLS {tls})")
        wait = max(0.0, min(lock_until - time.monotonic(), deadline.left()))
        try:
            acquire_lock(conn, cfg.lock_key, wait, cfg.lock_log_every, cfg.lock_wait)
            return conn, time.monotonic() - started
        except LockTimeoutError as exc:
            conn.close()
            if deadline.left() <= 0 and lock_until - time.monotonic() > 0:
                raise RunnerExitError(EXIT_DEADLINE, f"{deadline.name} reached while waiting for the lock: {exc}") from None
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


def release_lock(conn: Conn, key: int) -> None:
    try:
        conn.execute("SELECT pg_advisory_unlock(%s)", (key,))
    except psycopg.Error as exc:
        log(f"warning: could not release lock key {key} ({one_line(exc)}); the session ends now, and with it the lock")
