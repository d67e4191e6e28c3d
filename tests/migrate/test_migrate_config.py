"""The runner's configuration: exit code 80 with one line naming the variable; URL building."""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from urllib.parse import parse_qs, quote, unquote, urlsplit

import pytest

from release import contract
from tests.migrate.runner_harness import PASSWORD, REPO, RUNNER, ForkServer, Result, Runner

EXIT_CONFIG = 80

GOOD = {
    "DB_HOST": "db.internal.example",
    "DB_PORT": "5432",
    "DB_NAME": "app",
    "DB_USER": "owner",
    "DB_PASSWORD": PASSWORD,
    "DB_SSLMODE": "require",
    "MIGRATE_COMMAND": "true",
}


def run(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(RUNNER)],
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **env},
        cwd=str(REPO),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )


def forked(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """`run(env)` from the fork server (runner_harness.ForkServer): the same entry point, exit
    code and streams, without an interpreter start per case."""
    proc = ForkServer.shared().run({"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **env})
    return subprocess.CompletedProcess(proc.args, proc.returncode, proc.stdout.decode(), proc.stderr.decode())


def without(name: str) -> dict[str, str]:
    return {k: v for k, v in GOOD.items() if k != name}


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        pytest.param(without("DB_HOST"), "DB_HOST", id="missing-host"),
        pytest.param(without("DB_PASSWORD"), "DB_PASSWORD", id="missing-password"),
        pytest.param(GOOD | {"DB_NAME": ""}, "DB_NAME", id="empty-name"),
        pytest.param(GOOD | {"DB_PORT": "fivefourthreetwo"}, "DB_PORT", id="port-not-numeric"),
        pytest.param(GOOD | {"DB_PORT": "70000"}, "DB_PORT", id="port-out-of-range"),
        pytest.param(GOOD | {"DB_SSLMODE": "required"}, "DB_SSLMODE", id="bad-sslmode"),
        pytest.param(GOOD | {"MIGRATE_LOCK_KEY": "abc"}, "MIGRATE_LOCK_KEY", id="key-not-int"),
        pytest.param(GOOD | {"MIGRATE_LOCK_KEY": str(2**63)}, "MIGRATE_LOCK_KEY", id="key-too-big"),
        pytest.param(GOOD | {"MIGRATE_LOCK_KEY": "72707369"}, "MIGRATE_LOCK_KEY", id="key-is-prismas"),
        pytest.param(
            GOOD | {"MIGRATE_LOCK_WAIT_SECONDS": "-1"},
            "MIGRATE_LOCK_WAIT_SECONDS",
            id="negative-wait",
        ),
        pytest.param(GOOD | {"MIGRATE_COMMAND": "npx 'prisma migrate"}, "MIGRATE_COMMAND", id="bad-quote"),
        pytest.param(
            {"DATABASE_URL": f"mysql://u:{PASSWORD}@h/db", "MIGRATE_COMMAND": "true"},
            "DATABASE_URL",
            id="url-scheme",
        ),
        pytest.param(
            {"DATABASE_URL": "postgresql://u:pw@h:notaport/db", "MIGRATE_COMMAND": "true"},
            "DATABASE_URL",
            id="url-port",
        ),
        pytest.param(
            {"DATABASE_URL": "postgresql://u:pw@h/db?sslmode=on", "MIGRATE_COMMAND": "true"},
            "DATABASE_URL sslmode",
            id="url-sslmode",
        ),
        pytest.param(GOOD | {"MIGRATE_COMMAND": ""}, "MIGRATE_COMMAND", id="empty-command"),
        pytest.param(GOOD | {"MIGRATE_COMMAND": "   "}, "MIGRATE_COMMAND", id="blank-command"),
        pytest.param(without("DB_SSLMODE"), "DB_SSLROOTCERT", id="verify-full-by-default-needs-a-ca"),
        pytest.param(GOOD | {"DB_SSLMODE": "verify-ca"}, "DB_SSLROOTCERT", id="verify-ca-needs-a-ca"),
        pytest.param(
            GOOD | {"DB_SSLMODE": "verify-full", "DB_SSLROOTCERT": "/nonexistent/ca.pem"},
            "DB_SSLROOTCERT",
            id="ca-file-missing",
        ),
        pytest.param(GOOD | {"MIGRATE_URL_TLS": "jdbc"}, "MIGRATE_URL_TLS", id="bad-url-style"),
        pytest.param(GOOD | {"DB_SSLMODE": "allow"}, "DB_SSLMODE allow", id="allow-has-no-prisma-spelling"),
        pytest.param(GOOD | {"MIGRATE_CONNECT_WAIT_SECONDS": "soon"}, "MIGRATE_CONNECT_WAIT_SECONDS", id="connect-wait"),
        pytest.param(GOOD | {"MIGRATE_DEADLINE_SECONDS": "-5"}, "MIGRATE_DEADLINE_SECONDS", id="deadline"),
        pytest.param(GOOD | {"MIGRATE_HEARTBEAT_SECONDS": "0"}, "MIGRATE_HEARTBEAT_SECONDS", id="heartbeat-zero"),
        pytest.param(
            GOOD | {"MIGRATE_HEARTBEAT_TIMEOUT_SECONDS": "30"},
            "MIGRATE_HEARTBEAT_TIMEOUT_SECONDS",
            id="heartbeat-window-near-the-server-keepalive",
        ),
    ],
)
def test_bad_configuration_exits_80_with_one_line(env: dict[str, str], variable: str) -> None:
    proc = forked(env)
    assert proc.returncode == EXIT_CONFIG, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert variable in lines[0]
    assert "Traceback" not in proc.stderr
    assert PASSWORD not in proc.stderr + proc.stdout
    assert proc.stdout == ""  # it stopped before connecting


def test_command_not_found_exits_87_before_connecting() -> None:
    proc = forked(GOOD | {"MIGRATE_COMMAND": "no-such-migrate-tool deploy"})
    assert proc.returncode == 87
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()]
    assert "command not found: no-such-migrate-tool" in proc.stderr
    assert proc.stdout == ""


