"""Setup, type checking, suite and synth figures, each as a ratio to an empty-stack synth measured in
the same run: `make bench` prints them, the README quotes them (with the date and machine).

The floor is a minimal one-stack CDK app synthesized exactly like ours (`python app.py`, the
cdk.json context, a new output folder each time). Ratios cancel out the machine's speed; on a
shared machine the load still moves them, so the load average is printed with them.

    python bench/speed_bench.py               # synth, mypy cold/warm, installs (warm and cold uv cache), suite warm
    python bench/speed_bench.py --fresh-clone # also: a clone of HEAD, `make synth`, then `make test` (the cold suite)
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RUNS = int(os.environ.get("BENCH_RUNS", "5"))
# The Makefile's environment: pinned Node first, bytecode written on first import.
ENV = {
    **{key: value for key, value in os.environ.items() if key != "PYTHONDONTWRITEBYTECODE"},
    "PATH": f"{ROOT / 'node_modules' / '.bin'}{os.pathsep}{os.environ['PATH']}",
    "CDK_CONTEXT_JSON": json.dumps(json.loads((ROOT / "cdk.json").read_text())["context"]),
}

# One resource, the smallest there is: CDK's template validation refuses a stack without resources
# once cdk.json decides every feature flag.
EMPTY_APP = """
from aws_cdk import App, CfnWaitConditionHandle, Stack
app = App()
CfnWaitConditionHandle(Stack(app, "Empty"), "Nothing")
app.synth()
"""

GOALS = {"synth.app": 1.5, "suite.warm": 15, "suite.cold_after_make_synth": 25}


def _run(command: list[str], cwd: Path = ROOT, env: dict[str, str] | None = None) -> tuple[float, subprocess.CompletedProcess[str]]:
    started = time.perf_counter()
    result = subprocess.run(command, cwd=cwd, env=env or ENV, capture_output=True, text=True, check=False)
    return time.perf_counter() - started, result


def _timed(command: list[str], cwd: Path = ROOT, env: dict[str, str] | None = None) -> float:
    seconds, result = _run(command, cwd, env)
    if result.returncode != 0:
        sys.exit(f"bench: {' '.join(command)} failed ({result.returncode}):\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return seconds


def _pytest_summary(output: str) -> str:
    """pytest's closing line and its slowest tests (a failed suite is timed all the same, and says so)."""
    lines = output.splitlines()
    closing = next((line.strip("= ") for line in reversed(lines) if " passed" in line or " failed" in line), "no pytest summary")
    slowest = [line for line in lines if line[:1].isdigit() and ("s call" in line or "s setup" in line or "s teardown" in line)][:5]
    failed = [line for line in lines if line.startswith(("FAILED ", "ERROR "))]
    return "\n".join([f"[{closing}]", *(f"    {line}" for line in failed + slowest)])


def _synth(app: Path, extra_env: dict[str, str] | None = None) -> float:
    with tempfile.TemporaryDirectory() as outdir:
        return _timed([sys.executable, str(app)], env={**ENV, "CDK_OUTDIR": outdir, **(extra_env or {})})


def _median(measure: Callable[[], float], runs: int) -> float:
    return statistics.median(measure() for _ in range(runs))


class Report:
    def __init__(self) -> None:
        self.floor = 0.0

    def line(self, name: str, seconds: float, note: str = "") -> None:
        goal = f" (goal <= {GOALS[name]})" if name in GOALS else ""
        ratio = f"{seconds / self.floor:6.2f}x floor{goal}" if self.floor else ""
        print(f"{name:34} {seconds:7.1f} s  {ratio}  {note}".rstrip(), flush=True)


