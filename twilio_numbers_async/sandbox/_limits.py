"""The account's limits, as Twilio enforces them: requests in flight, and requests per second.

Beyond ``max_concurrency`` requests in flight, a request is answered 429 / 20429 at once and
without ``Retry-After``, as Twilio answers too many concurrent requests. Beyond
``rate_limit`` requests per second (a token bucket holding one second's worth, refilled on the
server's clock), it is answered 429 / 20429 with a ``Retry-After`` saying when the next token
comes. Refused requests take no token. Both limits can change at any time.
"""

from __future__ import annotations

import math
from typing import Final

from ._errors import ApiError, rate_limited

__all__ = ["Limits", "check_max_concurrency", "check_rate_limit"]

# Retry-After is rounded up to the millisecond: never earlier than the token, never "0".
_PER_SECOND: Final = 1000
# Refilling in many small steps adds up float error: a token 1e-12 short is a whole token.
_SLACK: Final = 1e-9


def check_max_concurrency(value: object) -> int | None:
    """``value`` if it is ``None`` or an int of at least 1; ``TypeError``/``ValueError``."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"max_concurrency must be an int or None, not {type(value).__name__}")
    if value < 1:
        raise ValueError(f"max_concurrency must be at least 1, not {value}")
    return value


def check_rate_limit(value: object) -> float | None:
    """``value`` as requests per second if it is ``None`` or a positive finite number."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"rate_limit must be requests per second or None, not {value!r}")
    if not math.isfinite(value) or value <= 0:
        raise ValueError(
            f"rate_limit must be a positive number of requests per second, not {value}"
        )
    return float(value)


class Limits:
    """Counts the requests in flight and the tokens left, and refuses what is beyond either.

    Times are the server's clock (the event loop's), passed in by the caller.
    """

    def __init__(self, *, max_concurrency: int | None, rate_limit: float | None) -> None:
        self.max_concurrency = max_concurrency
        self.rate_limit = rate_limit
        #: Requests counted in and not yet out.
        self.in_flight = 0
        self._tokens = self._capacity
        self._updated: float | None = None

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(max_concurrency={self.max_concurrency}, "
            f"rate_limit={self.rate_limit}, in_flight={self.in_flight})"
        )

    @property
    def _capacity(self) -> float:
        # One second's worth, and room for at least one request however low the rate.
        return max(1.0, self.rate_limit or 0.0)

    def arrive(self, now: float) -> ApiError | None:
        """Count a request in; the 429 to answer it with if it is beyond a limit.

        Count it out with :meth:`leave` whatever the answer.
        """
        self.in_flight += 1
        if self.max_concurrency is not None and self.in_flight > self.max_concurrency:
            return rate_limited()
        if self.rate_limit is not None:
            self._refill(now)
            if self._tokens < 1.0 - _SLACK:
                wait = (1.0 - self._tokens) / self.rate_limit
                return rate_limited(math.ceil(wait * _PER_SECOND - _SLACK) / _PER_SECOND)
            self._tokens = max(0.0, self._tokens - 1.0)
        return None

    def leave(self) -> None:
        """Count out a request counted in by :meth:`arrive`."""
        self.in_flight -= 1

    def change(
        self, *, max_concurrency: int | None, rate_limit: float | None, now: float | None
    ) -> None:
        """Set both limits from now on; requests already in flight go on.

        ``now`` is ``None`` when no clock runs (the sandbox is stopped): the bucket's clock
        then starts again at the next request.
        """
        had_rate = self.rate_limit is not None
        if had_rate and now is not None:
            self._refill(now)  # the tokens earned so far, at the old rate
        self.max_concurrency = max_concurrency
        self.rate_limit = rate_limit
        self._tokens = min(self._tokens, self._capacity) if had_rate else self._capacity
        self._updated = now

    def _refill(self, now: float) -> None:
        if self._updated is not None and self.rate_limit is not None:
            earned = (now - self._updated) * self.rate_limit
            self._tokens = min(self._capacity, self._tokens + earned)
        self._updated = now
