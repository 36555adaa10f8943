"""The request fields as the command line sees them: ``buy``'s options and ``bulk``'s CSV columns.

Both are generated from the request classes (``attrs.fields``), so a field the models gain is an
option and a column at once, and both build requests through :func:`build_request`, so a row and
a command line are checked by the same rules.
"""

from __future__ import annotations

import enum
import functools
import types
import typing
from collections.abc import Mapping
from typing import Any, Literal

import attrs

from twilio_numbers_async._checks import SID_PREFIXES
from twilio_numbers_async._serde import form_key
from twilio_numbers_async.errors import RequestValidationError
from twilio_numbers_async.models import MobileNumberPurchase, NumberPurchase, PurchaseRequest

__all__ = ["RequestField", "build_request", "optional_fields"]

Kind = Literal["bool", "enum", "sid", "text", "url"]

# What a kind of value looks like, for help texts and metavars.
_SHAPES: Mapping[Kind, tuple[str, str]] = {
    "bool": ("", "true or false (the --no- form sends false)"),
    "enum": ("", "{choices}"),
    "sid": ("SID", "a SID"),
    "text": ("TEXT", "text"),
    "url": ("URL", "an absolute http(s) URL"),
}
# The two fields that say which number to buy; every other field is optional.
_WHICH_NUMBER = frozenset({"phone_number", "area_code"})


@attrs.frozen
class RequestField:
    """One optional field of a purchase request, as an option or a CSV column presents it."""

    #: The snake_case name: the CSV column, and (dashed) the option.
    name: str
    kind: Kind
    #: The allowed values, for an ``enum`` field.
    choices: tuple[str, ...] = ()

    @property
    def option(self) -> str:
        """The command-line option: ``--sms-url``."""
        return "--" + self.name.replace("_", "-")

    @property
    def metavar(self) -> str:
        """The placeholder a usage line shows for the value."""
        return "|".join(self.choices) or _SHAPES[self.kind][0]

    @property
    def help(self) -> str:
        """What the field is and what it takes, for ``--help``."""
        shape = _SHAPES[self.kind][1].format(choices=" or ".join(self.choices))
        if self.kind == "sid" and (prefix := _sid_prefix(self.name)) is not None:
            shape = f"the SID of {SID_PREFIXES[prefix]} ({prefix} and 32 hex digits)"
        elif self.name == "friendly_name":
            shape = "text, 64 characters at most"
        return f"Twilio's {form_key(self.name)}: {shape}"


@functools.cache
def optional_fields() -> tuple[RequestField, ...]:
    """Every optional field of :class:`NumberPurchase` (the Mobile endpoint has the same), in
    the order the class declares them."""
    hints = typing.get_type_hints(NumberPurchase)
    return tuple(
        _describe(field.name, hints[field.name])
        for field in attrs.fields(NumberPurchase)
        if field.name not in _WHICH_NUMBER
    )


def _describe(name: str, hint: Any) -> RequestField:
    kinds = [kind for kind in typing.get_args(hint) if kind is not types.NoneType] or [hint]
    kind = kinds[0]
    if kind is bool:
        return RequestField(name, "bool")
    if isinstance(kind, type) and issubclass(kind, enum.Enum):
        return RequestField(name, "enum", tuple(str(member.value) for member in kind))
    if name.endswith("_sid"):
        return RequestField(name, "sid")
    if name.endswith("_url") or name == "status_callback":
        return RequestField(name, "url")
    return RequestField(name, "text")


def _sid_prefix(name: str) -> str | None:
    # SID_PREFIXES says what each prefix names ("an Application"); a field names the same
    # thing last ("sms_application_sid"), so the prefix needs no table of its own here.
    thing = name.removesuffix("_sid").rpartition("_")[2]
    for prefix, what in SID_PREFIXES.items():
        if what.rpartition(" ")[2].lower() == thing:
            return prefix
    return None


def build_request(values: Mapping[str, Any], *, mobile: bool) -> PurchaseRequest:
    """The request that ``values`` (field name → value; ``None`` is "not set") describe.

    ``mobile`` picks the Mobile endpoint, which buys a given ``phone_number`` only. Raises
    :class:`RequestValidationError` naming the field, as the models do.
    """
    given = {name: value for name, value in values.items() if value is not None}
    if not mobile:
        return NumberPurchase(**given)
    if "area_code" in given:
        raise RequestValidationError(
            "area_code", "a mobile purchase buys a given phone_number; it takes no area code"
        )
    if "phone_number" not in given:
        raise RequestValidationError("phone_number", "a mobile purchase needs the number to buy")
    return MobileNumberPurchase(**given)
