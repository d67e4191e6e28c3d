"""`lint-migrations`: squawk, for real, on Prisma migrations a change adds (a git repository per test)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from release.cli import main
from release.commands.lint_migrations import DESTRUCTIVE_RULES
from release.errors import ExitCode
from tests.cli.fakes import ENV

SAMPLES = Path(__file__).parent / "migrations_lint"
MIGRATIONS = "apps/api/prisma/migrations"  # config/example.yaml's review.migrations_path


def _git(repo: Path, *args: str) -> None:
    """git in `repo`, committing as a throwaway identity."""
    identity = ["-c", "user.name=t", "-c", "user.email=t@example.invalid"]
    subprocess.run(["git", "-C", str(repo), *identity, *args], check=True, capture_output=True, timeout=60)


@pytest.fixture(scope="module")
def base_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An app repository with one migration already on its base branch (`base`): made once, by git."""
    root = tmp_path_factory.mktemp("base") / "app"
    (root / MIGRATIONS / "20261101000000_init").mkdir(parents=True)
    (root / MIGRATIONS / "20261101000000_init" / "migration.sql").write_text('CREATE TABLE "Invoice" ("id" TEXT PRIMARY KEY);\n')
    _git(root, "init", "-q", "-b", "main")
    _git(root, "add", ".")
    _git(root, "commit", "-q", "-m", "base")
    _git(root, "tag", "base")
    return root


@pytest.fixture
def repo(base_repo: Path, tmp_path: Path) -> Path:
    """Each test's own copy of the base repository (a git repository is a folder: its copy is the
    same repository, four git processes fewer per test)."""
    return Path(shutil.copytree(base_repo, tmp_path / "app", symlinks=True))


def _add(repo: Path, *samples: str, folder: str = MIGRATIONS) -> list[str]:
    added = []
    for i, sample in enumerate(samples):
        path = repo / folder / f"2026112{i}000000_{sample}" / "migration.sql"
        path.parent.mkdir(parents=True)
        path.write_text((SAMPLES / f"{sample}.sql").read_text())
        added.append(str(path.relative_to(repo)))
    _git(repo, "add", ".")
    _git(repo, "commit", "-q", "-m", "change")
    return added


def _lint(config_dir: Path, repo: Path, fmt: str = "markdown") -> int:
    return main(
        ["lint-migrations", "--env", ENV, "--config-dir", str(config_dir), "--base", "base", "--repo-root", str(repo), "--format", fmt]
    )


@pytest.mark.parametrize(
    ("sample", "rule"),
    [
        ("index_without_concurrently", "require-concurrent-index-creation"),
        ("not_null_without_default", "adding-required-field"),
        ("column_type_change", "changing-column-type"),
        ("dropped_column", "ban-drop-column"),
    ],
)
def test_a_blocking_migration_is_found(config_dir: Path, repo: Path, capsys: pytest.CaptureFixture[str], sample: str, rule: str) -> None:
    (added,) = _add(repo, sample)
    assert _lint(config_dir, repo) == ExitCode.FINDINGS
    out = capsys.readouterr().out
    assert out.startswith("### Migration lint (squawk)")
    row = next(line for line in out.splitlines() if f"`{rule}`" in line)
    assert row.startswith(f"| `{added}` | 2 |")  # the statement's line (after Prisma's comment)
    assert "prefer-robust-stmts" not in out.split("Rules Prisma's own SQL breaks")[0]  # left out for Prisma
    assert "Rules left out by the config: prefer-robust-stmts." in out
    # Every finding that stays says what to do on the Prisma side.
    assert row.count(" | ") == 4 and not row.endswith("|  |")


