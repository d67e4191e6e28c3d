"""migrate/Dockerfile (not built here: no Docker engine): parsed and checked."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
import subprocess
from pathlib import Path

import pytest

from constructs.migrate_task import RDS_CA_BUNDLE_PATH
from tests.migrate.runner_harness import REPO

DOCKERFILE = REPO / "migrate" / "Dockerfile"


def instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs: comments dropped, continuation lines joined."""
    result: list[tuple[str, str]] = []
    pending = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        full = (pending + line).strip()
        pending = ""
        keyword, _, rest = full.partition(" ")
        result.append((keyword.upper(), rest.strip()))
    assert not pending, "dangling line continuation"
    return result


@pytest.fixture(scope="module")
def parsed() -> list[tuple[str, str]]:
    return instructions(DOCKERFILE)


def args_of(parsed: list[tuple[str, str]], keyword: str) -> list[str]:
    return [rest for kw, rest in parsed if kw == keyword]


MIGRATE = REPO / "migrate"
PINS = MIGRATE / "image.pins"
#: The only build arguments the image takes, both from migrate/image.pins (reviewed config).
ALLOWED_ARGS = {"NODE_IMAGE", "RDS_CA_BUNDLE_SHA256"}
NODE_IMAGE_PATTERN = r"node:22\.\d+\.\d+-bookworm-slim@sha256:[0-9a-f]{64}"


def pins() -> dict[str, str]:
    lines = [line for line in PINS.read_text().splitlines() if line and not line.startswith("#")]
    return dict(line.split("=", 1) for line in lines)


def test_base_image_comes_by_digest_from_the_reviewed_pins(parsed: list[tuple[str, str]]) -> None:
    froms = args_of(parsed, "FROM")
    assert froms == ["${NODE_IMAGE}"]
    # An ARG without a default: the build refuses to run without the pin.
    assert "NODE_IMAGE" in args_of(parsed, "ARG")
    value = pins()["NODE_IMAGE"]
    assert value == "" or re.fullmatch(NODE_IMAGE_PATTERN, value), value


def test_build_arguments_are_exactly_the_allow_list_without_defaults(parsed: list[tuple[str, str]]) -> None:
    assert set(args_of(parsed, "ARG")) == ALLOWED_ARGS  # no `NAME=default`: nothing a caller could override
    assert set(pins()) == ALLOWED_ARGS
    assert pins()["RDS_CA_BUNDLE_SHA256"] == "" or re.fullmatch(r"[0-9a-f]{64}", pins()["RDS_CA_BUNDLE_SHA256"])


def test_the_runners_python_dependencies_are_hash_pinned_wheels(parsed: list[tuple[str, str]]) -> None:
    runs = " ".join(args_of(parsed, "RUN"))
    assert "--require-hashes" in runs and "--only-binary=:all:" in runs and "-r /opt/runner/requirements.txt" in runs
    requirements = (MIGRATE / "requirements.txt").read_text()
    names = re.findall(r"^([A-Za-z0-9_.-]+)==([0-9.]+) \\$", requirements, re.M)
    assert {name for name, _ in names} == {"psycopg", "psycopg-binary", "typing-extensions"}
    for block in re.split(r"^(?=[A-Za-z])", requirements, flags=re.M)[1:]:
        if not block.startswith("#"):
            assert "--hash=sha256:" in block, block
    # The tests drive the runner with the psycopg the image ships.
    import psycopg  # noqa: PLC0415

    assert dict(names)["psycopg"] == psycopg.__version__


def test_prisma_comes_from_the_committed_lockfile(parsed: list[tuple[str, str]]) -> None:
    lock = json.loads((MIGRATE / "prisma-cli" / "package-lock.json").read_text())
    package = json.loads((MIGRATE / "prisma-cli" / "package.json").read_text())
    version = package["dependencies"]["prisma"]
    assert re.fullmatch(r"\d+\.\d+\.\d+", version)  # exact, no range
    assert lock["packages"]["node_modules/prisma"]["version"] == version
    assert all("integrity" in entry for name, entry in lock["packages"].items() if name)
    runs = args_of(parsed, "RUN")
    assert any(run.startswith("npm ci ") for run in runs)
    assert not any("npm install" in run for run in runs)
    assert "--from=runner prisma-cli/package.json prisma-cli/package-lock.json ./" in args_of(parsed, "COPY")


def test_the_runner_package_is_copied_beside_the_entry_point(parsed: list[tuple[str, str]]) -> None:
    copies = args_of(parsed, "COPY")
    assert "--from=runner --chmod=0555 runnerlib /opt/runner/runnerlib" in copies
    assert "--from=runner --chmod=0555 runner.py /opt/runner/runner.py" in copies
    modules = {p.name for p in (MIGRATE / "runnerlib").glob("*.py")}
    assert {"settings.py", "connection.py", "lock.py", "child.py", "exits.py"} <= modules


