"""The pytest plugin, as a user meets it: inner pytest runs (pytester, each in a subprocess, as
a user's run is) of test files that use ``twilio_sandbox``, ``twilio_client`` and the marker, in
pytest-asyncio's auto and strict modes, without pytest-asyncio, and loaded three ways at once.
"""

from __future__ import annotations

import importlib.metadata
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

PLUGIN = "twilio_numbers_async.pytest_plugin"
AUTO_INI = """
[pytest]
asyncio_mode = auto
asyncio_default_fixture_loop_scope = function
filterwarnings = error
"""

USER_TESTS = """
import asyncio

import pytest

from twilio_numbers_async import PurchaseOutcomeUnknownError
from twilio_numbers_async.sandbox import Fault, Faults

pytestmark = pytest.mark.twilio_sandbox(seed=7)
seen = []


async def test_signup_buys_a_number(twilio_sandbox, twilio_client):
    number = await twilio_client.create_incoming_phone_number(area_code="415")
    assert [p.phone_number for p in twilio_sandbox.purchases] == [number.phone_number]
    assert twilio_client.base_url == twilio_sandbox.url
    seen.append((twilio_sandbox, twilio_client))


async def test_each_test_has_its_own_sandbox_and_the_last_one_is_closed(twilio_sandbox):
    (old_sandbox, old_client), = seen
    assert old_client.closed
    assert not old_sandbox.running
    assert twilio_sandbox is not old_sandbox
    assert twilio_sandbox.purchases == []


async def test_a_scripted_fault(twilio_sandbox, twilio_client):
    twilio_sandbox.script(Fault.drop_after_commit())
    number = await twilio_client.create_incoming_phone_number(area_code="415")
    assert [p.phone_number for p in twilio_sandbox.purchases] == [number.phone_number]


async def test_a_client_of_its_own(twilio_sandbox):
    twilio_sandbox.script(Fault.drop_after_commit())
    async with twilio_sandbox.client(area_codes="direct") as direct:
        with pytest.raises(PurchaseOutcomeUnknownError):
            await direct.create_incoming_phone_number(area_code="415")
    assert len(twilio_sandbox.purchases) == 1


async def test_retries_wait_milliseconds(twilio_sandbox, twilio_client):
    twilio_sandbox.script(*[Fault.server_error(503)] * 4)
    loop = asyncio.get_running_loop()
    started = loop.time()
    await twilio_client.create_incoming_phone_number(phone_number="+14155551234")
    assert loop.time() - started < 1.0
    assert len(twilio_sandbox.purchases) == 1


@pytest.mark.twilio_sandbox(faults=Faults(rate_limited=1.0))
async def test_a_faults_object(twilio_sandbox):
    assert twilio_sandbox.faults.rate_limited == 1.0


class TestMarks:
    pytestmark = pytest.mark.twilio_sandbox(account_sid="AC" + "1" * 32)

    @pytest.mark.twilio_sandbox(faults="drop_after_commit=0.5", seed=9)
    async def test_the_closest_mark_wins_key_by_key(self, twilio_sandbox):
        assert twilio_sandbox.faults.drop_after_commit == 0.5
        assert "seed=9" in repr(twilio_sandbox)
        assert twilio_sandbox.account_sid == "AC" + "1" * 32

    async def test_marks_from_the_module_and_the_class(self, twilio_sandbox):
        assert "seed=7" in repr(twilio_sandbox)
        assert twilio_sandbox.account_sid == "AC" + "1" * 32
        assert not twilio_sandbox.faults.active


@pytest.mark.twilio_sandbox(colour="blue")
async def test_an_unknown_option(twilio_sandbox):
    pass


@pytest.mark.twilio_sandbox(faults="explode=1")
async def test_an_unknown_fault(twilio_sandbox):
    pass


@pytest.mark.twilio_sandbox(1)
async def test_a_positional_argument(twilio_sandbox):
    pass


def test_a_test_without_the_fixtures():
    pass
"""


def inner_env(monkeypatch: pytest.MonkeyPatch, *paths: Path) -> None:
    """Put ``paths`` first on the inner run's import path."""
    entries = [str(path) for path in paths]
    if os.environ.get("PYTHONPATH"):
        entries.append(os.environ["PYTHONPATH"])
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(entries))


def test_the_fixtures_and_the_marker(pytester: pytest.Pytester) -> None:
    pytester.makefile(".ini", pytest=AUTO_INI)
    pytester.makepyfile(test_user=USER_TESTS)
    result = pytester.runpytest_subprocess("-p", PLUGIN, "--strict-markers", "-rE")
    result.assert_outcomes(passed=9, errors=3)
    result.stdout.fnmatch_lines_random(
        [
            "test_user.py::test_an_unknown_option: @pytest.mark.twilio_sandbox gives "
            "Sandbox(seed=7, colour='blue'): *unexpected keyword argument 'colour'",
            "test_user.py::test_an_unknown_fault: *: unknown fault 'explode' in 'explode=1'*",
            "@pytest.mark.twilio_sandbox takes keyword arguments only*not (1,)",
        ]
    )


