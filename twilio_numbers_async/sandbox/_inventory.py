"""Who owns what, and the rules of selling and releasing, as Twilio's.

Any valid E.164 number is for sale exactly once across all accounts (again → 21422) until its
owner releases it; an area code sells from its :class:`~._catalog.Block` of
``area_code_stock`` numbers, ``+1{area}555xxxx`` in a seeded order, skipping numbers already
sold (exhausted → 21452); a search lists the same blocks. Twilio's test credentials' magic
values work too: ``+15005550006`` always buys, ``+15005550000`` is not available (21422),
``+15005550001`` is invalid (21421), area code ``533`` has no numbers (21452) and ``500`` buys
``+15005550006``.

``+15005550006`` is never *owned* exclusively: like Twilio's test credentials, it can be bought
any number of times, by any account. Each purchase is recorded and creates a resource of its
own (its own ``PN`` SID) on the buyer's account, so that a client that lost the answer can
still find it with the GET list; :meth:`Inventory.owned` shows the latest one.

Every operation is O(1) (amortised, for the blocks and for releases), so bulk runs stay fast.
"""

from __future__ import annotations

from collections.abc import Callable, Container
from typing import Any, Final

from ._catalog import Catalog
from ._errors import ApiError
from ._form import ValidForm
from ._numbers import (
    MAGIC_AREA_CODE,
    MAGIC_INVALID,
    MAGIC_NUMBER,
    MAGIC_UNAVAILABLE,
    NO_STOCK_AREA_CODE,
)

__all__ = [
    "Holdings",
    "Inventory",
]

# Stock numbers are +1 {area} {5_550_000 + k}, seven digits: k can reach 9_999_999 - 5_550_000.
_MAX_STOCK: Final = 4_450_000

Resource = dict[str, Any]
# Where a released resource was: a placeholder no resource is, so `is` tells it apart.
_GONE: Final[Resource] = {}


class Holdings:
    """One account's numbers: in purchase order, by SID and by number.

    Each resource keeps the place it was bought in, released or not, so that a page token
    naming a released resource still says where the next page starts.
    """

    __slots__ = ("_by_number", "_gaps", "_position", "_slots", "longest")

    def __init__(self) -> None:
        #: The length of the longest number held: a query that long is an exact look-up.
        self.longest = 0
        self._slots: list[Resource] = []
        self._gaps = 0
        self._position: dict[str, int] = {}  # every SID ever held here, released ones too
        self._by_number: dict[str, list[Resource]] = {}

    def __len__(self) -> int:
        return len(self._slots) - self._gaps

    @property
    def resources(self) -> list[Resource]:
        """Every resource held, in purchase order (what the GET list pages through)."""
        if not self._gaps:
            return self._slots
        return [resource for resource in self._slots if resource is not _GONE]

    def positions(self) -> list[int] | None:
        """The :meth:`position` of each of :attr:`resources`; ``None`` when it is its index."""
        if not self._gaps:
            return None
        return [i for i, resource in enumerate(self._slots) if resource is not _GONE]

    def add(self, resource: Resource) -> None:
        """Hold a newly bought resource."""
        number: str = resource["phone_number"]
        self._position[resource["sid"]] = len(self._slots)
        self._slots.append(resource)
        self._by_number.setdefault(number, []).append(resource)
        self.longest = max(self.longest, len(number))

    def get(self, sid: str) -> Resource | None:
        """The resource ``sid``, if held here."""
        position = self._position.get(sid)
        if position is None or self._slots[position] is _GONE:
            return None
        return self._slots[position]

    def remove(self, sid: str) -> Resource | None:
        """Stop holding the resource ``sid``; it, or ``None`` if it is not held here."""
        resource = self.get(sid)
        if resource is None:
            return None
        self._slots[self._position[sid]] = _GONE
        self._gaps += 1
        same = self._by_number[resource["phone_number"]]
        same.remove(resource)
        if not same:
            del self._by_number[resource["phone_number"]]
        return resource

    def with_number(self, phone_number: str) -> list[Resource]:
        """The resources for exactly ``phone_number`` (several only for the magic number)."""
        return self._by_number.get(phone_number, [])

    def position(self, sid: str) -> int | None:
        """Where the resource ``sid`` is, or was, in the purchase order, if it was held here."""
        return self._position.get(sid)


class Inventory:
    """What is for sale and who owns what, across the main account and its subaccounts."""

    def __init__(self, *, area_code_stock: int, seed: int) -> None:
        if isinstance(area_code_stock, bool) or not isinstance(area_code_stock, int):
            raise TypeError(f"area_code_stock must be an int, not {area_code_stock!r}")
        if not 0 <= area_code_stock <= _MAX_STOCK:
            raise ValueError(f"area_code_stock must be in [0, {_MAX_STOCK}], not {area_code_stock}")
        #: The blocks of numbers for sale.
        self.catalog = Catalog(stock=area_code_stock, seed=seed)
        self._sold: dict[str, str] = {}  # number -> the account that owns it
        self._holdings: dict[str, Holdings] = {}

    def __repr__(self) -> str:
        return f"{type(self).__name__}(sold={len(self._sold)}, accounts={len(self._holdings)})"

    @property
    def sold(self) -> Container[str]:
        """The numbers someone owns (the magic number never is)."""
        return self._sold

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
        if number != MAGIC_NUMBER:
            self._sold[number] = account_sid
        self.holdings(account_sid).add(resource)
        return resource

    def release(self, account_sid: str, sid: str) -> Resource | None:
        """Release the resource ``sid`` of ``account_sid``: its number is for sale again.

        Returns the released resource, or ``None`` when the account holds no such resource.
        """
        resource = self.holdings(account_sid).remove(sid)
        if resource is None:
            return None
        number: str = resource["phone_number"]
        if number != MAGIC_NUMBER:
            del self._sold[number]
            self.catalog.returned(number)
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
        if number == MAGIC_INVALID:
            raise ApiError(400, 21421, "PhoneNumber is invalid")
        if number == MAGIC_UNAVAILABLE or number in self._sold:
            raise ApiError(400, 21422, f"PhoneNumber {number} is not available")
        return number

    def _from_area(self, area_code: str) -> str:
        if area_code == MAGIC_AREA_CODE:
            return MAGIC_NUMBER
        found = None
        if area_code != NO_STOCK_AREA_CODE:
            found = next(self.catalog.area_block(area_code).unsold(0, self._sold), None)
        if found is None:
            raise ApiError(400, 21452, f"No phone numbers are available in area code {area_code}")
        return found[1]
