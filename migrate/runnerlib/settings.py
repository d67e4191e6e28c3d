"""The runner's configuration: every environment value bounded; a bad one is a ConfigError that
names the variable (one line, never the password)."""

from __future__ import annotations

import math
import os
import re
import shlex
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit, urlunsplit

from runnerlib.exits import ConfigError

#: Prisma's own migrate lock key; the wrapper lock must differ or Prisma would wait on us.
PRISMA_LOCK_KEY = 72707369
#: Default wrapper lock key: the ASCII bytes "migrate!" read as a big-endian int64.
DEFAULT_LOCK_KEY = int.from_bytes(b"migrate!", "big")  # 7883946363647714593
DEFAULT_COMMAND = "npx prisma migrate deploy"
DEFAULT_STATUS_COMMAND = "npx prisma migrate status"
DEFAULT_RESOLVE_COMMAND = "npx prisma migrate resolve"
ACTIONS = ("deploy", "status", "resolve")
#: MIGRATE_RESOLVE: how Prisma marks a failed migration, and its folder name: Prisma names
#: migration folders <14-digit timestamp>_<snake_case name>. Nothing else reaches the command line.
RESOLVE_PATTERN = re.compile(r"(rolled-back|applied):([0-9]{14}_[A-Za-z0-9_]{1,200})")
DEFAULT_SSLMODE = "verify-full"
DEFAULT_LOCK_WAIT_SECONDS = 900.0
DEFAULT_STOP_GRACE_SECONDS = 20.0
DEFAULT_CONNECT_WAIT_SECONDS = 120.0
DEFAULT_HEARTBEAT_SECONDS = 1.0
DEFAULT_HEARTBEAT_TIMEOUT_SECONDS = 3.0
DEFAULT_LOCK_LOG_SECONDS = 15.0
SSL_MODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")
VERIFYING_MODES = ("verify-ca", "verify-full")
#: The sslmode values Prisma's engine knows; any other it reads as prefer.
PRISMA_SSL_MODES = ("disable", "prefer", "require")
PRISMA_SSLACCEPT = ("strict", "accept_invalid_certs")
URL_TLS_STYLES = ("prisma", "libpq")
#: URL parameters that would point the command at another server or socket than the lock session.
REDIRECTING_PARAMETERS = ("host", "hostaddr", "port", "service", "socket")
#: Heartbeat interval + timeout must stay far below the server's 60 s keepalive window.
MAX_HEARTBEAT_WINDOW_SECONDS = 20.0
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
#: Bounds of the values (seconds). Fargate's stopTimeout is at most 120 s: a longer grace never ends.
MAX_WAIT_SECONDS = 86_400.0
MAX_STOP_GRACE_SECONDS = 120.0
MAX_TEXT = 4096  # DATABASE_URL, MIGRATE_COMMAND
MAX_PASSWORD = 1024
MAX_IDENTIFIER_BYTES = 63  # PostgreSQL's NAMEDATALEN - 1: longer names are truncated by the server
MAX_HOST = 253
HOST_PATTERN = re.compile(r"[A-Za-z0-9._:%-]{1,253}")  # names, IPv4, IPv6 (with a zone)
#: MIGRATE_DEADLINE_AT is epoch seconds: earliest 2020, latest a week ahead (a value in
#: milliseconds or a typo is refused, not read as "never").
DEADLINE_AT_MIN = 1_577_836_800
DEADLINE_AT_MAX_AHEAD = 7 * 86_400


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
    action: str = "deploy"
    #: MIGRATE_DEADLINE_AT (epoch seconds), if set.
    deadline_at_epoch: int | None = None


def _get(env: Mapping[str, str], name: str) -> str | None:
    value = env.get(name)
    if not value:
        return None
    _check_text(value, name)
    return value


def _check_text(value: str, name: str, limit: int = MAX_TEXT) -> None:
    try:
        value.encode("utf-8")  # os.environ keeps undecodable bytes as lone surrogates
    except UnicodeEncodeError:
        raise ConfigError(f"{name} is not valid UTF-8") from None
    if len(value) > limit:
        raise ConfigError(f"{name} is longer than {limit} characters")
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise ConfigError(f"{name} contains a control character (a line break, a tab, …)")


def _require(env: Mapping[str, str], name: str) -> str:
    value = _get(env, name)
    if value is None:
        raise ConfigError(f"{name} is required (or set DATABASE_URL)")
    return value


def _check_identifier(value: str, name: str) -> str:
    if len(value.encode()) > MAX_IDENTIFIER_BYTES:
        raise ConfigError(f"{name} is longer than {MAX_IDENTIFIER_BYTES} bytes (PostgreSQL would truncate it)")
    return value


