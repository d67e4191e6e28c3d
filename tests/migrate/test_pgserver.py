"""testbed/pgserver.py: every server starts from a fresh copy of initdb's output, and the copied
folder itself never runs (what one test's server did cannot reach the next server)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from testbed import pgserver


def cluster_state(bin_dir: Path, data: Path) -> str:
    out = subprocess.run([str(bin_dir / "pg_controldata"), str(data)], capture_output=True, text=True, check=True, timeout=30).stdout
    (line,) = [line for line in out.splitlines() if line.startswith("Database cluster state:")]
    return line.split(":", 1)[1].strip()


def test_servers_run_on_a_copy_and_the_template_never_runs(pg: pgserver.PgServer) -> None:
    template = pgserver._template(pg.bin_dir, pg.account)
    assert not pg.data_dir.resolve().is_relative_to(template.parent.resolve())
    assert cluster_state(pg.bin_dir, pg.data_dir) == "in production"
    # As initdb left it: shut down cleanly, no postmaster, only its three databases' folders.
    assert cluster_state(pg.bin_dir, template) == "shut down"
    assert not (template / "postmaster.pid").exists()
    with pg.admin() as admin:
        names = {row[0] for row in admin.execute("SELECT datname FROM pg_database").fetchall()}
    assert {"template0", "template1", "postgres", "app"} <= names
    assert len(list((template / "base").iterdir())) == 3
