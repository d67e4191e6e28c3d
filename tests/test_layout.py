"""The layout's one hazard: our top-level constructs/ folder next to the `constructs` library."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import constructs as library
from tests.support import ROOT

CONSTRUCT_MODULES = sorted(path.stem for path in (ROOT / "constructs").glob("*.py"))


def test_constructs_folder_is_not_a_regular_package() -> None:
    # An __init__.py would shadow the library and break `import aws_cdk` (constructs._jsii missing).
    assert not (ROOT / "constructs" / "__init__.py").exists()


def test_library_and_our_construct_modules_import_together() -> None:
    imports = "; ".join(f"import constructs.{name}" for name in CONSTRUCT_MODULES)
    code = (
        "import aws_cdk, constructs; "
        f"{imports}; "
        "assert constructs.Construct.__module__.startswith('constructs'); "
        "assert 'site-packages' in constructs.__file__, constructs.__file__; "
        "print(len(constructs.__path__))"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert int(result.stdout) >= 2  # the library's folder and ours


def test_no_construct_module_shadows_a_library_module() -> None:
    library_dir = Path(library.__file__).parent
    library_modules = {path.stem for path in library_dir.iterdir()} - {"__init__", "__pycache__"}
    assert library_modules, library_dir
    assert not set(CONSTRUCT_MODULES) & library_modules
