"""A broken environment file as the CLI reports it: the YAML line of each problem, duplicate keys
and undecodable files as one line each, a check across settings named after its setting."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from release.cli import main
from release.errors import ExitCode
from tests.cli.fakes import ENV

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = (REPO / "config" / "example.yaml").read_text()


def _errors(config_dir: Path, capsys: pytest.CaptureFixture[str]) -> list[str]:
    assert main(["env", "--env", ENV, "--config-dir", str(config_dir)]) == ExitCode.USAGE
    err = capsys.readouterr().err
    return [line.removeprefix("release: ") for line in err.strip().splitlines()]


def _line(text: str, needle: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), start=1) if needle in line)


def test_a_schema_error_names_the_yaml_line(config_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = EXAMPLE.replace("    container: Main\n    uses_schema: true", "    container: Main\n    uses_schema: maybe", 1)
    (config_dir / f"{ENV}.yaml").write_text(text)
    (line,) = _errors(config_dir, capsys)
    assert f"{ENV}.yaml: line {_line(text, 'uses_schema: maybe')}: apps[0].uses_schema: " in line


def test_a_missing_setting_is_reported_at_its_section(config_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = EXAMPLE.replace("    service: api-cashsouk-09ff\n", "", 1)
    (config_dir / f"{ENV}.yaml").write_text(text)
    (line,) = _errors(config_dir, capsys)
    assert f"line {_line(text, '- name: api')}: apps[0].service: required setting is missing" in line


def test_duplicate_keys_are_one_line_each_with_both_lines(config_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = EXAMPLE.replace("    container: Main\n", "    container: Main\n    container: Web\n", 1)
    (config_dir / f"{ENV}.yaml").write_text(text)
    (line,) = _errors(config_dir, capsys)
    first = _line(text, "container: Main")
    assert line.endswith(f"{ENV}.yaml: line {first + 1}: duplicate key 'container' (first on line {first})")


@pytest.mark.parametrize(
    ("encode", "expected"),
    [
        (lambda t: t.encode("utf-16"), "the file is UTF-16 text; save it as UTF-8"),
        (lambda t: t.encode("utf-8").replace(b"cashsouk", b"cash\xe9souk", 1), "not UTF-8 text (byte 0xe9 at offset"),
    ],
    ids=["utf-16", "latin-1"],
)
def test_an_undecodable_file_is_one_line(config_dir: Path, capsys: pytest.CaptureFixture[str], encode: object, expected: str) -> None:
    (config_dir / f"{ENV}.yaml").write_bytes(encode(EXAMPLE))  # type: ignore[operator]
    (line,) = _errors(config_dir, capsys)
    assert expected in line


def test_eleven_apps_is_named_after_release(config_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    settings = yaml.safe_load(EXAMPLE)
    first = settings["apps"][0]
    settings["apps"] = [first | {"name": f"app{i}", "repository": f"app{i}-repo", "service": f"svc{i}"} for i in range(11)]
    text = yaml.safe_dump(settings, sort_keys=False)
    (config_dir / f"{ENV}.yaml").write_text(text)
    (line,) = _errors(config_dir, capsys)
    assert "(top level)" not in line
    assert f"{ENV}.yaml: line {_line(text, 'release:')}: release: 11 apps: " in line, line