def test_command_not_executable_exits_86(tmp_path: Path) -> None:
    script = tmp_path / "migrate.sh"
    script.write_text("#!/bin/sh\nexit 0\n")
    script.chmod(0o644)
    proc = forked(GOOD | {"MIGRATE_COMMAND": str(script)})
    if os.geteuid() == 0 and os.access(script, os.X_OK):
        pytest.skip("root can execute anything here")
    assert proc.returncode == 86
    assert "not executable" in proc.stderr


# --------------------------------------------------------------------------- in-process units


def test_url_from_db_parts_round_trips_every_special_character(runner_module: ModuleType) -> None:
    cfg = runner_module.load_config(GOOD | {"DB_NAME": "my db/1"})
    parts = urlsplit(cfg.child_url)
    assert parts.scheme == "postgresql"
    assert parts.hostname == "db.internal.example" and parts.port == 5432
    assert unquote(parts.username or "") == "owner"
    assert unquote(parts.password or "") == PASSWORD
    assert unquote(parts.path[1:]) == "my db/1"
    assert parse_qs(parts.query) == {"sslmode": ["require"]}
    assert PASSWORD not in repr(cfg)


def test_ipv6_host_is_bracketed(runner_module: ModuleType) -> None:
    cfg = runner_module.load_config(GOOD | {"DB_HOST": "fd00::5", "DB_SSLMODE": "prefer"})
    parts = urlsplit(cfg.child_url)
    assert parts.hostname == "fd00::5"
    assert parse_qs(parts.query) == {"sslmode": ["prefer"]}


def test_database_url_parsed_for_the_lock_connection(runner_module: ModuleType) -> None:
    url = "postgresql://own%40er:p%40ss%3Aw%2Frd@db:6543/app?schema=public&connection_limit=1"
    cfg = runner_module.load_config({"DATABASE_URL": url, "DB_SSLMODE": "prefer"})
    assert (cfg.host, cfg.port, cfg.dbname, cfg.user, cfg.password) == (
        "db",
        6543,
        "app",
        "own@er",
        "p@ss:w/rd",
    )
    assert cfg.sslmode == "prefer"
    # Prisma's own parameters are kept; only sslmode is added.
    assert cfg.child_url == url + "&sslmode=prefer"
    # DB_* are optional with DATABASE_URL and ignored if present.
    assert runner_module.load_config({"DATABASE_URL": url, "DB_HOST": "other", "DB_SSLMODE": "prefer"}).host == "db"


def test_defaults(runner_module: ModuleType) -> None:
    cfg = runner_module.load_config(without("MIGRATE_COMMAND"))
    assert cfg.command == ["npx", "prisma", "migrate", "deploy"]
    assert cfg.lock_key == runner_module.DEFAULT_LOCK_KEY != 72707369
    assert cfg.lock_key == int.from_bytes(b"migrate!", "big")
    assert cfg.lock_wait == 900
    assert cfg.sslmode == "require"  # GOOD sets it; unset, the default is verify-full (below)
    assert (cfg.connect_wait, cfg.deadline, cfg.heartbeat_every, cfg.heartbeat_timeout) == (120, None, 1, 3)


