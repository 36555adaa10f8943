"""Fixtures of the sandbox's tests: a seeded sandbox, a raw session to it, and no log noise."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator

import aiohttp
import pytest

from twilio_numbers_async.sandbox import Sandbox

from ._http import Api


@pytest.fixture(autouse=True)
def no_log_noise(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """No access log, and no traceback or warning logged, whatever a test injects."""
    caplog.set_level(logging.DEBUG)
    yield
    # caplog.records would be this teardown's: the test's own are the call's.
    noisy = [
        record
        for record in caplog.get_records("setup") + caplog.get_records("call")
        if record.levelno >= logging.WARNING or record.name == "aiohttp.access"
    ]
    assert noisy == []


@pytest.fixture
async def sandbox() -> AsyncIterator[Sandbox]:
    async with Sandbox(seed=7, area_code_stock=20) as sandbox:
        yield sandbox


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
def api(sandbox: Sandbox, session: aiohttp.ClientSession) -> Api:
    return Api(sandbox, session)
