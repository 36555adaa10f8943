"""Seeded identifiers: SIDs, secrets and request ids that repeat exactly for a given seed.

Each kind of identifier draws from its own stream (``Random(f"{seed}:{stream}")``), so that
adding, say, one more request does not change the SID the next purchase gets: a test that
seeds the sandbox can predict every value. These are fakes for a sandbox, not secrets.
"""

from __future__ import annotations

import random

__all__ = ["IdSource"]


class IdSource:
    """One seeded stream of 32-hex-digit identifiers."""

    def __init__(self, seed: int, stream: str) -> None:
        # str seeds hash with SHA-512: the same on every run and platform, unlike hash().
        self._rng = random.Random(f"{seed}:{stream}")  # noqa: S311 - deterministic fakes

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"

    def hex32(self) -> str:
        """32 lowercase hexadecimal digits."""
        return f"{self._rng.getrandbits(128):032x}"

    def sid(self, prefix: str) -> str:
        """A SID: ``prefix`` (``PN``, ``AC``, ``RQ``...) and 32 hexadecimal digits."""
        return prefix + self.hex32()