def _check_password(value: str, name: str) -> str:
    _check_text(value, name, MAX_PASSWORD)
    return value


def _parse_port(value: str, name: str) -> int:
    if len(value) > 16:
        raise ConfigError(f"{name} must be a port number")
    try:
        port = int(value.strip(), 10)
    except ValueError:
        raise ConfigError(f"{name} must be a port number, got {value!r}") from None
    if not 1 <= port <= 65535:
        raise ConfigError(f"{name} must be between 1 and 65535, got {port}")
    return port


def _parse_seconds(
    env: Mapping[str, str], name: str, default: float, *, positive: bool = False, maximum: float = MAX_WAIT_SECONDS
) -> float:
    raw = _get(env, name)
    if raw is None:
        return default
    if len(raw) > 32:
        raise ConfigError(f"{name} must be a number of seconds (at most {maximum:g})")
    try:
        value = float(raw.strip())
    except ValueError:
        raise ConfigError(f"{name} must be a number of seconds, got {raw!r}") from None
    if not math.isfinite(value) or value < 0 or (positive and value == 0):
        kind = "positive" if positive else "non-negative"
        raise ConfigError(f"{name} must be a {kind} number of seconds, got {raw!r}")
    if value > maximum:
        raise ConfigError(f"{name} must be at most {maximum:g} s, got {raw!r}")
    return value


def _parse_sslmode(value: str, name: str) -> str:
    if value not in SSL_MODES:
        raise ConfigError(f"{name} must be one of {', '.join(SSL_MODES)}; got {value[:40]!r}")
    return value


def _check_host(host: str, name: str) -> str:
    if not HOST_PATTERN.fullmatch(host):
        raise ConfigError(f"{name} must be a host name or IP address (at most {MAX_HOST} characters), got {host[:80]!r}")
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
    seen: set[str] = set()
    for key, _ in query:
        if key.lower() in REDIRECTING_PARAMETERS:
            raise ConfigError(
                f"DATABASE_URL parameter {key} is refused: it would send the command to another server or socket than the lock session"
            )
        if key in seen and key.startswith("ssl"):
            raise ConfigError(f"DATABASE_URL repeats {key}: which one the command reads is not defined")
        seen.add(key)
    values = dict(query)
    if style == "prisma":
        mode, accept = values.get("sslmode"), values.get("sslaccept")
        if mode is not None and mode not in PRISMA_SSL_MODES:
            raise ConfigError(
                f"DATABASE_URL sslmode {mode[:40]!r} is not one Prisma knows ({', '.join(PRISMA_SSL_MODES)}): it would read it as prefer "
                "(MIGRATE_URL_TLS=prisma; verify-full is sslmode=require&sslaccept=strict&sslcert=<CA>)"
            )
        if accept is not None and accept not in PRISMA_SSLACCEPT:
            raise ConfigError(f"DATABASE_URL sslaccept must be one of {', '.join(PRISMA_SSLACCEPT)}")
        if accept == "strict" and values.get("sslcert"):
            if values.get("sslmode", "require") != "require":
                raise ConfigError("DATABASE_URL: with sslaccept=strict, sslmode must be require (MIGRATE_URL_TLS=prisma)")
            return "verify-full", values["sslcert"]
        return mode, None
    mode = values.get("sslmode")
    if mode is not None:
        _parse_sslmode(mode, "DATABASE_URL sslmode")
    return mode, values.get("sslrootcert")


