"""Fixtures of the contract tests: the spec, and Prism processes (one mock, one proxy) that
live for the session and are always stopped. See ``tests/contract/__init__.py``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests._spec import SPEC_PATH, proxy_spec, spec_available
from tests.contract import (
    PrismError,
    PrismProcess,
    PrismProxy,
    find_prism,
    free_port,
    unavailable,
)


@pytest.fixture(scope="session", autouse=True)
def contract_spec() -> Path:
    """The spec file; every contract test needs it."""
    if not spec_available():
        unavailable(
            f"Twilio's OpenAPI spec is not at {SPEC_PATH}: put it in ../shared/spec/ "
            "or set TWILIO_OAS_PATH to twilio_incoming_phone_numbers_oas.json"
        )
    return SPEC_PATH


@pytest.fixture(scope="session")
def prism_command() -> list[str]:
    """The command that runs Prism; skips (or fails, in CI) where there is none."""
    return find_prism()


def _run(prism: PrismProcess) -> Iterator[PrismProcess]:
    try:  # stopped whatever happens, Ctrl-C while it starts included
        try:
            prism.start()
        except PrismError as exc:
            pytest.fail(str(exc), pytrace=False)
        yield prism
    finally:
        prism.stop()


@pytest.fixture(scope="session")
def prism_mock(
    prism_command: list[str], contract_spec: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[PrismProcess]:
    """``prism mock`` serving the spec: it checks each request and answers with its example."""
    log = tmp_path_factory.mktemp("prism-mock") / "prism.log"
    yield from _run(PrismProcess(prism_command, ["mock", str(contract_spec)], log))


@pytest.fixture(scope="session")
def prism_proxy(
    prism_command: list[str], contract_spec: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[PrismProxy]:
    """``prism proxy --errors`` to a loopback port that each test serves a sandbox on.

    It reads :func:`tests._spec.proxy_spec`, the spec with one documented patch.
    """
    directory = tmp_path_factory.mktemp("prism-proxy")
    upstream_port = free_port()
    arguments = [
        "proxy",
        str(proxy_spec(directory)),
        f"http://127.0.0.1:{upstream_port}",
        "--errors",
    ]
    for prism in _run(PrismProcess(prism_command, arguments, directory / "prism.log")):
        yield PrismProxy(process=prism, upstream_port=upstream_port)
