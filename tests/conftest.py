"""One synthesis per test session, shared by the pytest workers: every environment in one app."""

from __future__ import annotations

import gc
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from tests.support import Synthesized

# jsii runs on the pinned Node 22 that `npm ci` puts in node_modules/.bin (the machine's may be end
# of life): on PATH before any test module imports aws_cdk, which starts Node. Nothing here imports
# the CDK itself: with -n, pytest's controller process loads this file and runs no test.
os.environ["PATH"] = f"{Path(__file__).resolve().parent.parent / 'node_modules' / '.bin'}{os.pathsep}{os.environ['PATH']}"


def pytest_configure(config: pytest.Config) -> None:
    if getattr(config.option, "numprocesses", None) and not hasattr(config, "workerinput"):
        return  # pytest-xdist's controller: it runs no test
    _share_botocore_files()


def _share_botocore_files() -> None:
    """Each botocore Session has its own loader, which parses the endpoints and the service models
    again: moto's EC2 module alone makes three Sessions at import (0.4 s of every test process).
    One parse per file and process; botocore treats a loaded file as read-only (its own loader
    returns one cached object to every caller)."""
    from botocore import loaders  # noqa: PLC0415 - not in the controller

    parsed: dict[str, Any] = {}
    load_file = loaders.JSONFileLoader.load_file

    def load_file_once(self: Any, file_path: str) -> Any:
        if file_path not in parsed:
            parsed[file_path] = load_file(self, file_path)
        return parsed[file_path]

    loaders.JSONFileLoader.load_file = load_file_once


def pytest_collection_finish(session: pytest.Session) -> None:
    """What is loaded by now (jsii's object graph, the CDK, moto, every test module) stays for the
    whole session: out of the collector's sight, no collection scans it again."""
    gc.freeze()


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session) -> None:
    """The process is about to end: pytest's last full collection (made to report exceptions from
    finalizers) would scan every object the session left, for half a second per worker."""
    gc.freeze()


@pytest.fixture(autouse=True, scope="session")
def _fewer_garbage_collections() -> Iterator[None]:
    """moto, boto3 and the interpreter allocate a lot per test, almost all of it freed by reference
    counting; the default thresholds collect (and scan the young objects) every 700 allocations."""
    before = gc.get_threshold()
    gc.set_threshold(100_000, 50, 100)
    yield
    gc.set_threshold(*before)


@pytest.fixture(scope="session")
def synthesized(tmp_path_factory: pytest.TempPathFactory) -> Synthesized:
    from tests.support import Synthesized  # noqa: PLC0415 - see above

    return Synthesized.shared(tmp_path_factory.mktemp("cdk.out"))


@pytest.fixture(scope="session")
def templates(synthesized: Synthesized) -> dict[str, dict[str, Any]]:
    """Stack name -> synthesized CloudFormation template (as written to the cloud assembly)."""
    return synthesized.templates