def test_child_environment_drops_db_password(runner_module: ModuleType) -> None:
    env = GOOD | {"KEEP": "1"}
    child = runner_module.child_environment(env, runner_module.load_config(env))
    assert "DB_PASSWORD" not in child
    assert child["KEEP"] == "1"
    assert child["DATABASE_URL"].startswith("postgresql://owner:")


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        (
            "http://127.0.0.1:9/v4/0123456789abcdef0123456789abcdef-3779599274",
            "migrate-runner 0123456789abcdef0123456789abcdef",
        ),
        ("http://127.0.0.1:9/v4/" + "a" * 64, "migrate-runner " + "a" * 32),
    ],
)
def test_application_name_from_ecs_metadata_uri(runner_module: ModuleType, uri: str, expected: str) -> None:
    assert runner_module.application_name({"ECS_CONTAINER_METADATA_URI_V4": uri}) == expected


def test_application_name_without_ecs(runner_module: ModuleType) -> None:
    name = runner_module.application_name({})
    assert name.startswith("migrate-runner ") and f":{os.getpid()}" in name


# --------------------------------------------------------------------------- TLS settings


@pytest.mark.parametrize(
    ("url_mode", "env_mode"),
    [("disable", "require"), ("require", "verify-full"), ("verify-full", "prefer")],
)
def test_database_url_sslmode_contradicting_db_sslmode_is_a_config_error(url_mode: str, env_mode: str) -> None:
    env = {
        "DATABASE_URL": f"postgresql://u:{quote(PASSWORD, safe='')}@h/db?sslmode={url_mode}",
        "DB_SSLMODE": env_mode,
        "MIGRATE_COMMAND": "true",
    }
    proc = forked(env | {"MIGRATE_URL_TLS": "libpq"})
    assert proc.returncode == EXIT_CONFIG
    (line,) = proc.stderr.strip().splitlines()
    assert f"DATABASE_URL asks for sslmode {url_mode}" in line and f"DB_SSLMODE is {env_mode}" in line
    assert PASSWORD not in proc.stderr + proc.stdout and quote(PASSWORD, safe="") not in proc.stderr
    assert proc.stdout == ""


