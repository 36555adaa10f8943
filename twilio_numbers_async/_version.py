"""The installed distribution's version, for ``__version__`` and the User-Agent."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

__all__ = ["VERSION"]

try:
    VERSION = version("twilio-numbers-async")
except PackageNotFoundError:  # imported from a source tree that was never installed
    VERSION = "0+unknown"
