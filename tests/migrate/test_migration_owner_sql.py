"""docs/migrations.md's migration-owner SQL, run as written against the real test server.

The "master user" here is what RDS's master user is in the respects that matter: it owns the
database, may create roles and databases, and is not a superuser.
"""

from __future__ import annotations

import re
import shlex
import subprocess
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote

import psycopg
import pytest
from psycopg import errors as pg_errors

from testbed import pgserver
from tests.migrate.runner_harness import FAKE_MIGRATE, REPO, Result

DOC = REPO / "docs" / "migrations.md"
MASTER, MASTER_PW = "rds_master", "master:pw"
APP, APP_PW = "cashsouk_app", "app:pw"
OWNER, OWNER_PW = "cashsouk_migrator", "owner:p@ss w'rd"  # the quote checks psql's :'var' quoting
DB = "cashsouk"


def owner_sql() -> str:
    text = DOC.read_text()
    section = text[text.index("## The migration owner") :]
    match = re.search(r"```sql\n(.*?)```", section, re.S)
    assert match, "no sql block under 'The migration owner'"
    return match.group(1)


def url(pg: pgserver.PgServer, user: str, password: str) -> str:
    return f"postgresql://{user}:{quote(password, safe='')}@{pg.host}:{pg.port}/{DB}?sslmode={'require' if pg.tls else 'disable'}"


# Once per worker (the server is per worker): with --dist worksteal a module's tests can run apart
# in one worker, and a module-scoped fixture would then create the same roles a second time.
@pytest.fixture(scope="session")
def prepared(pg: pgserver.PgServer, tmp_path_factory: pytest.TempPathFactory) -> pgserver.PgServer:
    """A database the master user built (as migrations did before), then the doc's SQL run on it."""
    with pg.admin() as admin:
        admin.execute(f"CREATE ROLE {MASTER} LOGIN CREATEROLE CREATEDB PASSWORD '{MASTER_PW}'")
        admin.execute(f"CREATE ROLE {APP} LOGIN PASSWORD '{APP_PW}'")
        admin.execute(f"CREATE DATABASE {DB} OWNER {MASTER}")
    with psycopg.connect(url(pg, MASTER, MASTER_PW), autocommit=True) as master:
        master.execute("""CREATE TYPE "Role" AS ENUM ('investor', 'issuer')""")
        master.execute("""CREATE TABLE accounts (id serial PRIMARY KEY, role "Role" NOT NULL)""")
        master.execute("CREATE TABLE _prisma_migrations (id text PRIMARY KEY)")
        master.execute("CREATE TABLE ledger (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY)")
        master.execute("CREATE SEQUENCE invoice_numbers")
        master.execute("CREATE VIEW account_ids AS SELECT id FROM accounts")
        master.execute("CREATE FUNCTION one() RETURNS int LANGUAGE sql AS 'SELECT 1'")
    script = tmp_path_factory.mktemp("owner") / "owner.sql"
    script.write_text(owner_sql())
    proc = subprocess.run(
        ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-v", f"owner_password={OWNER_PW}", url(pg, MASTER, MASTER_PW), "-f", str(script)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return pg


def test_everything_in_the_schema_belongs_to_the_owner(prepared: pgserver.PgServer) -> None:
    with psycopg.connect(url(prepared, MASTER, MASTER_PW)) as conn:
        owners = conn.execute(
            """
            SELECT c.relname, pg_get_userbyid(c.relowner) FROM pg_class c
              JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE n.nspname = 'public' AND c.relkind IN ('r', 'v', 'S', 'i')
            UNION ALL SELECT t.typname, pg_get_userbyid(t.typowner) FROM pg_type t
              JOIN pg_namespace n ON n.oid = t.typnamespace WHERE n.nspname = 'public' AND t.typtype = 'e'
            UNION ALL SELECT p.proname, pg_get_userbyid(p.proowner) FROM pg_proc p
              JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = 'public'
            UNION ALL SELECT 'schema public', pg_get_userbyid(nspowner) FROM pg_namespace WHERE nspname = 'public'
            """
        ).fetchall()
        role = conn.execute("SELECT rolsuper, rolcreaterole, rolcreatedb FROM pg_roles WHERE rolname = %s", (OWNER,)).fetchone()
    names = {name for name, _ in owners}
    assert {"accounts", "accounts_id_seq", "ledger", "ledger_id_seq", "invoice_numbers", "account_ids", "Role", "one"} <= names
    assert {owner for _, owner in owners} == {OWNER}, owners
    assert role == (False, False, False)


def test_the_owner_changes_structure(prepared: pgserver.PgServer) -> None:
    with psycopg.connect(url(prepared, OWNER, OWNER_PW), autocommit=True) as owner:
        owner.execute("ALTER TABLE accounts ADD COLUMN email text")
        owner.execute("""ALTER TYPE "Role" ADD VALUE 'admin'""")
        owner.execute("CREATE TABLE IF NOT EXISTS invoices (id serial PRIMARY KEY, account_id int REFERENCES accounts (id))")
        owner.execute("CREATE OR REPLACE VIEW account_ids AS SELECT id, email FROM accounts")


def test_the_app_user_reads_and_writes_rows_but_not_structure(prepared: pgserver.PgServer) -> None:
    ensure_invoices(prepared)
    with psycopg.connect(url(prepared, APP, APP_PW), autocommit=True) as app:
        app.execute("""INSERT INTO accounts (role) VALUES ('investor')""")  # the serial's sequence too
        app.execute("INSERT INTO ledger DEFAULT VALUES")
        app.execute("SELECT nextval('invoice_numbers')")
        app.execute("INSERT INTO invoices (account_id) SELECT min(id) FROM accounts")  # created after the grants
        assert app.execute("SELECT count(*) FROM account_ids").fetchone() == (1,)
        for statement in (
            "ALTER TABLE accounts ADD COLUMN nope int",
            "DROP TABLE invoices",
            "CREATE TABLE mine (id int)",
            "TRUNCATE accounts",
        ):
            with pytest.raises(pg_errors.InsufficientPrivilege):
                app.execute(statement)


def ensure_invoices(pg: pgserver.PgServer) -> None:
    """A table the owner creates after the grants (whichever test runs first)."""
    with psycopg.connect(url(pg, OWNER, OWNER_PW), autocommit=True) as owner:
        owner.execute("CREATE TABLE IF NOT EXISTS invoices (id serial PRIMARY KEY, account_id int REFERENCES accounts (id))")


def test_a_runner_signed_in_as_the_owner_migrates(
    prepared: pgserver.PgServer, base_env: dict[str, str], run_runner: Callable[..., Result], tmp_path: Path
) -> None:
    migrations = tmp_path / "migrations"
    migrations.mkdir()
    (migrations / "001_payouts.sql").write_text("CREATE TABLE payouts (id serial PRIMARY KEY, amount numeric NOT NULL);\n")
    env = base_env | {
        "DB_NAME": DB,
        "DB_USER": OWNER,
        "DB_PASSWORD": OWNER_PW,
        "MIGRATE_COMMAND": shlex.join(["sh", str(FAKE_MIGRATE), str(migrations)]),
    }
    res = run_runner(env)
    assert res.code == 0, res.stdout + res.stderr
    assert "applied: 001_payouts" in res.stdout.splitlines()
    with psycopg.connect(url(prepared, APP, APP_PW), autocommit=True) as app:
        app.execute("INSERT INTO payouts (amount) VALUES (1)")  # default privileges reach it
