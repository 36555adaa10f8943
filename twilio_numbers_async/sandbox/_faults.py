"""Fault injection: what can go wrong between a client and Twilio, on purpose and reproducibly.

A :class:`Fault` is one thing that happens to one request (a 429, a 5xx, a dropped
connection, a late answer); :class:`Faults` gives each kind a probability per request; the
:class:`FaultPicker` decides, request by request, from ``random.Random(seed)`` or from a script
of queued faults. The faults that matter most are the ones *after* the purchase committed:
the client can't tell those from a failure, and must not buy the number again.
"""

from __future__ import annotations

import collections
import math
import random
from collections.abc import Container, Iterable
from typing import Any, Final

import attrs

__all__ = [
    "AFTER_COMMIT",
    "BEFORE_COMMIT",
    "Fault",
    "FaultPicker",
    "Faults",
]

#: Faults answered instead of the purchase: nothing is bought.
BEFORE_COMMIT: Final = frozenset({"rate_limited", "server_error", "drop_before_commit"})
#: Faults that hit the answer after the purchase was processed (and, if it succeeded, bought).
AFTER_COMMIT: Final = frozenset({"error_after_commit", "drop_after_commit", "slow_after_commit"})
_NAMES: Final = BEFORE_COMMIT | AFTER_COMMIT

# Random 5xx faults pick among these: 500 and 504 carry Twilio's JSON body, 502 and 503 a
# load balancer's HTML page, so both of a client's error paths get exercised.
_RANDOM_STATUSES: Final = (500, 502, 503, 504)

# The order in which one uniform draw is mapped onto the kinds of fault. Fixed, so that a seed
# gives the same faults on every run; the first two also apply to the GET list.
_KINDS: Final = (
    "rate_limited",
    "server_error",
    "error_after_commit",
    "drop_before_commit",
    "drop_after_commit",
    "slow_after_commit",
)
_LIST_KINDS: Final = frozenset({"rate_limited", "server_error"})
# Floating-point slack for "the probabilities sum to at most 1".
_SUM_SLACK = 1e-9


