"""The version: written here once, read by the build (``[tool.hatch.version]``) and the code."""

from __future__ import annotations

__all__ = ["VERSION"]

VERSION = "0.1.0"