def test_strict_mode_works_for_marked_tests_and_says_what_to_do_for_unmarked_ones(
    pytester: pytest.Pytester,
) -> None:
    pytester.makefile(".ini", pytest=AUTO_INI.replace("= auto", "= strict"))
    pytester.makepyfile(
        test_strict="""
        import pytest

        @pytest.mark.asyncio
        async def test_marked(twilio_sandbox, twilio_client):
            await twilio_client.create_incoming_phone_number(area_code="415")
            assert len(twilio_sandbox.purchases) == 1

        async def test_unmarked(twilio_client):
            pass
        """
    )
    result = pytester.runpytest_subprocess("-p", PLUGIN, "-rE")
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(
        ["*test_unmarked is an async test*mark it @pytest.mark.asyncio*asyncio_mode = auto*"]
    )


NEEDS_ASYNCIO = """
async def test_uses_the_sandbox(twilio_sandbox):
    pass
"""


def test_a_clear_error_when_pytest_asyncio_is_disabled(pytester: pytest.Pytester) -> None:
    pytester.makefile(".ini", pytest="[pytest]\nfilterwarnings = error\n")
    pytester.makepyfile(test_user=NEEDS_ASYNCIO)
    result = pytester.runpytest_subprocess("-p", PLUGIN, "-p", "no:asyncio", "-rE")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        ["*twilio_sandbox and twilio_client are async fixtures and need pytest-asyncio*"]
    )


def test_a_clear_error_when_pytest_asyncio_is_not_installed(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A package that fails to import stands in for a missing one; no autoload, or pytest would
    # fail loading pytest-asyncio's own entry point.
    shadow = pytester.mkdir("shadow")
    (shadow / "pytest_asyncio").mkdir()
    (shadow / "pytest_asyncio" / "__init__.py").write_text(
        "raise ModuleNotFoundError('No module named pytest_asyncio', name='pytest_asyncio')\n"
    )
    inner_env(monkeypatch, shadow)
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")
    pytester.makefile(".ini", pytest="[pytest]\nfilterwarnings = error\n")
    pytester.makepyfile(test_user=NEEDS_ASYNCIO)
    result = pytester.runpytest_subprocess("-p", PLUGIN, "-rE")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        ["*twilio_sandbox and twilio_client are async fixtures and need pytest-asyncio*"]
    )


def installed_entry_point() -> importlib.metadata.EntryPoint | None:
    for entry_point in importlib.metadata.entry_points(group="pytest11"):
        if entry_point.value == PLUGIN:
            return entry_point
    return None


def test_loaded_by_entry_point_and_by_name_at_once(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    # pluggy refuses one module registered under two names, so the entry point must be named
    # after the module: then `-p` and `pytest_plugins` find it registered and do nothing.
    entry_point = installed_entry_point()
    if entry_point is not None:
        assert entry_point.name == PLUGIN, "name the pytest11 entry point after its module"
    else:
        # Until pyproject.toml declares it, a stand-in distribution declares it the same way.
        site = pytester.mkdir("site")
        info = site / "stand_in-0.dist-info"
        info.mkdir()
        (info / "METADATA").write_text("Metadata-Version: 2.1\nName: stand-in\nVersion: 0\n")
        (info / "entry_points.txt").write_text(f"[pytest11]\n{PLUGIN} = {PLUGIN}\n")
        inner_env(monkeypatch, site)
    pytester.makefile(".ini", pytest=AUTO_INI)
    pytester.makeconftest(f"pytest_plugins = [{PLUGIN!r}]")
    pytester.makepyfile(
        test_user="""
        async def test_signup_buys_a_number(twilio_sandbox, twilio_client):
            await twilio_client.create_incoming_phone_number(area_code="415")
            assert len(twilio_sandbox.purchases) == 1
        """
    )
    result = pytester.runpytest_subprocess("-p", PLUGIN)
    result.assert_outcomes(passed=1)


def test_loading_the_plugin_imports_neither_the_sandbox_nor_a_server() -> None:
    code = textwrap.dedent(
        f"""
        import sys
        import {PLUGIN}
        loaded = [m for m in ("twilio_numbers_async.sandbox", "aiohttp.web") if m in sys.modules]
        assert not loaded, loaded
        """
    )
    subprocess.run([sys.executable, "-c", code], check=True)  # noqa: S603 - our own code