def _check_status(_: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if value is not None and not (isinstance(value, int) and 500 <= value <= 599):
        raise ValueError(f"{attribute.name} must be a 5xx status, not {value!r}")


def _check_seconds(_: object, attribute: attrs.Attribute[Any], value: float | None) -> None:
    if value is not None:
        _non_negative(attribute.name, value)


def _check_retry_after(_: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if value is None:
        return
    if isinstance(value, str):
        if not value.strip() or any(c in value for c in "\r\n\x00"):
            raise ValueError(f"{attribute.name} must be seconds or an HTTP-date, not {value!r}")
        return
    _non_negative(attribute.name, value)


def _non_negative(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{name} must be a number of seconds, not {value!r}")
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be finite and at least 0, not {value!r}")
    return float(value)


def _check_name(_: object, attribute: attrs.Attribute[Any], value: str) -> None:
    if value not in _NAMES:
        raise ValueError(f"{attribute.name} must be one of {sorted(_NAMES)}, not {value!r}")


@attrs.frozen(kw_only=True)
class Fault:
    """One fault, applied to one request. Build it with a classmethod: ``Fault.rate_limited()``.

    ``name`` says which fault it is (``"drop_after_commit"``...); ``status`` is the 5xx of the
    error faults, ``retry_after`` the ``Retry-After`` of a 429, ``seconds`` the delay of
    ``slow_after_commit``.
    """

    name: str = attrs.field(validator=_check_name)
    status: int | None = attrs.field(default=None, validator=_check_status)
    retry_after: float | str | None = attrs.field(default=None, validator=_check_retry_after)
    seconds: float | None = attrs.field(default=None, validator=_check_seconds)

    @property
    def commits(self) -> bool:
        """Whether the purchase is processed (and, if valid, bought) despite this fault."""
        return self.name in AFTER_COMMIT

    @classmethod
    def rate_limited(cls, retry_after: float | str | None = None) -> Fault:
        """429 with code 20429, and ``Retry-After`` if given (seconds, or an HTTP-date string
        sent verbatim). Nothing is bought."""
        return cls(name="rate_limited", retry_after=retry_after)

    @classmethod
    def server_error(cls, status: int = 500) -> Fault:
        """A 5xx instead of the purchase: nothing is bought. 502 and 503 come as HTML."""
        return cls(name="server_error", status=status)

    @classmethod
    def error_after_commit(cls, status: int = 500) -> Fault:
        """The number is bought, then a 5xx is answered: the "unknown outcome" case."""
        return cls(name="error_after_commit", status=status)

    @classmethod
    def drop_before_commit(cls) -> Fault:
        """The connection is closed without an answer; nothing is bought."""
        return cls(name="drop_before_commit")

    @classmethod
    def drop_after_commit(cls) -> Fault:
        """The number is bought, then the connection is closed without an answer."""
        return cls(name="drop_after_commit")

    @classmethod
    def slow_after_commit(cls, seconds: float) -> Fault:
        """The number is bought, and the 201 is sent only after ``seconds``."""
        return cls(name="slow_after_commit", seconds=seconds)


def _probability(_: object, attribute: attrs.Attribute[Any], value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{attribute.name} must be a probability, not {value!r}")
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{attribute.name} must be a probability in [0, 1], not {value!r}")


def _to_latency(value: object) -> object:
    # A list from JSON or a CLI reads as the range it means.
    return tuple(value) if isinstance(value, list) else value


def _check_latency(_: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if isinstance(value, tuple):
        if len(value) != 2:
            raise ValueError(f"{attribute.name} must be seconds or a (low, high) range")
        low, high = (_non_negative(attribute.name, bound) for bound in value)
        if low > high:
            raise ValueError(f"{attribute.name} range {value!r} has low > high")
        return
    _non_negative(attribute.name, value)


@attrs.frozen(kw_only=True)
class Faults:
    """How often each fault happens: a probability per request, all 0 (off) by default.

    ``latency`` (seconds, or a ``(low, high)`` uniform range) is added to every request.
    ``rate_limited`` and ``server_error`` hit POST purchases and the GET list alike, so that
    reconciling is tested under faults too; the ``*_after_commit`` and ``drop_before_commit``
    faults hit POST purchases only. ``retry_after`` is sent with random 429s;
    ``slow_after_commit`` waits ``slow_seconds`` before answering. The probabilities must sum
    to at most 1: one draw per request picks at most one fault.
    """

    latency: float | tuple[float, float] = attrs.field(
        default=0.0, converter=_to_latency, validator=_check_latency
    )
    rate_limited: float = attrs.field(default=0.0, validator=_probability)
    retry_after: float | str | None = attrs.field(default=None, validator=_check_retry_after)
    server_error: float = attrs.field(default=0.0, validator=_probability)
    error_after_commit: float = attrs.field(default=0.0, validator=_probability)
    drop_before_commit: float = attrs.field(default=0.0, validator=_probability)
    drop_after_commit: float = attrs.field(default=0.0, validator=_probability)
    slow_after_commit: float = attrs.field(default=0.0, validator=_probability)
    slow_seconds: float = attrs.field(default=5.0, validator=_check_seconds)

    def __attrs_post_init__(self) -> None:
        total = sum(getattr(self, kind) for kind in _KINDS)
        if total > 1.0 + _SUM_SLACK:
            raise ValueError(f"the fault probabilities sum to {total:g}; at most 1 is possible")

    @property
    def active(self) -> bool:
        """Whether any fault can happen, latency aside."""
        return any(getattr(self, kind) for kind in _KINDS)

    @classmethod
    def demo(cls) -> Faults:
        """A few percent of every kind and a little latency: a lively but finishing demo.

        ``slow_seconds`` is 1.0: give the client a timeout below it to see timeouts.
        """
        return cls(
            latency=(0.001, 0.005),
            rate_limited=0.04,
            server_error=0.03,
            error_after_commit=0.02,
            drop_before_commit=0.02,
            drop_after_commit=0.02,
            slow_after_commit=0.01,
            slow_seconds=1.0,
        )

    @classmethod
    def parse(cls, text: str) -> Faults:
        """Faults from a CLI string: ``"latency=0.005,rate_limited=0.05,drop_after_commit=0.01"``.

        ``latency`` takes seconds or a ``low:high`` range; ``retry_after`` takes seconds (an
        HTTP-date has commas: pass it to the constructor instead). ``""`` and ``"none"`` are
        no faults, ``"demo"`` is :meth:`demo`. A bad key or value raises ``ValueError`` naming
        it.
        """
        text = text.strip()
        if text.lower() in ("", "none"):
            return cls()
        if text.lower() == "demo":
            return cls.demo()
        values: dict[str, object] = {}
        for item in text.split(","):
            key, value = _split_item(item.strip(), text)
            if key in values:
                raise ValueError(f"fault {key!r} is given twice in {text!r}")
            values[key] = _parse_value(key, value)
        return cls(**values)  # type: ignore[arg-type]


def _split_item(item: str, text: str) -> tuple[str, str]:
    key, equals, value = item.partition("=")
    key, value = key.strip(), value.strip()
    if not equals or not key or not value:
        raise ValueError(f"expected key=value, got {item!r} in {text!r}")
    if key not in _FIELD_NAMES:
        raise ValueError(f"unknown fault {key!r} in {text!r}: expected one of {_FIELD_NAMES}")
    return key, value


def _parse_value(key: str, value: str) -> object:
    if key == "latency" and ":" in value:
        low, _, high = value.partition(":")
        return (_number(key, low), _number(key, high))
    return _number(key, value)


def _number(key: str, value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise ValueError(f"bad value for {key!r}: {value!r} is not a number") from None
    if not math.isfinite(number):
        raise ValueError(f"bad value for {key!r}: {value!r} is not a finite number")
    return number


_FIELD_NAMES: Final = tuple(field.name for field in attrs.fields(Faults))


class FaultPicker:
    """Decides each request's fault: a scripted one first (FIFO), else a seeded random draw.

    Random draws come from ``random.Random(seed)`` (latency from a second stream), one draw per
    request that can be faulted, so the same seed and the same sequence of requests give the
    same faults. Replacing :attr:`faults` keeps the streams where they are.
    """

    def __init__(self, faults: Faults | None, seed: int) -> None:
        self.faults = faults or Faults()
        self._rng = random.Random(f"{seed}:faults")  # noqa: S311 - reproducible, not secret
        self._latency_rng = random.Random(f"{seed}:latency")  # noqa: S311
        self._script: collections.deque[Fault] = collections.deque()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(faults={self.faults!r}, scripted={len(self._script)})"

    def script(self, faults: Iterable[Fault]) -> None:
        """Queue faults for the next POST purchases, one each, in order."""
        for fault in faults:
            if not isinstance(fault, Fault):
                raise TypeError(f"expected a Fault, got {type(fault).__name__}")
            self._script.append(fault)

    @property
    def scripted(self) -> int:
        """How many scripted faults are still queued."""
        return len(self._script)

    def latency(self) -> float:
        """The delay to add to the next request, in seconds."""
        latency = self.faults.latency
        if isinstance(latency, tuple):
            return self._latency_rng.uniform(*latency)
        return latency

    def for_purchase(self) -> Fault | None:
        """The fault for the next POST purchase, if any."""
        if self._script:
            return self._script.popleft()
        return self._draw(_KINDS)

    def for_list(self) -> Fault | None:
        """The fault for the next GET list, if any: a 429 or a 5xx at most."""
        return self._draw(_LIST_KINDS)

    def _draw(self, kinds: Container[str]) -> Fault | None:
        faults = self.faults
        if not faults.active:
            return None
        draw = self._rng.random()
        bound = 0.0
        for kind in _KINDS:
            bound += getattr(faults, kind)
            if draw < bound:
                return self._build(kind) if kind in kinds else None
        return None

    def _build(self, kind: str) -> Fault:
        faults = self.faults
        if kind == "rate_limited":
            return Fault.rate_limited(faults.retry_after)
        if kind in ("server_error", "error_after_commit"):
            return Fault(name=kind, status=self._rng.choice(_RANDOM_STATUSES))
        if kind == "slow_after_commit":
            return Fault.slow_after_commit(faults.slow_seconds)
        return Fault(name=kind)
