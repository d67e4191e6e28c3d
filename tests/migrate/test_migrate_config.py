"""The runner's configuration: exit code 2 with one line naming the variable; URL building."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from urllib.parse import parse_qs, unquote, urlsplit

import pytest

from tests.migrate.runner_harness import PASSWORD, REPO, RUNNER

GOOD = {
    "DB_HOST": "db.internal.example",
    "DB_PORT": "5432",
    "DB_NAME": "app",
    "DB_USER": "owner",
    "DB_PASSWORD": PASSWORD,
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
    ],
)
def test_bad_configuration_exits_2_with_one_line(env: dict[str, str], variable: str) -> None:
    proc = run(env)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert variable in lines[0]
    assert "Traceback" not in proc.stderr
    assert PASSWORD not in proc.stderr + proc.stdout
    assert proc.stdout == ""  # it stopped before connecting


def test_command_not_found_exits_127_before_connecting() -> None:
    proc = run(GOOD | {"MIGRATE_COMMAND": "no-such-migrate-tool deploy"})
    assert proc.returncode == 127
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()]
    assert "command not found: no-such-migrate-tool" in proc.stderr
    assert proc.stdout == ""


def test_command_not_executable_exits_126(tmp_path: Path) -> None:
    script = tmp_path / "migrate.sh"
    script.write_text("#!/bin/sh\nexit 0\n")
    script.chmod(0o644)
    proc = run(GOOD | {"MIGRATE_COMMAND": str(script)})
    if os.geteuid() == 0 and os.access(script, os.X_OK):
        pytest.skip("root can execute anything here")
    assert proc.returncode == 126
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
    cfg = runner_module.load_config(GOOD | {"DB_HOST": "fd00::5", "DB_SSLMODE": "verify-full"})
    parts = urlsplit(cfg.child_url)
    assert parts.hostname == "fd00::5"
    assert parse_qs(parts.query) == {"sslmode": ["verify-full"]}


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
    assert runner_module.load_config({"DATABASE_URL": url, "DB_HOST": "other"}).host == "db"


def test_defaults(runner_module: ModuleType) -> None:
    cfg = runner_module.load_config(without("MIGRATE_COMMAND"))
    assert cfg.command == ["npx", "prisma", "migrate", "deploy"]
    assert cfg.lock_key == runner_module.DEFAULT_LOCK_KEY != 72707369
    assert cfg.lock_key == int.from_bytes(b"migrate!", "big")
    assert cfg.lock_wait == 900
    assert cfg.sslmode == "require"


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