def _check_verifying_url(query: list[tuple[str, str]], wanted: list[tuple[str, str]], sslmode: str) -> None:
    """With a verifying mode, every TLS parameter the URL already holds must be the verifying one:
    the command must check the certificate the runner checks, against the same CA file."""
    want = dict(wanted)
    for key, value in query:
        if key in want and value != want[key]:
            shown = value[:200] if key in {"sslcert", "sslrootcert"} else value[:60]
            raise ConfigError(
                f"DATABASE_URL {key}={shown} weakens or contradicts {sslmode} against DB_SSLROOTCERT "
                f"(the command would not verify as the runner does); remove it or set {key}={want[key]}"
            )


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
    if not parts.hostname:
        raise ConfigError("DATABASE_URL has no host")
    host = _check_host(unquote(parts.hostname), "DATABASE_URL host")
    user = _check_identifier(unquote(parts.username or ""), "DATABASE_URL user name")
    if not user:
        raise ConfigError("DATABASE_URL has no user name")
    dbname = _check_identifier(unquote(parts.path.lstrip("/")), "DATABASE_URL database name")
    if not dbname or "/" in dbname:
        raise ConfigError("DATABASE_URL must name one database in its path (postgresql://…/dbname)")
    try:
        password = unquote(parts.password, errors="strict") if parts.password is not None else None
    except UnicodeDecodeError:
        raise ConfigError("DATABASE_URL password is not valid UTF-8 once percent-decoded") from None
    if password is not None:
        _check_password(password, "DATABASE_URL password")
    query = parse_qsl(parts.query, keep_blank_values=True)
    url_mode, url_root = _url_tls(query, style)
    if url_mode is not None and env_mode is not None and url_mode != env_mode:
        raise ConfigError(
            f"DATABASE_URL asks for sslmode {url_mode} but DB_SSLMODE is {env_mode}: they contradict each other; set only one, or make them agree"
        )
    if url_root is not None and env_root is not None and url_root != env_root:
        raise ConfigError(f"DATABASE_URL names CA file {url_root[:200]} but DB_SSLROOTCERT is {env_root}: they contradict each other")
    sslmode = url_mode or env_mode or DEFAULT_SSLMODE
    rootcert = url_root or env_root
    wanted = _tls_query(style, sslmode, rootcert)
    if sslmode in VERIFYING_MODES:
        _check_verifying_url(query, wanted, sslmode)
    present = {key for key, _ in query}
    added = [(k, v) for k, v in wanted if k not in present]
    child_url = url.strip()
    if added:
        sep = "&" if parts.query else ""
        child_url = urlunsplit(parts._replace(query=f"{parts.query}{sep}{urlencode(added)}"))
    return _Target(host, port_value or 5432, dbname, user, password, sslmode, rootcert, child_url, "DATABASE_URL")


def _from_parts(env: Mapping[str, str], env_mode: str | None, env_root: str | None, style: str) -> _Target:
    host = _check_host(_require(env, "DB_HOST"), "DB_HOST")
    port = _parse_port(_require(env, "DB_PORT"), "DB_PORT")
    dbname = _check_identifier(_require(env, "DB_NAME"), "DB_NAME")
    user = _check_identifier(_require(env, "DB_USER"), "DB_USER")
    password = _check_password(_require(env, "DB_PASSWORD"), "DB_PASSWORD")
    sslmode = env_mode or DEFAULT_SSLMODE
    tls = _tls_query(style, sslmode, env_root)
    child_url = _url_from_parts(host=host, port=port, dbname=dbname, user=user, password=password, tls=tls)
    return _Target(host, port, dbname, user, password, sslmode, env_root, child_url, "DB_* variables")


def _split_command(env: Mapping[str, str], name: str, default: str) -> list[str]:
    raw = env.get(name)
    if raw is not None and not raw.strip():
        raise ConfigError(f"{name} is set but empty: name the command, or unset it for the default ({default})")
    if raw is not None:
        _check_text(raw, name)
    try:
        command = shlex.split(raw if raw is not None else default)
    except ValueError as exc:
        raise ConfigError(f"{name} cannot be split like a shell command: {exc}") from None
    if not command:
        raise ConfigError(f"{name} holds no command")
    return command


def _parse_command(env: Mapping[str, str]) -> tuple[str, list[str]]:
    """(action, the command line): MIGRATE_ACTION picks deploy, status or resolve."""
    action = _get(env, "MIGRATE_ACTION") or "deploy"
    if action not in ACTIONS:
        raise ConfigError(f"MIGRATE_ACTION must be one of {', '.join(ACTIONS)}; got {action[:40]!r}")
    resolve = _get(env, "MIGRATE_RESOLVE")
    if action != "resolve" and resolve is not None:
        raise ConfigError("MIGRATE_RESOLVE is set but MIGRATE_ACTION is not resolve: refusing to guess which was meant")
    if action == "deploy":
        return action, _split_command(env, "MIGRATE_COMMAND", DEFAULT_COMMAND)
    if action == "status":
        return action, _split_command(env, "MIGRATE_STATUS_COMMAND", DEFAULT_STATUS_COMMAND)
    if resolve is None:
        raise ConfigError("MIGRATE_RESOLVE is required with MIGRATE_ACTION=resolve (rolled-back:NAME or applied:NAME)")
    match = RESOLVE_PATTERN.fullmatch(resolve)
    if match is None:
        raise ConfigError(
            "MIGRATE_RESOLVE must be rolled-back:NAME or applied:NAME, NAME a Prisma migration folder "
            f"(<14-digit timestamp>_<letters, digits, _>); got {resolve[:80]!r}"
        )
    command = _split_command(env, "MIGRATE_RESOLVE_COMMAND", DEFAULT_RESOLVE_COMMAND)
    return action, [*command, f"--{match.group(1)}", match.group(2)]


