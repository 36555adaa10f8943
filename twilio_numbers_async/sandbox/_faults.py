"""Fault injection: what can go wrong between a client and Twilio, on purpose and reproducibly.

A :class:`Fault` is one thing that happens to one request (a 429, a 5xx, a dropped
connection, a late answer); :class:`Faults` gives each kind a probability per request; the
:class:`FaultPicker` decides, request by request, from a script of queued faults or from the
request's :class:`Fate`, a function of the seed and of the request itself. The faults that
matter most are the ones *after* the purchase (or release) committed: the client can't tell
those from a failure, and must not buy the number again.
"""

from __future__ import annotations

import collections
import hashlib
import math
from collections.abc import Iterable
from typing import Any, Final, Literal

import attrs

__all__ = [
    "AFTER_COMMIT",
    "BEFORE_COMMIT",
    "ENDPOINTS",
    "Endpoint",
    "Fate",
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
# gives the same faults on every run; the first two also apply to reads.
_KINDS: Final = (
    "rate_limited",
    "server_error",
    "error_after_commit",
    "drop_before_commit",
    "drop_after_commit",
    "slow_after_commit",
)
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

    Which faults hit which endpoint:

    - ``latency``: every request, a 401 or a 404 too.
    - Writes, the POST purchases (``IncomingPhoneNumbers.json``, ``.../Mobile.json``) and the
      ``DELETE`` of a number (a release): every kind. ``rate_limited``, ``server_error`` and
      ``drop_before_commit`` come instead of the write (nothing is bought or released);
      ``error_after_commit``, ``drop_after_commit`` and ``slow_after_commit`` hit the answer
      after the write was made.
    - Reads, the GET list, the ``GET`` of a number and the ``AvailablePhoneNumbers`` searches:
      ``rate_limited`` and ``server_error`` only (the other kinds' share passes unharmed), so
      that look-ups are tested under faults too.

    ``latency`` is seconds, or a ``(low, high)`` uniform range. ``retry_after`` is sent with
    random 429s; ``slow_after_commit`` waits ``slow_seconds`` before answering. The
    probabilities must sum to at most 1: each request's one draw picks at most one fault, and
    that draw is a function of the seed and the request itself (see :class:`FaultPicker`), so
    the same requests meet the same faults in any order.
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

        ``slow_seconds`` is 1.0: give the client a timeout below it to see timeouts. The random
        429s carry a short ``Retry-After``, as a rate limit's do: a 429 without one says the
        account's concurrency is full, which the sandbox's ``max_concurrency`` shows for real.
        """
        return cls(
            latency=(0.001, 0.005),
            rate_limited=0.04,
            retry_after=0.02,
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


#: The endpoints a fault can be scripted on (:meth:`FaultPicker.script`).
ENDPOINTS: Final = ("purchase", "release", "fetch", "list", "search")
Endpoint = Literal["purchase", "release", "fetch", "list", "search"]
# Writes meet every kind of random fault; reads only a 429 or a 5xx, so that a client's
# look-ups and searches are tested under faults without a read ever "committing" anything.
_WRITES: Final = frozenset({"purchase", "release"})
_READ_KINDS: Final = frozenset({"rate_limited", "server_error"})
_UNIT: Final = 2.0**-53  # a 53-bit integer times this is a float uniform in [0, 1)


@attrs.frozen
class Fate:
    """What chance holds for one request: three independent draws, uniform in [0, 1).

    ``fault`` picks the kind of random fault (if any), ``status`` the 5xx of an error fault,
    ``latency`` the delay within a ``(low, high)`` range.
    """

    fault: float
    status: float
    latency: float


class FaultPicker:
    """Decides each request's fate: its latency and its fault, scripted or random.

    A random fate is a function of the seed and of the request itself (method, path, query,
    form) and of how many identical requests came before it, never of the order in which
    different requests arrive: concurrent clients meet the same faults whatever the
    interleaving, and a retried request (identical, one more time) draws afresh. Scripted
    faults come first, FIFO, one queue per endpoint. Replacing :attr:`faults` changes the
    probabilities that fates are read against, not the fates.
    """

    def __init__(self, faults: Faults | None, seed: int) -> None:
        self.faults = faults or Faults()
        self._seed = f"{seed}:fates\x00".encode()
        self._seen: dict[bytes, int] = {}
        self._scripts: dict[str, collections.deque[Fault]] = {
            endpoint: collections.deque() for endpoint in ENDPOINTS
        }

    def __repr__(self) -> str:
        return f"{type(self).__name__}(faults={self.faults!r}, scripted={self.scripted})"

    def script(self, faults: Iterable[Fault], endpoint: Endpoint = "purchase") -> None:
        """Queue faults for the next requests to ``endpoint``, one each, in order."""
        if endpoint not in self._scripts:
            raise ValueError(f"faults are scripted on one of {ENDPOINTS}, not {endpoint!r}")
        queued = list(faults)
        for fault in queued:
            if not isinstance(fault, Fault):
                raise TypeError(f"expected a Fault, got {type(fault).__name__}")
        self._scripts[endpoint].extend(queued)

    @property
    def scripted(self) -> int:
        """How many scripted faults are still queued, on every endpoint."""
        return sum(len(queue) for queue in self._scripts.values())

    def fate(self, method: str, path: str, query: Iterable[tuple[str, str]], body: bytes) -> Fate:
        """The fate of a request that just arrived; counts it among its identical ones."""
        # Fields sorted: the same form or query in another order is the same request. The
        # form's fields are compared as sent (not decoded: parsing would cost more than the
        # rest of the fate), which is what one client sends for one request.
        head = "\x00".join((method, path, repr(sorted(query))))
        form = b"&".join(sorted(body.split(b"&")))
        identity = head.encode("utf-8", "surrogatepass") + b"\x00" + form
        key = hashlib.blake2b(self._seed + identity, digest_size=16).digest()
        occurrence = self._seen.get(key, 0)
        self._seen[key] = occurrence + 1
        digest = hashlib.blake2b(key + occurrence.to_bytes(8, "big"), digest_size=24).digest()
        fault, status, latency = (
            (int.from_bytes(digest[i : i + 8], "big") >> 11) * _UNIT for i in (0, 8, 16)
        )
        return Fate(fault=fault, status=status, latency=latency)

    def latency(self, fate: Fate) -> float:
        """The delay to add to the request of ``fate``, in seconds."""
        latency = self.faults.latency
        if isinstance(latency, tuple):
            low, high = latency
            return low + (high - low) * fate.latency
        return latency

    def pick(self, endpoint: Endpoint, fate: Fate) -> Fault | None:
        """The fault for a request to ``endpoint``: the next scripted one, else its fate's."""
        queue = self._scripts[endpoint]
        if queue:
            return queue.popleft()
        faults = self.faults
        if not faults.active:
            return None
        bound = 0.0
        for kind in _KINDS:
            bound += getattr(faults, kind)
            if fate.fault < bound:
                if endpoint in _WRITES or kind in _READ_KINDS:
                    return self._build(kind, fate)
                return None
        return None

    def _build(self, kind: str, fate: Fate) -> Fault:
        faults = self.faults
        if kind == "rate_limited":
            return Fault.rate_limited(faults.retry_after)
        if kind in ("server_error", "error_after_commit"):
            status = _RANDOM_STATUSES[int(fate.status * len(_RANDOM_STATUSES))]
            return Fault(name=kind, status=status)
        if kind == "slow_after_commit":
            return Fault.slow_after_commit(faults.slow_seconds)
        return Fault(name=kind)
