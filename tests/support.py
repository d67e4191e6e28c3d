"""What the tests share: the repository root, the environments synthesized per session, and the
synthesized app's shape. A plain module, so it is imported once (conftest.py is pytest's).

One synthesis serves every test process: the first pytest worker that needs the templates
synthesizes the app into a cache folder named by a hash of everything synthesis reads (our sources,
the config, the library versions); the other workers, and later sessions with the same sources,
read the cloud assembly from there. What a test needs of the constructs themselves (the release
definitions as built, before CDK writes them) is written beside the assembly at synthesis, so no
process builds the app a second time.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cached_property
from importlib import metadata
from pathlib import Path
from typing import Any

from aws_cdk import App
from aws_cdk.assertions import Template

from config import EnvironmentConfig, load_config
from stacks import add_environments

ROOT = Path(__file__).resolve().parent.parent

ENVIRONMENTS = ("example", "sandbox")
UNITS = ("data", "images", "release", "ci")

# Set SYNTH_CACHE to another folder to move the cache, or to "off" to synthesize in every process.
CACHE_ROOT = Path(os.environ.get("SYNTH_CACHE") or ROOT / ".synth-cache")
# What synthesis reads. Anything else (tests, docs, the migration runner's SQL) cannot change a template.
_SOURCE_DIRS = ("config", "stacks", "constructs", "release")
_SOURCE_FILES = ("app.py", "cdk.json", "tests/support.py")
_LIBRARIES = ("aws-cdk-lib", "constructs", "cdk-nag", "jsii", "pydantic", "PyYAML")
_KEPT_ENTRIES = 8
CONSTRUCT_DEFINITIONS = "construct-definitions.json"


def session_configs() -> list[EnvironmentConfig]:
    return [load_config(name) for name in ENVIRONMENTS]


def session_app(outdir: Path) -> None:
    """Every session environment in one app, synthesized into `outdir`.

    With cdk.json's context (the feature flags), as `cdk synth` passes it, so the tests see the
    templates that deploy. CDK's built-in template validation is off: it runs the same rules as
    cfn-lint (W3010, E3xxx …), which test_gates.py runs once over every template; on here it would
    cost every process seconds.
    """
    context = json.loads((ROOT / "cdk.json").read_text())["context"]
    app = App(outdir=str(outdir), context=context, builtin_cloud_formation_validation=False)
    environments = add_environments(app, session_configs())
    app.synth()
    # The release definitions as the constructs hold them, before CDK writes them (CDK drops keys
    # whose value is None): kept beside the assembly, so no test builds the app again to read them.
    definitions = {
        name: {"definition": stacks.release.release.definition, "cleanup": stacks.release.release.cleanup_definition}
        for name, stacks in environments.items()
    }
    (outdir / CONSTRUCT_DEFINITIONS).write_text(json.dumps(definitions))


def read_templates(assembly: Path) -> dict[str, dict[str, Any]]:
    """Stack name -> template, for every stack of the cloud assembly in `assembly`."""
    manifest = json.loads((assembly / "manifest.json").read_text())
    templates = {}
    for artifact_id, artifact in manifest["artifacts"].items():
        if artifact["type"] == "aws:cloudformation:stack":
            properties = artifact["properties"]
            name = properties.get("stackName", artifact_id)
            templates[name] = json.loads((assembly / properties["templateFile"]).read_text())
    return templates


def source_key() -> str:
    """A hash of every input of the session synthesis."""
    digest = hashlib.sha256()
    files = [ROOT / name for name in _SOURCE_FILES]
    for folder in _SOURCE_DIRS:
        files += sorted(path for path in (ROOT / folder).rglob("*") if path.is_file() and "__pycache__" not in path.parts)
    for path in files:
        digest.update(f"{path.relative_to(ROOT)}\0".encode())
        digest.update(path.read_bytes() if path.exists() else b"<missing>")
    for library in _LIBRARIES:
        digest.update(f"{library}=={metadata.version(library)}\0".encode())
    digest.update(os.environ.get("CDK_CONTEXT_JSON", "").encode())
    return digest.hexdigest()[:24]


@contextmanager
def _exclusive(lock_path: Path) -> Iterator[None]:
    with lock_path.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes, also if this process dies
        yield


def _prune(keep: Path) -> None:
    entries = sorted((path for path in CACHE_ROOT.iterdir() if path.is_dir() and path != keep), key=lambda p: p.stat().st_mtime)
    for stale in entries[: max(0, len(entries) - _KEPT_ENTRIES + 1)]:
        shutil.rmtree(stale, ignore_errors=True)
        stale.with_suffix(".lock").unlink(missing_ok=True)


class Synthesized:
    """The session's synthesis: templates and construct definitions from the shared cloud assembly."""

    def __init__(self, outdir: Path) -> None:
        self.outdir = outdir  # a complete cloud assembly; shared, so read it, never write to it
        self.templates = read_templates(outdir)  # stack name -> template
        self._stack_names = {(config.env_name, unit): config.stack_name(unit) for config in session_configs() for unit in UNITS}
        self._parsed: dict[str, Template] = {}

    @classmethod
    def shared(cls, private_dir: Path) -> Synthesized:
        """The cached synthesis of the current sources, made by this process if nobody has yet."""
        if os.environ.get("SYNTH_CACHE") == "off":
            session_app(private_dir)
            return cls(private_dir)
        CACHE_ROOT.mkdir(parents=True, exist_ok=True)
        entry = CACHE_ROOT / source_key()
        with _exclusive(entry.with_suffix(".lock")):
            if not (entry / "manifest.json").exists():
                session_app(private_dir)
                staging = Path(tempfile.mkdtemp(prefix=f"{entry.name}-", dir=CACHE_ROOT))
                shutil.copytree(private_dir, staging, dirs_exist_ok=True)
                shutil.rmtree(entry, ignore_errors=True)
                staging.rename(entry)  # atomic: a reader sees a whole assembly or none
                _prune(keep=entry)
        return cls(entry)

    @cached_property
    def construct_definitions(self) -> dict[str, dict[str, Any]]:
        """Environment -> {"definition", "cleanup"}: the release construct's definitions as it built
        them (None values kept), written when the app was synthesized."""
        loaded: dict[str, dict[str, Any]] = json.loads((self.outdir / CONSTRUCT_DEFINITIONS).read_text())
        return loaded

    def stack_name(self, env_name: str, unit: str) -> str:
        return self._stack_names[(env_name, unit)]

    def template(self, env_name: str, unit: str) -> Template:
        """The synthesized template of one stack, parsed once per process."""
        name = self.stack_name(env_name, unit)
        if name not in self._parsed:
            self._parsed[name] = Template.from_json(self.templates[name])
        return self._parsed[name]