def test_verify_full_in_prisma_spelling(runner_module: ModuleType, tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("not parsed by the runner itself")
    cfg = runner_module.load_config(GOOD | {"DB_SSLMODE": "verify-full", "DB_SSLROOTCERT": str(ca)})
    assert (cfg.sslmode, cfg.sslrootcert) == ("verify-full", str(ca))
    # Prisma's engine treats an sslmode it does not know as "prefer": verification is spelled its way.
    assert parse_qs(urlsplit(cfg.child_url).query) == {"sslmode": ["require"], "sslaccept": ["strict"], "sslcert": [str(ca)]}

    libpq = runner_module.load_config(GOOD | {"DB_SSLMODE": "verify-full", "DB_SSLROOTCERT": str(ca), "MIGRATE_URL_TLS": "libpq"})
    assert parse_qs(urlsplit(libpq.child_url).query) == {"sslmode": ["verify-full"], "sslrootcert": [str(ca)]}


def test_database_url_in_prisma_spelling_counts_as_verify_full(runner_module: ModuleType, tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("x")
    url = f"postgresql://u:pw@db/app?sslmode=require&sslaccept=strict&sslcert={ca}"
    cfg = runner_module.load_config({"DATABASE_URL": url, "DB_SSLMODE": "verify-full", "MIGRATE_COMMAND": "true"})
    assert (cfg.sslmode, cfg.sslrootcert, cfg.child_url) == ("verify-full", str(ca), url)
    with pytest.raises(runner_module.ConfigError, match="DB_SSLMODE is require"):
        runner_module.load_config({"DATABASE_URL": url, "DB_SSLMODE": "require", "MIGRATE_COMMAND": "true"})


def test_unset_command_means_the_default_but_empty_does_not(runner_module: ModuleType) -> None:
    assert runner_module.load_config(without("MIGRATE_COMMAND")).command == ["npx", "prisma", "migrate", "deploy"]
    with pytest.raises(runner_module.ConfigError, match="MIGRATE_COMMAND is set but empty"):
        runner_module.load_config(GOOD | {"MIGRATE_COMMAND": ""})


@pytest.mark.parametrize(
    ("message", "sqlstate", "kind"),
    [
        ('connection to server at "db" failed: Connection refused', None, "transient"),
        ('connection to server at "db" failed: timeout expired', None, "transient"),
        ('could not translate host name "db" to address: Name or service not known', None, "transient"),
        ("FATAL:  the database system is starting up", "57P03", "transient"),
        ("FATAL:  the database system is shutting down", "57P03", "transient"),
        ("server closed the connection unexpectedly", None, "transient"),
        ('FATAL:  password authentication failed for user "owner"', "28P01", "auth"),
        ('FATAL:  role "owner" does not exist', "28000", "auth"),
        ('FATAL:  no pg_hba.conf entry for host "10.0.0.1"', "28000", "auth"),
        ('FATAL:  database "app" does not exist', "3D000", "config"),
        ("SSL error: certificate verify failed", None, "config"),
        ('server certificate for "db" does not match host name "other"', None, "config"),
        ('FATAL:  unrecognized configuration parameter "tcp_user_timeout"', "42704", "config"),
    ],
)
def test_connect_errors_are_classified(runner_module: ModuleType, message: str, sqlstate: str | None, kind: str) -> None:
    class FakeError(runner_module.psycopg.OperationalError):  # type: ignore[name-defined,misc]
        pass

    exc = FakeError(message)
    exc.__dict__["sqlstate"] = sqlstate
    assert runner_module.classify_connect_error(exc) == kind


def test_runner_exit_codes_are_the_ones_the_release_names(runner_module: ModuleType) -> None:
    """The state machine explains each runner exit code in its cause (release/contract.py); the
    runner, copied alone into the image, keeps its own constants: they must agree."""
    runner_codes = {value for name, value in vars(runner_module).items() if name.startswith("EXIT_")}
    assert runner_codes == set(contract.RUNNER_EXIT_MEANINGS) - {137}
    assert runner_module.EXIT_DEADLINE == contract.RUNNER_EXIT_DEADLINE
    assert runner_module.EXIT_LOCK_LOST == 83
    assert all(code in range(80, 90) for code in runner_codes)


def test_the_fork_server_answers_as_a_new_runner_process_does() -> None:
    # The refusal matrices above run in forks of one server (runner_harness.ForkServer): the same
    # code, streams and exit code as `python runner.py`, each line but its timestamp.
    def stripped(text: str) -> list[str]:
        return [line.split(" ", 1)[1] for line in text.splitlines()]

    for env in (GOOD | {"DB_PORT": "70000"}, GOOD | {"MIGRATE_COMMAND": "no-such-migrate-tool deploy"}, without("DB_HOST")):
        new, forked_ = run(env), forked(env)
        assert (forked_.returncode, stripped(forked_.stdout), stripped(forked_.stderr)) == (
            new.returncode,
            stripped(new.stdout),
            stripped(new.stderr),
        )
        assert new.returncode in (80, 87) and new.stderr


def comparable(text: str) -> list[str]:
    """Lines without what differs between two runs anyway: log timestamps, durations, pids."""
    timestamp = re.compile(r"^\d{4}-\d\d-\d\dT[\d:.]+Z ")
    duration = re.compile(r"\b\d+\.\d+ s\b")
    pid = re.compile(r"(pid |migrate-runner [^:' ]+:)\d+")
    return [pid.sub(r"\g<1>#", duration.sub("#.## s", timestamp.sub("", line))) for line in text.splitlines()]


def test_a_forked_live_runner_answers_as_a_new_runner_process_does(base_env: dict[str, str], start_runner: Callable[..., Runner]) -> None:
    # The live runners (start_runner/run_runner) are forks of the fork server too: a run that takes
    # the lock and runs a command, and one stopped by SIGTERM, end with the same code and lines as
    # `python runner.py` started by subprocess.Popen. Without LC_ALL (as in the refusal tests) a new
    # interpreter adds LC_CTYPE to its environment, which the command inherits and `env` prints.
    env = {k: v for k, v in base_env.items() if k != "LC_ALL"}
    command = shlex.join(["sh", "-c", "echo to-stdout; echo to-stderr >&2; env | LC_ALL=C sort; exit 3"])
    # The sleep runs in the background: sh prints "Terminated" for a foreground child killed by the
    # group's SIGTERM, which the two runs would show or not as the signal met a sleep or not.
    trapping = shlex.join(["sh", "-c", 'trap "echo command-got-TERM; exit 5" TERM; echo ready; while :; do sleep 1 & wait; done'])

    def ran(new_process: bool) -> Result:
        return start_runner(env | {"MIGRATE_COMMAND": command}, new_process=new_process).wait()

    def terminated(new_process: bool) -> Result:
        runner = start_runner(env | {"MIGRATE_COMMAND": trapping}, new_process=new_process)
        runner.wait_for_output("ready", whole_line=True)
        runner.signal(signal.SIGTERM)
        return runner.wait()

    for run, code, line in ((ran, 3, "LC_CTYPE=C.UTF-8"), (terminated, 143, "command-got-TERM")):
        new, forked_ = run(True), run(False)
        assert new.code == code and line in new.stdout.splitlines(), new.stdout + new.stderr
        assert (forked_.code, comparable(forked_.stdout), forked_.stderr) == (new.code, comparable(new.stdout), new.stderr)
