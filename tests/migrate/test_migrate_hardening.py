"""The audit's bad inputs (issue 15): each refused with exit 80 and one line naming the variable,
or accepted and handled correctly; none crashes (no traceback, no exit 89) and none leaks the
password. Then the features the release relies on: redacted output, the reserved exit-code range,
MIGRATE_DEADLINE_AT and MIGRATE_ACTION, against a real PostgreSQL."""

from __future__ import annotations

import math
import os
import re
import shlex
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from urllib.parse import parse_qs, quote, quote_plus, urlsplit

import pytest

from testbed import pgserver
from tests.migrate.runner_harness import PASSWORD, ForkServer, Result, advisory_locks, first_in_order
from tests.migrate.test_migrate_runner import assert_no_secret, sh

RunRunner = Callable[..., Result]
EXIT_CONFIG = 80
ENC = quote(PASSWORD, safe="")
CA = "{ca}"  # replaced by a real CA file of the test's own
BASE = {
    "DB_HOST": "db.internal.example",
    "DB_PORT": "5432",
    "DB_NAME": "app",
    "DB_USER": "owner",
    "DB_PASSWORD": PASSWORD,
    "DB_SSLMODE": "verify-full",
    "DB_SSLROOTCERT": CA,
    "MIGRATE_COMMAND": "true",
}
NO_PARTS = {k: v for k, v in BASE.items() if not k.startswith("DB_") or k.startswith("DB_SSL")}


def url(query: str, password: str = ENC) -> dict[str, str]:
    return NO_PARTS | {"DATABASE_URL": f"postgresql://owner:{password}@db.internal.example/app?{query}"}


def with_ca(env: dict[str, str], ca: Path) -> dict[str, str]:
    return {k: v.replace(CA, str(ca)) for k, v in env.items()}


@pytest.fixture
def ca(tmp_path: Path) -> Path:
    path = tmp_path / "ca.pem"
    path.write_text("a CA bundle (the runner only checks that the file exists)")
    return path