def machine() -> str:
    model = next(
        (line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name")),
        platform.processor(),
    )
    load = " ".join(f"{value:.1f}" for value in os.getloadavg())
    return f"{datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} cores, {model}, load {load}"


def synth_figures(report: Report, empty_app: Path) -> None:
    empty, empty_plain, whole = [], [], []
    for _ in range(RUNS):  # interleaved, so drift on the machine hits all alike
        empty.append(_synth(empty_app))
        empty_plain.append(_synth(empty_app, {"CDK_VALIDATION": "false"}))
        whole.append(_synth(ROOT / "app.py"))
    report.floor = statistics.median(empty)
    report.line("synth.empty_stack (the floor)", report.floor, f"median of {RUNS}, CDK defaults (built-in validation on)")
    report.line("synth.empty_stack_no_validation", statistics.median(empty_plain), "the floor without CDK's built-in validation")
    report.line("synth.app", statistics.median(whole), "python app.py: 4 stacks, cdk-nag on, built-in validation off")


def mypy_figures(report: Report) -> None:
    with tempfile.TemporaryDirectory() as cache:
        mypy = [str(ROOT / ".venv" / "bin" / "mypy"), "--cache-dir", cache]
        report.line("mypy.cold", _timed([*mypy, "--num-workers", "auto"]), "as `make lint` runs it without a cache")
        report.line("mypy.warm", _timed(mypy), "no change since the last run")


def install_figures(report: Report) -> None:
    """The dev lock into an empty venv, as the Makefile does it: pip bootstraps uv, uv installs."""
    for label, cache in (("warm", None), ("cold", "empty")):
        with tempfile.TemporaryDirectory() as scratch:
            venv = Path(scratch) / "venv"
            env = {**ENV, **({"UV_CACHE_DIR": str(Path(scratch) / "uv-cache")} if cache else {})}
            started = time.perf_counter()
            _timed(["python3", "-m", "venv", "--without-pip", str(venv)], env=env)
            pip = ["python3", "-m", "pip", "--python", str(venv / "bin" / "python"), "install", "--quiet", "--disable-pip-version-check"]
            _timed([*pip, "--require-hashes", "--no-deps", "-r", str(ROOT / "requirements-uv.lock")], env=env)
            uv = [str(venv / "bin" / "uv"), "pip", "install", "--quiet", "--python", str(venv / "bin" / "python"), "--require-hashes"]
            _timed([*uv, "-r", str(ROOT / "requirements-dev.lock")], env=env)
            report.line(f"install.dev_lock_{label}_uv_cache", time.perf_counter() - started, "empty venv: pip bootstraps uv, uv installs")


# The suites run as a user runs them: without the floor's CDK_CONTEXT_JSON, which would reach every
# App a test builds (a test's bare app would then take cdk.json's flags).
SUITE_ENV = {key: value for key, value in ENV.items() if key not in ("CDK_CONTEXT_JSON", "VIRTUAL_ENV")}


def suite_warm(report: Report) -> None:
    pytest = [str(ROOT / ".venv" / "bin" / "pytest"), "-q", "-n", "auto", "--dist", "worksteal", "--durations=10"]
    seconds, result = _run(pytest, env=SUITE_ENV)
    report.line("suite.warm", seconds, f"pytest as `make test` runs it; caches as earlier runs left them {_pytest_summary(result.stdout)}")


def fresh_clone(report: Report) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        clone = Path(scratch) / "clone"
        subprocess.run(["git", "clone", "--quiet", str(ROOT), str(clone)], check=True)
        report.line(
            "fresh_clone.make_synth", _timed(["make", "synth"], cwd=clone, env=SUITE_ENV), "venv, uv, runtime lock, npm ci, cdk synth"
        )
        seconds, result = _run(["make", "test"], cwd=clone, env=SUITE_ENV)
        summary = _pytest_summary(result.stdout)
        if result.returncode != 0:
            summary = f"FAILED ({result.returncode}): {result.stderr[-300:]}\n{summary}"
        report.line("suite.cold_after_make_synth", seconds, f"make test: dev lock, ruff, mypy cold, suite {summary}")
        shutil.rmtree(clone / ".venv", ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fresh-clone", action="store_true", help="also time make synth and make test in a clone of HEAD")
    parser.add_argument("--skip-suite", action="store_true", help="leave out the warm suite")
    args = parser.parse_args()
    print(f"speed bench: {machine()}")
    report = Report()
    with tempfile.TemporaryDirectory() as empty_dir:
        empty_app = Path(empty_dir) / "app.py"
        empty_app.write_text(EMPTY_APP)
        synth_figures(report, empty_app)
    mypy_figures(report)
    install_figures(report)
    if not args.skip_suite:
        suite_warm(report)
    if args.fresh_clone:
        fresh_clone(report)
    print(f"speed bench done: {machine()}")


if __name__ == "__main__":
    main()
