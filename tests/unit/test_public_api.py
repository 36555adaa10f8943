"""The public surface: what ``__all__`` promises is exactly what is there, in order."""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
import subprocess
import sys

import pytest

import twilio_numbers_async

MODULES = sorted(
    info.name
    for info in pkgutil.walk_packages(twilio_numbers_async.__path__, prefix="twilio_numbers_async.")
    # Running __main__ would run the CLI.
    if info.name != "twilio_numbers_async.__main__"
)


def test_the_package_exports_its_public_modules_names_and_nothing_else() -> None:
    homes = twilio_numbers_async._PUBLIC_MODULES
    expected = {
        name
        for home in homes
        for name in importlib.import_module(f"twilio_numbers_async.{home}").__all__
    }
    assert set(twilio_numbers_async.__all__) == expected | {"__version__"}
    assert len(expected) == sum(
        len(importlib.import_module(f"twilio_numbers_async.{home}").__all__) for home in homes
    ), "no name is public in two modules"
    for name in expected:
        assert getattr(twilio_numbers_async, name) is not None, name
    assert set(dir(twilio_numbers_async)) >= expected


def test_type_checkers_see_the_modules_the_package_reads_at_run_time() -> None:
    # Type checkers read the star imports under TYPE_CHECKING; the run time, _PUBLIC_MODULES.
    tree = ast.parse(inspect.getsource(twilio_numbers_async))
    block = next(
        node
        for node in tree.body
        if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING"
    )
    starred = {
        (node.module or "")
        for node in block.body
        if isinstance(node, ast.ImportFrom) and [a.name for a in node.names] == ["*"]
    }
    assert starred == set(twilio_numbers_async._PUBLIC_MODULES)


def test_an_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        twilio_numbers_async.Nope  # noqa: B018


def test_the_design_contract_names_exist() -> None:
    contract = [
        "TwilioNumbersClient",
        "NumberPurchase",
        "MobileNumberPurchase",
        "IncomingPhoneNumber",
        "Capabilities",
        "AddressRequirement",
        "EmergencyStatus",
        "EmergencyAddressStatus",
        "VoiceReceiveMode",
        "HttpMethod",
        "RetryPolicy",
        "TokenBucket",
        "PurchaseOutcome",
        "TwilioNumbersError",
        "RequestValidationError",
        "TwilioApiError",
        "AuthenticationError",
        "RateLimitedError",
        "TransportError",
        "ResponseParseError",
        "PurchaseOutcomeUnknownError",
    ]
    missing = [name for name in contract if name not in twilio_numbers_async.__all__]
    assert missing == []
    from twilio_numbers_async.sandbox import Sandbox

    assert Sandbox.__name__ == "Sandbox"


@pytest.mark.parametrize("name", MODULES)
def test_every_module_has_a_sorted_all_of_what_it_defines(name: str) -> None:
    module = importlib.import_module(name)
    exported = getattr(module, "__all__", None)
    assert exported is not None, f"{name} has no __all__"
    assert list(exported) == sorted(exported, key=_isort_style), f"{name}.__all__ is not sorted"
    assert len(set(exported)) == len(exported), f"{name}.__all__ repeats a name"
    missing = [item for item in exported if not hasattr(module, item)]
    assert missing == [], f"{name}.__all__ names what it lacks: {missing}"


def _isort_style(name: str) -> tuple[int, str]:
    # The order ruff's RUF022 keeps: CONSTANTS, then Classes, then functions and the rest.
    if name.isupper():
        return 0, name
    return (1 if name[:1].isupper() else 2), name


def test_loading_the_pytest_plugin_imports_nothing_heavy() -> None:
    """Every test run of a project with the library installed loads the plugin."""
    code = (
        "import sys; import twilio_numbers_async.pytest_plugin; "
        "heavy = [m for m in ('aiohttp', 'cattrs', 'tenacity') if m in sys.modules]; "
        "print(heavy); sys.exit(1 if heavy else 0)"
    )
    result = subprocess.run(  # noqa: S603 - our own interpreter, our own code
        [sys.executable, "-c", code], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_core_imports_no_extra() -> None:
    """Importing the library must not need rich (cli) or redis (redis)."""
    code = (
        "import sys; import twilio_numbers_async, twilio_numbers_async.sandbox; "
        "bad = [m for m in ('rich', 'redis', 'twilio_numbers_async.cli') if m in sys.modules]; "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    result = subprocess.run(  # noqa: S603 - our own interpreter, our own code
        [sys.executable, "-c", code], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
