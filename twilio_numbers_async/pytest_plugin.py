"""pytest fixtures for testing code that buys numbers, without the internet or real credentials.

Installed with the library (entry point ``pytest11``), so a test only names the fixtures::

    async def test_signup_buys_a_number(twilio_sandbox, twilio_client):
        number = await signup(twilio_client, area_code="415")
        assert [p.phone_number for p in twilio_sandbox.purchases] == [number.phone_number]

``twilio_sandbox``
    A running :class:`~twilio_numbers_async.sandbox.Sandbox` on loopback, one per test.
``twilio_client``
    A :class:`~twilio_numbers_async.TwilioNumbersClient` for it, with quick retries and no rate
    limit, closed after the test. Otherwise the client's defaults: an area code is bought
    through a search (``area_codes="search"``).
``@pytest.mark.twilio_sandbox(**kwargs)``
    Keyword arguments for the test's ``Sandbox`` (``seed``, ``max_concurrency``,
    ``area_code_stock``...); ``faults`` also takes :meth:`Faults.parse
    <twilio_numbers_async.sandbox.Faults.parse>`'s string form, ``"drop_after_commit=0.1"``.
    On a module or class too; the mark closest to the test wins, key by key.

The fixtures are async: they need pytest-asyncio, and fail with a message that says what to
do when it is missing or inactive. Loading this plugin imports the package, but not the
sandbox nor aiohttp's server: those wait until a test uses a fixture.
"""

from __future__ import annotations

import inspect
import sys
from collections.abc import AsyncIterator, Callable, Mapping
from typing import TYPE_CHECKING, Any, Final, TypeVar, cast

import pytest

if TYPE_CHECKING:
    from .client import TwilioNumbersClient
    from .sandbox import Sandbox

__all__ = ["twilio_client", "twilio_sandbox"]

_MARKER: Final = "twilio_sandbox"
_F = TypeVar("_F", bound=Callable[..., Any])


def _async_fixture(function: _F) -> _F:
    """``pytest_asyncio.fixture`` where pytest-asyncio is installed, so that the fixtures work
    in its strict mode too; else a plain fixture, which ``_twilio_needs_asyncio`` stops with a
    clear message before pytest's own, vaguer one."""
    try:
        import pytest_asyncio  # noqa: PLC0415 - an optional dependency of the user's tests
    except ImportError:
        return cast("_F", pytest.fixture(function))
    # No loop_scope: the fixture then follows asyncio_default_fixture_loop_scope, as the
    # user's own fixtures do, and shares the test's loop in the usual configurations.
    return cast("_F", pytest_asyncio.fixture(function))


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{_MARKER}(**kwargs): keyword arguments for the twilio_sandbox fixture's Sandbox "
        "(seed=, faults=Faults(...) or 'drop_after_commit=0.1', max_concurrency=, "
        "area_code_stock=...)",
    )


def _asyncio_problem(request: pytest.FixtureRequest) -> str | None:
    """Why the async fixtures can't run for this test, or ``None`` when they can."""
    manager = request.config.pluginmanager
    plugin = sys.modules.get("pytest_asyncio.plugin")
    if plugin is None or not manager.is_registered(plugin):
        return (
            "twilio_sandbox and twilio_client are async fixtures and need pytest-asyncio: "
            "`pip install pytest-asyncio`, and set `asyncio_mode = auto` in your pytest "
            "configuration (or mark async tests with @pytest.mark.asyncio). If it is "
            "installed, check that it is not disabled (-p no:asyncio, "
            "PYTEST_DISABLE_PLUGIN_AUTOLOAD without -p asyncio)."
        )
    test = getattr(request.node, "obj", None)
    # As pytest-asyncio reads it: --asyncio-mode, else the ini option.
    mode = request.config.getoption("asyncio_mode", None) or request.config.getini("asyncio_mode")
    if (
        mode == "strict"
        and inspect.iscoroutinefunction(test)
        and request.node.get_closest_marker("asyncio") is None
    ):
        return (
            f"{request.node.name} is an async test that pytest-asyncio won't run in its strict "
            "mode: mark it @pytest.mark.asyncio, or set `asyncio_mode = auto` in your pytest "
            "configuration"
        )
    return None


@pytest.fixture
def _twilio_needs_asyncio(request: pytest.FixtureRequest) -> None:
    # A sync fixture that the async ones depend on: pytest sets it up first, so its message is
    # the one a user sees.
    problem = _asyncio_problem(request)
    if problem is not None:
        pytest.fail(problem, pytrace=False)


def _sandbox_kwargs(node: pytest.Item) -> dict[str, Any]:
    """The ``twilio_sandbox`` marks on ``node`` and its parents, the closest winning per key."""
    merged: dict[str, Any] = {}
    for mark in reversed(list(node.iter_markers(_MARKER))):
        if mark.args:
            pytest.fail(
                f"@pytest.mark.{_MARKER} takes keyword arguments only (seed=..., faults=...), "
                f"not {mark.args!r}",
                pytrace=False,
            )
        merged.update(mark.kwargs)
    return merged


def _make_sandbox(kwargs: Mapping[str, Any], where: str) -> Sandbox:
    from .sandbox import Faults, Sandbox  # noqa: PLC0415 - only for tests that use it

    options = dict(kwargs)
    try:
        if isinstance(options.get("faults"), str):
            options["faults"] = Faults.parse(options["faults"])
        return Sandbox(**options)
    except (TypeError, ValueError) as exc:
        problem = str(exc)
    # Outside the except block, so that the report is the message alone, not a chain.
    pytest.fail(
        f"{where}: @pytest.mark.{_MARKER} gives Sandbox({_shown(kwargs)}): {problem}",
        pytrace=False,
    )


def _shown(kwargs: Mapping[str, Any]) -> str:
    return ", ".join(f"{key}={value!r}" for key, value in kwargs.items())


@_async_fixture
async def twilio_sandbox(
    request: pytest.FixtureRequest, _twilio_needs_asyncio: None
) -> AsyncIterator[Sandbox]:
    """A running :class:`~twilio_numbers_async.sandbox.Sandbox` on ``127.0.0.1``, one per test.

    Configure it with ``@pytest.mark.twilio_sandbox(seed=..., faults=...)``; script faults for
    the next purchases with ``twilio_sandbox.script(Fault.drop_after_commit())``; check what
    happened in ``twilio_sandbox.purchases`` and ``twilio_sandbox.requests``.
    """
    sandbox = _make_sandbox(_sandbox_kwargs(request.node), request.node.nodeid)
    async with sandbox:
        yield sandbox


@_async_fixture
async def twilio_client(twilio_sandbox: Sandbox) -> AsyncIterator[TwilioNumbersClient]:
    """A :class:`~twilio_numbers_async.TwilioNumbersClient` for ``twilio_sandbox``'s account.

    Retries wait milliseconds rather than seconds (a ``Retry-After`` is still honoured), and
    there is no rate limit; it is closed after the test. For other settings, make one with
    ``twilio_sandbox.client(**kwargs)``, or override this fixture.
    """
    from .retry import RetryPolicy  # noqa: PLC0415 - only for tests that use it

    retry = RetryPolicy(max_attempts=5, initial_delay=0.001, max_delay=0.01, max_elapsed=10.0)
    async with twilio_sandbox.client(retry=retry, rate_limit=None) as client:
        yield client