def test_runs_as_non_root_user_set_before_the_entrypoint(parsed: list[tuple[str, str]]) -> None:
    keywords = [kw for kw, _ in parsed]
    users = args_of(parsed, "USER")
    assert users, "no USER: the container would run as root"
    assert users[-1].split(":")[0] not in ("root", "0")
    last_user = max(i for i, kw in enumerate(keywords) if kw == "USER")
    entrypoint = keywords.index("ENTRYPOINT")
    assert last_user < entrypoint
    # Nothing after USER needs root.
    assert "RUN" not in keywords[last_user:]


def test_entrypoint_is_exec_form_running_the_runner(parsed: list[tuple[str, str]]) -> None:
    entrypoints = args_of(parsed, "ENTRYPOINT")
    assert len(entrypoints) == 1
    argv = json.loads(entrypoints[0])  # exec form is a JSON array
    assert isinstance(argv, list) and all(isinstance(a, str) for a in argv)
    assert "python" in Path(argv[0]).name
    assert argv[-1].endswith("/runner.py")
    copies = args_of(parsed, "COPY")
    runner_copy = [c for c in copies if "runner.py" in c.split()]
    assert runner_copy and runner_copy[0].split()[-1] == argv[-1]


def test_the_apps_prisma_folder_is_copied(parsed: list[tuple[str, str]]) -> None:
    copies = [c.split() for c in args_of(parsed, "COPY")]
    prisma = [c for c in copies if c[-2].endswith("/prisma") and c[-1].rstrip("/").endswith("prisma")]
    assert prisma, copies
    workdir = args_of(parsed, "WORKDIR")[-1]
    # `npx prisma migrate deploy` runs in WORKDIR and finds prisma/schema.prisma there.
    assert prisma[0][-1] in ("./prisma", f"{workdir}/prisma")


def test_no_account_specific_value_or_secret_in_the_file(parsed: list[tuple[str, str]]) -> None:
    text = DOCKERFILE.read_text()
    assert not re.search(r"\b\d{12}\b", text), "an AWS account id"
    assert not re.search(r"(?i)(password|secret)\s*=", text)
    # Every name in the file (images, COPY sources) is relative: no host, no absolute repo URI.
    for keyword, rest in parsed:
        if keyword in ("FROM", "COPY"):
            assert not re.search(r"[\w-]+\.[\w.-]+(:\d+)?/", rest), rest


# --------------------------------------------------------------------------- the RDS CA bundle

BUNDLE_URL = "https://truststore.pki.rds.amazonaws.com/global/global-bundle.pem"


def env_of(parsed: list[tuple[str, str]]) -> dict[str, str]:
    return dict(item.split("=", 1) for rest in args_of(parsed, "ENV") for item in shlex.split(rest))


def bundle_run(parsed: list[tuple[str, str]]) -> str:
    (run,) = [rest for rest in args_of(parsed, "RUN") if BUNDLE_URL in rest]
    return run


def test_rds_global_bundle_is_fetched_from_aws_checked_and_used_by_default(parsed: list[tuple[str, str]]) -> None:
    run = bundle_run(parsed)
    assert f"{BUNDLE_URL} {RDS_CA_BUNDLE_PATH}" in run
    assert "sha256sum --check" in run
    # The checksum has no default in the file: migrate/image.pins pins it, or the build fails.
    assert "RDS_CA_BUNDLE_SHA256" in args_of(parsed, "ARG")
    env = env_of(parsed)
    assert env["DB_SSLROOTCERT"] == RDS_CA_BUNDLE_PATH  # the same path the task definition names
    assert env["DB_SSLMODE"] == "verify-full"
    assert env["MIGRATE_URL_TLS"] == "prisma"
    # Fetched as root before USER node: the unprivileged user can read the bundle, not replace it.
    keywords = [kw for kw, _ in parsed]
    position = next(i for i, (kw, rest) in enumerate(parsed) if kw == "RUN" and BUNDLE_URL in rest)
    assert position < keywords.index("USER")


@pytest.mark.parametrize(("pinned", "ok"), [("right", True), ("wrong", False), ("", False)])
def test_bundle_step_accepts_only_the_pinned_checksum(parsed: list[tuple[str, str]], tmp_path: Path, pinned: str, ok: bool) -> None:
    """The RUN step itself, executed with sh: python3 is a stub 'downloading' a local file."""
    served = tmp_path / "served.pem"
    served.write_text("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")
    right = hashlib.sha256(served.read_bytes()).hexdigest()
    stub = tmp_path / "bin" / "python3"
    stub.parent.mkdir()
    stub.write_text(f'#!/bin/sh\n[ "$3" = "{BUNDLE_URL}" ] && cp {served} "$4"\n')
    stub.chmod(0o755)
    target = tmp_path / "opt"
    target.mkdir()
    script = bundle_run(parsed).replace("/opt/runner/", f"{target}/")
    checksum = {"right": right, "wrong": "0" * 64, "": ""}[pinned]
    proc = subprocess.run(
        ["sh", "-c", script],
        env={"PATH": f"{stub.parent}:{os.environ.get('PATH', '/usr/bin:/bin')}", "RDS_CA_BUNDLE_SHA256": checksum},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert (proc.returncode == 0) is ok, proc.stdout + proc.stderr
    if not pinned:
        assert "RDS_CA_BUNDLE_SHA256 is required" in proc.stderr