def test_a_clean_migration_has_no_findings(config_dir: Path, repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (added,) = _add(repo, "clean")
    assert _lint(config_dir, repo) == ExitCode.OK
    assert f"No findings in 1 added migration(s): `{added}`." in capsys.readouterr().out


def test_only_added_migrations_under_the_configured_path_are_linted(
    config_dir: Path, repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _add(repo, "dropped_column", folder="other/prisma/migrations")  # another path
    (repo / MIGRATIONS / "20261101000000_init" / "migration.sql").write_text('DROP TABLE "Invoice";\n')  # an edit, not an addition
    _git(repo, "commit", "-q", "-am", "edit")
    assert _lint(config_dir, repo) == ExitCode.OK
    assert "No migration added." in capsys.readouterr().out


def test_rules_and_path_come_from_the_config(config_dir: Path, repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    settings = yaml.safe_load((config_dir / f"{ENV}.yaml").read_text())
    settings["review"] = {"migrations_path": "db/migrations", "squawk_excluded_rules": ["ban-drop-column", "prefer-robust-stmts"]}
    (config_dir / f"{ENV}.yaml").write_text(yaml.safe_dump(settings))
    _add(repo, "dropped_column", "column_type_change", folder="db/migrations")
    assert _lint(config_dir, repo, "text") == ExitCode.FINDINGS
    out = capsys.readouterr().out
    findings, advice = out.split("Snapshot advised: ")
    assert "ban-drop-column" not in findings and "changing-column-type" in findings
    assert "    fix (Prisma): expand and contract" in out
    # Left out of the review, still a dropped column: the one line that advises a snapshot names it.
    assert advice.startswith("yes, data lost or rewritten by db/migrations/20261120000000_dropped_column/migration.sql:2 ban-drop-column,")
    assert out.strip().endswith("1 finding(s) in 2 added migration(s) under db/migrations")


@pytest.mark.parametrize("sample", ["prisma_new_model", "prisma_new_column"])
def test_prismas_own_sql_for_a_new_model_or_column_passes(
    config_dir: Path, repo: Path, capsys: pytest.CaptureFixture[str], sample: str
) -> None:
    """Prisma's generated SQL (SERIAL, integer, timestamp(3), an index and a foreign key on the new
    table, a nullable column) locks nothing a running app waits on: no finding."""
    _add(repo, sample)
    assert _lint(config_dir, repo, "json") == ExitCode.OK, capsys.readouterr().out
    assert json.loads(capsys.readouterr().out)["findings"] == []


def test_an_index_on_an_existing_table_stays_flagged_with_what_prisma_can_do(
    config_dir: Path, repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _add(repo, "prisma_new_index")
    assert _lint(config_dir, repo, "json") == ExitCode.FINDINGS
    (finding,) = json.loads(capsys.readouterr().out)["findings"]
    assert finding["rule"] == "require-concurrent-index-creation"
    assert "P3018" in finding["fix"] and "CREATE INDEX CONCURRENTLY IF NOT EXISTS" in finding["fix"]


def test_a_bad_base_is_one_line(config_dir: Path, repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["lint-migrations", "--env", ENV, "--config-dir", str(config_dir), "--base", "nope", "--repo-root", str(repo)])
    assert code == ExitCode.USAGE
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("release: git diff against nope failed")


# ---- destructive statements: the snapshot CI takes before migrating ---------------------------------


def test_every_destructive_rule_is_a_rule_squawk_reports(config_dir: Path, repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The declared names are squawk's own: one statement per rule, each found on its line."""
    (added,) = _add(repo, "every_destructive_statement")
    assert _lint(config_dir, repo, "json") == ExitCode.FINDINGS
    document = json.loads(capsys.readouterr().out)
    assert document["snapshotAdvised"] is True
    assert sorted((d["line"], d["rule"]) for d in document["destructive"]) == [
        (2, "ban-drop-column"),
        (3, "ban-drop-table"),
        (4, "ban-drop-schema"),
        (5, "ban-drop-database"),
        (6, "ban-truncate-cascade"),
        (7, "changing-column-type"),
        (8, "renaming-column"),
        (9, "renaming-table"),
    ]
    assert {d["file"] for d in document["destructive"]} == {added}
    assert set(document["destructiveRules"]) == set(DESTRUCTIVE_RULES) == {d["rule"] for d in document["destructive"]}


@pytest.mark.parametrize("sample", ["clean", "prisma_new_model", "prisma_new_index", "not_null_without_default"])
def test_a_migration_that_keeps_its_data_advises_no_snapshot(
    config_dir: Path, repo: Path, capsys: pytest.CaptureFixture[str], sample: str
) -> None:
    _add(repo, sample)
    _lint(config_dir, repo, "json")
    document = json.loads(capsys.readouterr().out)
    assert document["destructive"] == [] and document["snapshotAdvised"] is False


def test_no_migration_added_advises_no_snapshot(config_dir: Path, repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _lint(config_dir, repo, "text") == ExitCode.OK
    assert capsys.readouterr().out.splitlines()[-2:] == [
        "Snapshot advised: no (no statement that loses or rewrites data).",
        "0 finding(s) in 0 added migration(s) under apps/api/prisma/migrations",
    ]


@pytest.mark.parametrize("waiver", ["config", "comment"])
def test_a_destructive_statement_the_review_waives_still_advises_a_snapshot(
    config_dir: Path, repo: Path, capsys: pytest.CaptureFixture[str], waiver: str
) -> None:
    """Left out of the review (the environment's excluded rules, a `-- squawk-ignore` comment) is
    not safe to skip the snapshot: the table is still dropped."""
    if waiver == "config":
        settings = yaml.safe_load((config_dir / f"{ENV}.yaml").read_text())
        settings["review"] = {"migrations_path": MIGRATIONS, "squawk_excluded_rules": ["ban-drop-table", "prefer-robust-stmts"]}
        (config_dir / f"{ENV}.yaml").write_text(yaml.safe_dump(settings))
    (added,) = _add(repo, "ignored_drop_table" if waiver == "comment" else "every_destructive_statement")
    _lint(config_dir, repo, "json")
    document = json.loads(capsys.readouterr().out)
    assert "ban-drop-table" not in {f["rule"] for f in document["findings"]}  # the review honours the waiver
    assert {"file": added, "line": 3, "rule": "ban-drop-table"} in document["destructive"]
    assert document["snapshotAdvised"] is True


def test_the_review_comment_says_a_snapshot_is_advised_in_one_line(
    config_dir: Path, repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (added,) = _add(repo, "ignored_drop_table")
    assert _lint(config_dir, repo) == ExitCode.OK  # waived: no finding, so the review passes
    out = capsys.readouterr().out
    assert f"No findings in 1 added migration(s): `{added}`." in out
    (line,) = [line for line in out.splitlines() if "Snapshot advised" in line]
    assert (
        line == f"**Snapshot advised: yes, data lost or rewritten by {added}:3 ban-drop-table (CI's release takes one before migrating).**"
    )
