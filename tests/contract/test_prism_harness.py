"""The Prism harness itself: skip or fail where Prism is missing, a clear error where it
does not start, and no process left behind either way."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import pytest

from tests.contract import (
    PRISM_BIN_ENV,
    REQUIRE_ENV,
    PrismError,
    PrismProcess,
    find_prism,
    unavailable,
)

pytestmark = pytest.mark.contract


def test_missing_prism_skips_saying_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(REQUIRE_ENV, raising=False)
    monkeypatch.setenv(PRISM_BIN_ENV, "/nonexistent/prism")
    with pytest.raises(pytest.skip.Exception, match=r"bash \.ci/install-prism"):
        find_prism()


def test_missing_prism_fails_when_ci_requires_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(REQUIRE_ENV, "1")
    monkeypatch.setenv(PRISM_BIN_ENV, "/nonexistent/prism")
    with pytest.raises(pytest.fail.Exception, match=REQUIRE_ENV):
        find_prism()
    with pytest.raises(pytest.fail.Exception, match="no spec"):
        unavailable("no spec")


def test_a_prism_that_exits_is_reported_with_its_output(tmp_path: Path) -> None:
    command = [sys.executable, "-c", "import sys; print('cannot read the spec'); sys.exit(3)"]
    prism = PrismProcess(command, ["mock", "spec.json"], tmp_path / "prism.log")
    with pytest.raises(PrismError, match=r"(?s)exited with 3.*cannot read the spec"):
        prism.start()
    assert prism.returncode == 3


def test_a_prism_that_never_listens_is_stopped(tmp_path: Path) -> None:
    command = [sys.executable, "-c", "import time; print('loading', flush=True); time.sleep(60)"]
    prism = PrismProcess(command, ["mock", "spec.json"], tmp_path / "prism.log")
    with pytest.raises(PrismError, match=r"(?s)was not listening.*loading"):
        prism.start(timeout=0.5)
    assert prism.returncode == -signal.SIGTERM
    prism.stop()  # twice is fine


def test_prism_with_a_broken_spec_says_why(prism_command: list[str], tmp_path: Path) -> None:
    spec = tmp_path / "broken.json"
    spec.write_text('{"openapi": "3.0.1", "paths": ', encoding="utf-8")
    prism = PrismProcess(prism_command, ["mock", str(spec)], tmp_path / "prism.log")
    with pytest.raises(PrismError, match="exited with"):
        prism.start()
    assert prism.returncode not in (None, 0)


@pytest.mark.skipif(not hasattr(os, "killpg"), reason="process groups are POSIX")
def test_prism_stops_with_its_whole_group(
    prism_command: list[str], contract_spec: Path, tmp_path: Path
) -> None:
    prism = PrismProcess(prism_command, ["mock", str(contract_spec)], tmp_path / "prism.log")
    prism.start()
    assert prism.pid is not None
    prism.stop()
    assert prism.returncode is not None
    with pytest.raises(ProcessLookupError):
        os.killpg(prism.pid, 0)  # signal 0: "does the group exist?"; it does not
