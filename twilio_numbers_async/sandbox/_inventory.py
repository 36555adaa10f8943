"""Numbers for sale, who owns what, and Twilio's test-credential magic numbers.

The rules, as Twilio's: any valid E.164 number is for sale exactly once across all accounts
(again → 21422); an area code sells from a stock of ``area_code_stock`` numbers,
``+1{area}555xxxx``, in a seeded order, skipping numbers already bought by ``PhoneNumber``
(exhausted → 21452). Twilio's test credentials' magic values work too: ``+15005550006`` always
buys, ``+15005550000`` is not available (21422), ``+15005550001`` is invalid (21421), area code
``533`` has no numbers (21452) and ``500`` buys ``+15005550006``.

``+15005550006`` is never *owned* exclusively: like Twilio's test credentials, it can be bought
any number of times, by any account. Each purchase is recorded and creates a resource of its
own (its own ``PN`` SID) on the buyer's account, so that a client that lost the answer can
still find it with the GET list; :meth:`Inventory.owned` shows the latest one.

Every operation is O(1) (amortised, for the area-code stock), so bulk runs stay fast.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Container
from typing import Any, Final

from ._errors import ApiError
from ._form import ValidForm

__all__ = [
    "Holdings",
    "Inventory",
]

_MAGIC_NUMBER: Final = "+15005550006"
_MAGIC_UNAVAILABLE: Final = "+15005550000"
_MAGIC_INVALID: Final = "+15005550001"
_MAGIC_AREA_CODE: Final = "500"
_EMPTY_AREA_CODE: Final = "533"

# Stock numbers are +1 {area} {first + k}, seven digits: k can reach 9_999_999 - first.
_FIRST_SUBSCRIBER: Final = 5_550_000
_MAX_STOCK: Final = 10_000_000 - _FIRST_SUBSCRIBER

Resource = dict[str, Any]


class _AreaStock:
    """The numbers for sale in one area code, each handed out once, in a seeded order.

    The order is the permutation ``k → (offset + step·k) mod size`` with ``step`` coprime to
    ``size``: it visits every number once, costs O(1) per number and never builds the list.
    """

    __slots__ = ("_area", "_next", "_offset", "_size", "_step")

    def __init__(self, area: str, size: int, seed: int) -> None:
        rng = random.Random(f"{seed}:stock:{area}")  # noqa: S311 - a reproducible order
        self._area = area
        self._size = size
        self._next = 0
        self._offset = rng.randrange(size) if size else 0
        self._step = 1
        if size > 2:
            self._step = rng.randrange(1, size)
            while math.gcd(self._step, size) != 1:
                self._step = rng.randrange(1, size)

    def next_unsold(self, sold: Container[str]) -> str | None:
        """The next number in the stock that is not in ``sold``, or ``None`` when none is left."""
        while self._next < self._size:
            k = (self._offset + self._step * self._next) % self._size
            self._next += 1
            number = f"+1{self._area}{_FIRST_SUBSCRIBER + k:07d}"
            if number not in sold:
                return number
        return None


class Holdings:
    """One account's numbers: in purchase order, by SID and by number."""

    __slots__ = ("_by_number", "_position", "longest", "resources")

    def __init__(self) -> None:
        #: Every resource, in purchase order (what the GET list pages through).
        self.resources: list[Resource] = []
        #: The length of the longest number held: a query that long is an exact look-up.
        self.longest = 0
        self._position: dict[str, int] = {}
        self._by_number: dict[str, list[Resource]] = {}

    def __len__(self) -> int:
        return len(self.resources)

    def add(self, resource: Resource) -> None:
        """Hold a newly bought resource."""
        number: str = resource["phone_number"]
        self._position[resource["sid"]] = len(self.resources)
        self.resources.append(resource)
        self._by_number.setdefault(number, []).append(resource)
        self.longest = max(self.longest, len(number))

    def with_number(self, phone_number: str) -> list[Resource]:
        """The resources for exactly ``phone_number`` (several only for the magic number)."""
        return self._by_number.get(phone_number, [])

    def position(self, sid: str) -> int | None:
        """Where the resource ``sid`` is in :attr:`resources`, if held here."""
        return self._position.get(sid)


class Inventory:
    """What is for sale and who owns what, across the main account and its subaccounts."""

    def __init__(self, *, area_code_stock: int, seed: int) -> None:
        if isinstance(area_code_stock, bool) or not isinstance(area_code_stock, int):
            raise TypeError(f"area_code_stock must be an int, not {area_code_stock!r}")
        if not 0 <= area_code_stock <= _MAX_STOCK:
            raise ValueError(f"area_code_stock must be in [0, {_MAX_STOCK}], not {area_code_stock}")
        self._stock_size = area_code_stock
        self._seed = seed
        self._stocks: dict[str, _AreaStock] = {}
        self._sold: dict[str, str] = {}  # number -> the account that owns it
        self._holdings: dict[str, Holdings] = {}

    def __repr__(self) -> str:
        return f"{type(self).__name__}(sold={len(self._sold)}, accounts={len(self._holdings)})"

    def holdings(self, account_sid: str) -> Holdings:
        """The numbers ``account_sid`` holds (empty for an account that bought none)."""
        holdings = self._holdings.get(account_sid)
        if holdings is None:
            holdings = self._holdings[account_sid] = Holdings()
        return holdings

    def owned(self, account_sid: str) -> dict[str, Resource]:
        """Number → resource for ``account_sid``; the latest one for the magic number."""
        holdings = self._holdings.get(account_sid)
        if holdings is None:
            return {}
        return {resource["phone_number"]: resource for resource in holdings.resources}

    def buy(self, account_sid: str, form: ValidForm, make: Callable[[str], Resource]) -> Resource:
        """Buy what ``form`` asks for on ``account_sid``; ``make(number)`` builds the resource.

        Picking, building and recording happen without an ``await`` in between, so that two
        concurrent purchases can never both get the same number. Raises :class:`ApiError`
        (21421, 21422, 21452) when nothing can be bought.
        """
        number = self._pick(form)
        resource = make(number)
        if number != _MAGIC_NUMBER:
            self._sold[number] = account_sid
        self.holdings(account_sid).add(resource)
        return resource

    def _pick(self, form: ValidForm) -> str:
        number = form.phone_number
        if number is not None:
            return self._check_number(number)
        area_code = form.area_code
        if area_code is None:  # validate_form rules this out; kept for a clear failure
            raise ApiError(400, 21605, "PhoneNumber or AreaCode is required")
        return self._from_area(area_code)

    def _check_number(self, number: str) -> str:
        if number == _MAGIC_INVALID:
            raise ApiError(400, 21421, "PhoneNumber is invalid")
        if number == _MAGIC_UNAVAILABLE or number in self._sold:
            raise ApiError(400, 21422, f"PhoneNumber {number} is not available")
        return number

    def _from_area(self, area_code: str) -> str:
        if area_code == _MAGIC_AREA_CODE:
            return _MAGIC_NUMBER
        number = None
        if area_code != _EMPTY_AREA_CODE:
            stock = self._stocks.get(area_code)
            if stock is None:
                stock = self._stocks[area_code] = _AreaStock(
                    area_code, self._stock_size, self._seed
                )
            number = stock.next_unsold(self._sold)
        if number is None:
            raise ApiError(400, 21452, f"No phone numbers are available in area code {area_code}")
        return number
