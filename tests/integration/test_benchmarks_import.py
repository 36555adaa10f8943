"""Every benchmark module imports against today's package: nothing else runs them in CI, and
one importing a name the package no longer has broke ``python -m benchmarks.run`` silently."""

from __future__ import annotations

import importlib
import pkgutil

import pytest

import benchmarks


@pytest.mark.parametrize(
    "name", sorted(module.name for module in pkgutil.iter_modules(benchmarks.__path__))
)
def test_the_benchmark_module_imports(name: str) -> None:
    importlib.import_module(f"benchmarks.{name}")