def _parse_lock_key(env: Mapping[str, str]) -> int:
    raw_key = _get(env, "MIGRATE_LOCK_KEY")
    if raw_key is None:
        return DEFAULT_LOCK_KEY
    if len(raw_key) > 24:
        raise ConfigError("MIGRATE_LOCK_KEY must fit in a signed 64-bit integer")
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


def _parse_deadline_at(env: Mapping[str, str], now: float) -> int | None:
    raw = _get(env, "MIGRATE_DEADLINE_AT")
    if raw is None:
        return None
    if not re.fullmatch(r"[0-9]{1,12}", raw.strip()):
        raise ConfigError(f"MIGRATE_DEADLINE_AT must be whole Unix epoch seconds, got {raw[:40]!r}")
    value = int(raw.strip())
    if value < DEADLINE_AT_MIN or value > now + DEADLINE_AT_MAX_AHEAD:
        raise ConfigError(f"MIGRATE_DEADLINE_AT must be Unix epoch seconds within a week from now, got {value}")
    return value


def _check_rootcert(target: _Target) -> None:
    if target.sslmode not in VERIFYING_MODES:
        return
    if target.sslrootcert is None:
        raise ConfigError(f"DB_SSLMODE {target.sslmode} needs DB_SSLROOTCERT, the CA bundle to verify the server with")
    if not os.path.isabs(target.sslrootcert) or not os.path.isfile(target.sslrootcert):
        raise ConfigError(f"DB_SSLROOTCERT must be the absolute path of a readable CA bundle file, got {target.sslrootcert[:200]!r}")


def load_config(env: Mapping[str, str], now: float | None = None) -> Config:
    sslmode_env = _get(env, "DB_SSLMODE")
    env_mode = _parse_sslmode(sslmode_env, "DB_SSLMODE") if sslmode_env is not None else None
    env_root = _get(env, "DB_SSLROOTCERT")
    style = _get(env, "MIGRATE_URL_TLS") or "prisma"
    if style not in URL_TLS_STYLES:
        raise ConfigError(f"MIGRATE_URL_TLS must be one of {', '.join(URL_TLS_STYLES)}; got {style[:40]!r}")
    action, command = _parse_command(env)
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
        lock_log_every=_parse_seconds(env, "MIGRATE_LOCK_LOG_SECONDS", DEFAULT_LOCK_LOG_SECONDS, maximum=3600) or DEFAULT_LOCK_LOG_SECONDS,
        stop_grace=_parse_seconds(env, "MIGRATE_STOP_GRACE_SECONDS", DEFAULT_STOP_GRACE_SECONDS, maximum=MAX_STOP_GRACE_SECONDS),
        connect_wait=_parse_seconds(env, "MIGRATE_CONNECT_WAIT_SECONDS", DEFAULT_CONNECT_WAIT_SECONDS),
        deadline=deadline,
        heartbeat_every=heartbeat_every,
        heartbeat_timeout=heartbeat_timeout,
        action=action,
        deadline_at_epoch=_parse_deadline_at(env, time.time() if now is None else now),
    )


def child_environment(env: Mapping[str, str], cfg: Config) -> dict[str, str]:
    """The command's environment: ours, without DB_PASSWORD, plus the DATABASE_URL we built."""
    child = {k: v for k, v in env.items() if k != "DB_PASSWORD"}
    child["DATABASE_URL"] = cfg.child_url
    return child


@dataclass(frozen=True)
class Deadline:
    """The runner-wide deadline (time.monotonic()), and the variable that set it, for messages."""

    at: float | None
    name: str = "MIGRATE_DEADLINE_SECONDS"

    def left(self) -> float:
        return math.inf if self.at is None else self.at - time.monotonic()


def deadline_for(cfg: Config, started: float) -> Deadline:
    """The earlier of MIGRATE_DEADLINE_SECONDS (from ``started``) and MIGRATE_DEADLINE_AT."""
    candidates: list[tuple[float, str]] = []
    if cfg.deadline is not None:
        candidates.append((started + cfg.deadline, "MIGRATE_DEADLINE_SECONDS"))
    if cfg.deadline_at_epoch is not None:
        candidates.append((time.monotonic() + (cfg.deadline_at_epoch - time.time()), "MIGRATE_DEADLINE_AT"))
    if not candidates:
        return Deadline(None)
    at, name = min(candidates)
    return Deadline(at, name)
