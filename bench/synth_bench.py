"""Synth and test-suite figures: `make bench` prints them, the README quotes them.

Cold synth of the whole app against an empty one-stack app, both through the CDK CLI exactly as a
platform engineer runs it (new output folder each time, so nothing is cached). The ratio is the
figure that matters: it cancels out the machine's speed. Goal: at most 1.5.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RUNS = int(os.environ.get("BENCH_RUNS", "5"))
ENV = {**os.environ, "PATH": f"{ROOT / 'node_modules' / '.bin'}{os.pathsep}{os.environ['PATH']}", "CDK_DISABLE_VERSION_CHECK": "1"}

EMPTY_APP = """
from aws_cdk import App, Stack
app = App()
Stack(app, "Empty")
app.synth()
"""


def _synth_seconds(app_command: str, cwd: Path) -> float:
    with tempfile.TemporaryDirectory() as outdir:
        started = time.perf_counter()
        subprocess.run(
            ["npx", "--no-install", "cdk", "synth", "--quiet", "--app", app_command, "--output", outdir],
            cwd=cwd,
            env=ENV,
            check=True,
            capture_output=True,
        )
        return time.perf_counter() - started


def main() -> None:
    python = sys.executable
    with tempfile.TemporaryDirectory() as empty_dir:
        (Path(empty_dir) / "app.py").write_text(EMPTY_APP)
        empty, whole = [], []
        for _ in range(RUNS):  # interleaved, so drift on the machine hits both alike
            empty.append(_synth_seconds(f"{python} {Path(empty_dir) / 'app.py'}", ROOT))
            whole.append(_synth_seconds(f"{python} app.py", ROOT))
    empty_s, whole_s = statistics.median(empty), statistics.median(whole)
    print(f"synth.empty_app_s median={empty_s:.2f} runs={RUNS}")
    print(f"synth.whole_app_s median={whole_s:.2f} runs={RUNS}")
    print(f"synth.ratio whole/empty={whole_s / empty_s:.2f} (goal <= 1.5)")

    started = time.perf_counter()
    result = subprocess.run(
        [python, "-m", "pytest", "-q", "-p", "no:randomly"], cwd=ROOT, env=ENV, capture_output=True, text=True, check=False
    )
    suite_s = time.perf_counter() - started
    summary = result.stdout.strip().splitlines()[-1] if result.stdout.strip() else "no output"
    print(f"tests.suite_wall_s {suite_s:.1f} (goal < 90) [{summary}]")


if __name__ == "__main__":
    main()