NOW = int(time.time())
BAD: list[tuple[dict[str, str], str, str]] = [
    # TLS undone by the URL (Prisma dialect, verify-full against DB_SSLROOTCERT)
    (url("sslaccept=accept_invalid_certs"), "sslaccept", "accept-invalid-certs"),
    (url("sslmode=verify-full"), "DATABASE_URL sslmode", "prisma-reads-verify-full-as-prefer"),
    (url("sslmode=verify-ca"), "DATABASE_URL sslmode", "prisma-reads-verify-ca-as-prefer"),
    (url("sslcert=/other.pem"), "sslcert", "other-ca-file"),
    (url("sslmode=prefer"), "sslmode", "prefer-contradicts"),
    (url("sslmode=disable"), "sslmode", "disable-contradicts"),
    (url("sslmode=require&sslaccept=strict&sslcert=/other.pem"), "CA file", "strict-with-another-ca"),
    (url("sslaccept=strict&sslaccept=accept_invalid_certs"), "repeats sslaccept", "repeated-sslaccept"),
    (url("sslaccept=maybe"), "sslaccept", "unknown-sslaccept"),
    (url("host=/var/run/postgresql"), "host", "socket-host-parameter"),
    (url("hostaddr=10.0.0.9"), "hostaddr", "hostaddr-parameter"),
    (url("service=other"), "service", "service-parameter"),
    # the same in the libpq dialect
    (url("sslmode=require") | {"MIGRATE_URL_TLS": "libpq"}, "sslmode", "libpq-require-contradicts"),
    (url("sslrootcert=/other.pem") | {"MIGRATE_URL_TLS": "libpq"}, "CA file", "libpq-other-ca"),
    (url("sslmode=verify-full&sslmode=disable") | {"MIGRATE_URL_TLS": "libpq"}, "repeats sslmode", "libpq-repeated-sslmode"),
    # the URL itself
    (url("", password="%FF%FE"), "not valid UTF-8", "url-password-not-utf8"),
    (NO_PARTS | {"DATABASE_URL": "postgresql://owner:pw@/app"}, "no host", "url-no-host"),
    (NO_PARTS | {"DATABASE_URL": "postgresql://:pw@db/app"}, "user name", "url-no-user"),
    (NO_PARTS | {"DATABASE_URL": "postgresql://owner:pw@db/"}, "database", "url-no-database"),
    (NO_PARTS | {"DATABASE_URL": "postgresql://owner:pw@db/" + "d" * 64}, "database name", "url-database-too-long"),
    (NO_PARTS | {"DATABASE_URL": "postgresql://owner:pw@db/app?" + "x=1&" * 2000}, "DATABASE_URL", "url-too-long"),
    (NO_PARTS | {"DATABASE_URL": "postgresql://owner:pw@db:99999/app"}, "DATABASE_URL", "url-port-out-of-range"),
    # sizes and encodings of the DB_* keys
    (BASE | {"DB_HOST": "h" * 100_000}, "DB_HOST", "host-100k-characters"),
    (BASE | {"DB_HOST": "db.example;rm"}, "DB_HOST", "host-with-semicolon"),
    (BASE | {"DB_PASSWORD": "p\udcff\udcfew"}, "DB_PASSWORD", "password-not-utf8"),
    (BASE | {"DB_PASSWORD": "line1\nline2"}, "DB_PASSWORD", "password-with-newline"),
    (BASE | {"DB_PASSWORD": "x" * 1025}, "DB_PASSWORD", "password-too-long"),
    (BASE | {"DB_NAME": "n" * 64}, "DB_NAME", "name-over-63-bytes"),
    (BASE | {"DB_USER": "é" * 32}, "DB_USER", "user-over-63-bytes"),
    (BASE | {"DB_USER": "own\ter"}, "DB_USER", "user-with-tab"),
    (BASE | {"DB_PORT": "5" * 5000}, "DB_PORT", "port-5000-digits"),
    (BASE | {"DB_PORT": "0"}, "DB_PORT", "port-zero"),
    # seconds
    (BASE | {"MIGRATE_STOP_GRACE_SECONDS": "1e300"}, "MIGRATE_STOP_GRACE_SECONDS", "grace-1e300"),
    (BASE | {"MIGRATE_STOP_GRACE_SECONDS": "121"}, "MIGRATE_STOP_GRACE_SECONDS", "grace-over-fargate-maximum"),
    (BASE | {"MIGRATE_LOCK_WAIT_SECONDS": "nan"}, "MIGRATE_LOCK_WAIT_SECONDS", "lock-wait-nan"),
    (BASE | {"MIGRATE_LOCK_WAIT_SECONDS": "inf"}, "MIGRATE_LOCK_WAIT_SECONDS", "lock-wait-inf"),
    (BASE | {"MIGRATE_CONNECT_WAIT_SECONDS": "1e9"}, "MIGRATE_CONNECT_WAIT_SECONDS", "connect-wait-huge"),
    (BASE | {"MIGRATE_DEADLINE_SECONDS": "9" * 400}, "MIGRATE_DEADLINE_SECONDS", "deadline-400-digits"),
    (BASE | {"MIGRATE_LOCK_LOG_SECONDS": "-1"}, "MIGRATE_LOCK_LOG_SECONDS", "lock-log-negative"),
    (BASE | {"MIGRATE_HEARTBEAT_SECONDS": "inf"}, "MIGRATE_HEARTBEAT_SECONDS", "heartbeat-inf"),
    (BASE | {"MIGRATE_LOCK_KEY": "9" * 5000}, "MIGRATE_LOCK_KEY", "lock-key-5000-digits"),
    # MIGRATE_DEADLINE_AT
    (BASE | {"MIGRATE_DEADLINE_AT": str(NOW * 1000)}, "MIGRATE_DEADLINE_AT", "deadline-at-in-milliseconds"),
    (BASE | {"MIGRATE_DEADLINE_AT": "tomorrow"}, "MIGRATE_DEADLINE_AT", "deadline-at-text"),
    (BASE | {"MIGRATE_DEADLINE_AT": "-5"}, "MIGRATE_DEADLINE_AT", "deadline-at-negative"),
    (BASE | {"MIGRATE_DEADLINE_AT": "915148800"}, "MIGRATE_DEADLINE_AT", "deadline-at-1999"),
    (BASE | {"MIGRATE_DEADLINE_AT": f"{NOW}.5"}, "MIGRATE_DEADLINE_AT", "deadline-at-fraction"),
    # MIGRATE_ACTION / MIGRATE_RESOLVE
    (BASE | {"MIGRATE_ACTION": "reset"}, "MIGRATE_ACTION", "action-reset"),
    (BASE | {"MIGRATE_ACTION": "resolve"}, "MIGRATE_RESOLVE", "resolve-without-name"),
    (BASE | {"MIGRATE_RESOLVE": "applied:20240101000000_init"}, "MIGRATE_RESOLVE", "resolve-without-action"),
    (BASE | {"MIGRATE_ACTION": "resolve", "MIGRATE_RESOLVE": "applied:--schema=x"}, "MIGRATE_RESOLVE", "resolve-option-as-name"),
    (BASE | {"MIGRATE_ACTION": "resolve", "MIGRATE_RESOLVE": "applied:../20240101000000_x"}, "MIGRATE_RESOLVE", "resolve-path"),
    (BASE | {"MIGRATE_ACTION": "resolve", "MIGRATE_RESOLVE": "applied:20240101000000_x y"}, "MIGRATE_RESOLVE", "resolve-space"),
    (BASE | {"MIGRATE_ACTION": "resolve", "MIGRATE_RESOLVE": "deleted:20240101000000_x"}, "MIGRATE_RESOLVE", "resolve-verb"),
    (BASE | {"MIGRATE_ACTION": "status", "MIGRATE_STATUS_COMMAND": " "}, "MIGRATE_STATUS_COMMAND", "status-command-blank"),
    (BASE | {"MIGRATE_COMMAND": "x" * 5000}, "MIGRATE_COMMAND", "command-5000-characters"),
]


