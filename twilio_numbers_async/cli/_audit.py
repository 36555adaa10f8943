"""What the demo buys, and the audit that holds its outcomes against what the sandbox sold.

Every request carries a unique ``friendly_name`` tag (``demo-000123``); the sandbox echoes it into
each number it sells and keeps a record of every sale, so the audit can hold the client's
outcomes against what was really bought, tag by tag:

- a tag sold more than once is a **double purchase** (the one thing this library exists to
  prevent);
- a sale whose tag's outcome says "failed" is an **untracked purchase**: money spent that the
  caller believes was not;
- a "bought" outcome whose number the sandbox never sold for that tag is a **phantom purchase**.

An outcome "unknown" makes no claim either way, so a sale behind it is fine: that is what
"unknown" tells the operator to go and check.

Pure: no I/O, and no sandbox (the parser reads :data:`MAX_COUNT` for every command).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Final

import attrs

from twilio_numbers_async.bulk import OutcomeStatus, PurchaseOutcome
from twilio_numbers_async.models import MobileNumberPurchase, NumberPurchase, PurchaseRequest

if TYPE_CHECKING:
    from twilio_numbers_async.sandbox import PurchaseRecord

__all__ = [
    "AREA_CODES",
    "MAX_COUNT",
    "Audit",
    "Claim",
    "audit",
    "demo_requests",
    "tag",
]

#: The area codes the demo buys "any number in". Not 500: the sandbox (like Twilio's test
#: credentials) answers it with +15005550006, a number it sells any number of times.
AREA_CODES: Final = ("415", "212", "312")
#: The largest demo: the mobile numbers and tags run out of digits beyond it.
MAX_COUNT: Final = 100_000
#: The mix, repeated: given numbers, area codes, mobile numbers, and two that fail by design
#: (area code 533 has no numbers: 21452; +15005550000 is never available: 21422).
_MIX: Final = ("number",) * 8 + ("area",) * 6 + ("mobile",) * 4 + ("no_stock", "unavailable")
_NO_STOCK_AREA_CODE: Final = "533"
_UNAVAILABLE_NUMBER: Final = "+15005550000"
# Given numbers come from +1 415 6xx xxxx: the sandbox's 415 stock is +1 415 555 xxxx, so an
# area-code purchase never takes a number the demo asks for by name.
_GIVEN_FIRST: Final = 6_000_000


def tag(index: int) -> str:
    """The ``friendly_name`` of the demo's request ``index``."""
    return f"demo-{index:06d}"


def demo_requests(count: int) -> Iterator[PurchaseRequest]:
    """The demo's ``count`` requests: the same mix every time, each tagged with :func:`tag`."""
    if not 1 <= count <= MAX_COUNT:
        raise ValueError(f"the demo buys from 1 to {MAX_COUNT} numbers, not {count}")
    for index in range(count):
        kind, name = _MIX[index % len(_MIX)], tag(index)
        if kind == "number":
            yield NumberPurchase(
                phone_number=f"+1415{_GIVEN_FIRST + index:07d}", friendly_name=name
            )
        elif kind == "area":
            area_code = AREA_CODES[index % len(AREA_CODES)]
            yield NumberPurchase(area_code=area_code, friendly_name=name)
        elif kind == "mobile":
            yield MobileNumberPurchase(
                phone_number=f"+447700{900_000 + index:06d}", friendly_name=name
            )
        elif kind == "no_stock":
            yield NumberPurchase(area_code=_NO_STOCK_AREA_CODE, friendly_name=name)
        else:
            yield NumberPurchase(phone_number=_UNAVAILABLE_NUMBER, friendly_name=name)


# --- the audit ------------------------------------------------------------------------------


@attrs.frozen
class Claim:
    """What the caller believes about one tagged request: the part of an outcome the audit
    needs, small enough to keep for every request of a large demo."""

    tag: str
    status: OutcomeStatus
    #: The number bought, for a "bought" outcome.
    sid: str | None = None
    phone_number: str | None = None

    @classmethod
    def of(cls, outcome: PurchaseOutcome) -> Claim:
        """The claim an outcome makes; its tag is its request's ``friendly_name``."""
        tag = outcome.request.friendly_name or ""
        if outcome.ok:
            number = outcome.number
            return cls(tag, outcome.status, number.sid, number.phone_number)
        return cls(tag, outcome.status)


@attrs.frozen
class Audit:
    """What the audit found, as sorted tags; all three empty means it passed."""

    #: Tags the sandbox sold more than once.
    double_purchases: tuple[str, ...] = ()
    #: Tags the sandbox sold whose outcome is "failed" (or that no request has).
    untracked_purchases: tuple[str, ...] = ()
    #: Tags whose outcome says "bought" a number the sandbox never sold for that tag.
    phantom_purchases: tuple[str, ...] = ()

    @property
    def passed(self) -> bool:
        """Whether nothing was bought twice, unknowingly, or not at all."""
        return not (self.double_purchases or self.untracked_purchases or self.phantom_purchases)


def _matches(claim: Claim, purchase: PurchaseRecord) -> bool:
    return (purchase.sid, purchase.phone_number) == (claim.sid, claim.phone_number)


def audit(claims: Iterable[Claim], purchases: Iterable[PurchaseRecord]) -> Audit:
    """Hold the caller's claims against the sandbox's record of what it sold. Pure."""
    sold: defaultdict[str, list[PurchaseRecord]] = defaultdict(list)
    for purchase in purchases:
        sold[purchase.friendly_name].append(purchase)
    by_tag = {claim.tag: claim for claim in claims}
    untracked = [
        name
        for name in sold
        if (claim := by_tag.get(name)) is None or claim.status is OutcomeStatus.FAILED
    ]
    phantom = [
        claim.tag
        for claim in by_tag.values()
        if claim.status is OutcomeStatus.BOUGHT
        and not any(_matches(claim, p) for p in sold.get(claim.tag, ()))
    ]
    return Audit(
        double_purchases=tuple(sorted(name for name, sales in sold.items() if len(sales) > 1)),
        untracked_purchases=tuple(sorted(untracked)),
        phantom_purchases=tuple(sorted(phantom)),
    )