@pytest.mark.parametrize(("env", "variable"), [pytest.param(e, v, id=i) for e, v, i in BAD])
def test_bad_input_is_a_configuration_error_in_one_line(env: dict[str, str], variable: str, ca: Path) -> None:
    # The fork server (runner_harness.ForkServer) answers as a new `python runner.py` would (test_migrate_config.py proves it), without an interpreter per case.
    proc = ForkServer.shared().run({"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **with_ca(env, ca)})
    stderr = proc.stderr.decode(errors="replace")
    assert proc.returncode == EXIT_CONFIG, stderr
    (line,) = stderr.strip().splitlines()
    assert variable in line
    assert len(line) < 700
    assert "Traceback" not in stderr
    assert_no_secret(stderr, proc.stdout.decode(errors="replace"))
    assert proc.stdout == b""  # refused before connecting


GOOD: list[tuple[dict[str, str], dict[str, list[str]], str]] = [
    # the verifying spelling, complete or partial: kept, and completed
    (
        url(f"sslmode=require&sslaccept=strict&sslcert={CA}"),
        {"sslmode": ["require"], "sslaccept": ["strict"], "sslcert": [CA]},
        "prisma-verify-full-spelled-out",
    ),
    (url("sslaccept=strict"), {"sslaccept": ["strict"], "sslmode": ["require"], "sslcert": [CA]}, "prisma-strict-completed"),
    (
        url("schema=public&connection_limit=1"),
        {"schema": ["public"], "connection_limit": ["1"], "sslmode": ["require"], "sslaccept": ["strict"], "sslcert": [CA]},
        "prisma-other-parameters",
    ),
    (
        url("sslaccept=accept_invalid_certs") | {"DB_SSLMODE": "require"},
        {"sslaccept": ["accept_invalid_certs"], "sslmode": ["require"]},
        "not-verifying-by-choice",
    ),
    (url("sslmode=verify-full") | {"MIGRATE_URL_TLS": "libpq"}, {"sslmode": ["verify-full"], "sslrootcert": [CA]}, "libpq-verify-full"),
]


@pytest.mark.parametrize(("env", "query"), [pytest.param(e, q, id=i) for e, q, i in GOOD])
def test_consistent_input_is_accepted(runner_module: ModuleType, env: dict[str, str], query: dict[str, list[str]], ca: Path) -> None:
    cfg = runner_module.load_config(with_ca(env, ca))
    assert parse_qs(urlsplit(cfg.child_url).query) == {k: [v.replace(CA, str(ca)) for v in vs] for k, vs in query.items()}


def test_every_value_at_its_bound_is_accepted(runner_module: ModuleType, ca: Path) -> None:
    env = with_ca(BASE, ca) | {
        "DB_NAME": "n" * 63,
        "DB_USER": "é" * 31,
        "DB_PASSWORD": "x" * 1024,
        "MIGRATE_STOP_GRACE_SECONDS": "120",
        "MIGRATE_LOCK_WAIT_SECONDS": "86400",
        "MIGRATE_DEADLINE_AT": str(int(time.time()) + 6 * 86400),
        "MIGRATE_LOCK_KEY": str(-(2**63)),
    }
    cfg = runner_module.load_config(env)
    assert (cfg.stop_grace, cfg.lock_wait, cfg.lock_key) == (120, 86400, -(2**63))


def test_deadline_is_the_earlier_of_seconds_and_at(runner_module: ModuleType, ca: Path) -> None:
    from runnerlib.settings import deadline_for  # noqa: PLC0415 - importable once the runner module is loaded

    now = time.time()
    env = with_ca(BASE, ca) | {"MIGRATE_DEADLINE_SECONDS": "600"}
    later = runner_module.load_config(env | {"MIGRATE_DEADLINE_AT": str(int(now) + 3600)})
    sooner = runner_module.load_config(env | {"MIGRATE_DEADLINE_AT": str(int(now) + 60)})
    started = time.monotonic()
    assert deadline_for(later, started).name == "MIGRATE_DEADLINE_SECONDS"
    soon = deadline_for(sooner, started)
    assert soon.name == "MIGRATE_DEADLINE_AT" and 50 < soon.left() <= 61


@pytest.mark.parametrize(
    ("returncode", "expected"),
    [(0, 0), (1, 1), (2, 2), (6, 6), (70, 70), (79, 79), (80, 88), (84, 88), (89, 88), (90, 90), (-9, 137), (-15, 143)],
)
def test_command_codes_never_read_as_the_runners_own(runner_module: ModuleType, returncode: int, expected: int) -> None:
    assert runner_module.command_exit(returncode) == expected


@pytest.mark.parametrize("secret", [PASSWORD, "Ab1/+ %zz", "simple"])
def test_redactor_removes_every_spelling(runner_module: ModuleType, secret: str) -> None:
    redact = runner_module.Redactor([secret])
    for form in {
        secret,
        quote(secret, safe=""),
        quote(secret),
        quote_plus(secret),
        re.sub("%[0-9A-F]{2}", lambda m: m.group(0).lower(), quote(secret, safe="")),
    }:
        line = f"url postgresql://u:{form}@h/db end\n".encode()
        out = redact(line)
        assert form.encode() not in out and b"[redacted]" in out and out.endswith(b" end\n")


# --------------------------------------------------------------------------- against PostgreSQL


def test_output_is_redacted_before_it_is_forwarded(base_env: dict[str, str], run_runner: RunRunner) -> None:
    script = f'echo "url: $DATABASE_URL"; echo "raw: {PASSWORD}" >&2; echo "lower: {ENC.lower()}"; echo tail-ok'
    res = run_runner(base_env | {"MIGRATE_COMMAND": shlex.join(["sh", "-c", script])})
    assert res.code == 0, res.stdout + res.stderr
    assert_no_secret(res.stdout, res.stderr)
    assert ENC.lower() not in res.stdout
    # three lines of the command's, and the two spellings in the runner's own "running: …" line
    assert res.stdout.count("[redacted]") == 5 and "tail-ok" in res.stdout


@pytest.mark.parametrize("code", [80, 83, 84, 89])
def test_a_command_code_in_the_reserved_range_exits_88(base_env: dict[str, str], run_runner: RunRunner, code: int) -> None:
    res = run_runner(base_env | {"MIGRATE_COMMAND": sh(f"exit {code}")})
    assert res.code == 88
    assert f"exit code {code} is in the runner's reserved range" in res.stdout


def test_deadline_at_stops_the_command(pg: pgserver.PgServer, database: str, base_env: dict[str, str], run_runner: RunRunner) -> None:
    script = 'trap "echo command-got-TERM; exit 0" TERM; echo ready; while :; do sleep 0.05; done'
    env = base_env | {"MIGRATE_DEADLINE_SECONDS": "600", "MIGRATE_COMMAND": sh(script)}

    def attempt(ahead: float) -> Result:  # whole seconds only: the next one at least `ahead` away
        return run_runner(env | {"MIGRATE_DEADLINE_AT": str(math.ceil(time.time() + ahead))}, timeout=30)

    # The command must be running (its trap set: "ready") when the deadline comes.
    res = first_in_order(attempt, (0.2, 2), lambda res: "ready" in res.stdout.splitlines())
    assert res.code == 84
    assert "MIGRATE_DEADLINE_AT reached" in res.stderr_lines[0] and len(res.stderr_lines) == 1
    assert "command-got-TERM" in res.stdout
    assert advisory_locks(pg, database, int(base_env["MIGRATE_LOCK_KEY"])) == []


def test_deadline_at_already_passed_runs_nothing(base_env: dict[str, str], run_runner: RunRunner, tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    env = base_env | {"MIGRATE_DEADLINE_AT": str(int(time.time()) - 5), "MIGRATE_COMMAND": shlex.join(["touch", str(marker)])}
    res = run_runner(env)
    assert res.code == 84 and "nothing ran" in res.stderr_lines[0]
    assert res.stdout == "" and not marker.exists()


def test_action_status_runs_the_status_command_under_the_lock(
    pg: pgserver.PgServer, database: str, base_env: dict[str, str], run_runner: RunRunner
) -> None:
    key = int(base_env["MIGRATE_LOCK_KEY"])
    probe = f"SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted AND objid::bigint = {key & 0xFFFFFFFF}"  # noqa: S608 - an integer
    status = sh(f'echo status-ran; psql -X -At "$DATABASE_URL" -c "{probe}"')
    res = run_runner(
        base_env
        | {
            "MIGRATE_URL_TLS": "libpq",
            "MIGRATE_ACTION": "status",
            "MIGRATE_STATUS_COMMAND": status,
            "MIGRATE_COMMAND": sh("echo deploy-ran"),
        }
    )
    assert res.code == 0, res.stdout + res.stderr
    assert "status-ran" in res.stdout.splitlines() and "deploy-ran" not in res.stdout
    assert "1" in res.stdout.splitlines()  # the runner's session held the lock while it ran
    assert advisory_locks(pg, database, key) == []


@pytest.mark.parametrize(
    ("resolve", "args"),
    [
        ("rolled-back:20240101000000_init", "--rolled-back 20240101000000_init"),
        ("applied:20251231235959_add_index_x", "--applied 20251231235959_add_index_x"),
    ],
)
def test_action_resolve_appends_the_validated_name(base_env: dict[str, str], run_runner: RunRunner, resolve: str, args: str) -> None:
    command = shlex.join(["sh", "-c", 'echo "resolve-args: $*"', "resolve"])
    res = run_runner(base_env | {"MIGRATE_ACTION": "resolve", "MIGRATE_RESOLVE": resolve, "MIGRATE_RESOLVE_COMMAND": command})
    assert res.code == 0, res.stdout + res.stderr
    assert f"resolve-args: {args}" in res.stdout.splitlines()
