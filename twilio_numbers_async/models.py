"""Requests and responses of Twilio's two "create IncomingPhoneNumber" endpoints.

Requests (:class:`NumberPurchase`, :class:`MobileNumberPurchase`) are frozen attrs classes with one
snake_case field per form field of Twilio's spec (``sms_url`` is sent as ``SmsUrl``), validated
when they are built: a request that exists is one Twilio's contract allows. The response,
:class:`IncomingPhoneNumber`, has every property of the spec. These classes do no I/O; the
(de)serialisation lives in ``_serde``.
"""

from __future__ import annotations

import enum
import functools
from collections.abc import Callable
from datetime import datetime
from typing import Any, ClassVar, Literal, Required, TypeAlias, TypedDict

import attrs

from ._checks import (
    check_area_code,
    check_e164,
    check_sid,
    check_text,
    check_url,
    redact_url,
)
from .errors import RequestValidationError

__all__ = [
    "AddressRequirement",
    "AvailablePhoneNumber",
    "Capabilities",
    "EmergencyAddressStatus",
    "EmergencyStatus",
    "HttpMethod",
    "IncomingPhoneNumber",
    "MobileNumberPurchase",
    "MobileNumberPurchaseFields",
    "NumberKind",
    "NumberPurchase",
    "NumberPurchaseFields",
    "PurchaseFields",
    "PurchaseRequest",
    "VoiceReceiveMode",
]

_FRIENDLY_NAME_MAX = 64


class HttpMethod(enum.StrEnum):
    """How Twilio calls one of your webhook URLs."""

    GET = "GET"
    POST = "POST"


class EmergencyStatus(enum.StrEnum):
    """Whether the number may place emergency calls."""

    ACTIVE = "Active"
    INACTIVE = "Inactive"


class VoiceReceiveMode(enum.StrEnum):
    """Whether the number receives voice calls or faxes."""

    VOICE = "voice"
    FAX = "fax"


class AddressRequirement(enum.StrEnum):
    """Which Address Twilio requires before the number can be bought."""

    NONE = "none"
    ANY = "any"
    LOCAL = "local"
    FOREIGN = "foreign"


class EmergencyAddressStatus(enum.StrEnum):
    """Where the registration of the number's emergency address stands."""

    REGISTERED = "registered"
    UNREGISTERED = "unregistered"
    PENDING_REGISTRATION = "pending-registration"
    REGISTRATION_FAILURE = "registration-failure"
    PENDING_UNREGISTRATION = "pending-unregistration"
    UNREGISTRATION_FAILURE = "unregistration-failure"


# --- request validation ---------------------------------------------------------------------
# attrs calls each validator with the field, so every error names it. None means "not sent".

_Validator: TypeAlias = Callable[[Any, "attrs.Attribute[Any]", Any], None]


def _text(_: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if value is not None:
        check_text(attribute.name, value)


def _url(_: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if value is not None and not (
        type(value) is str and len(value) <= _CACHED_URL_MAX and _known_good_url(value)
    ):
        # Checked in full; an invalid URL is refused here, with its field's name.
        check_url(attribute.name, value)


# check_url parses the whole URL (3 µs each: measured, a request with two webhook URLs is built
# in 6.6 µs with this and 13.6 µs without, 4% of a purchase's CPU) and depends on nothing but
# the text, while a program sends the same few webhook URLs with every purchase: each distinct
# string's verdict is remembered, not the check skipped. Bounded: 256 URLs of at most 2 KiB.
# Only an exact str is looked up, so no subclass can alter hashing or equality.
_CACHED_URL_MAX = 2048


@functools.lru_cache(maxsize=256)
def _known_good_url(value: str) -> bool:
    try:
        check_url("url", value)
    except RequestValidationError:
        return False
    return True


def _e164(_: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if value is not None:
        check_e164(attribute.name, value)


def _required_e164(_: object, attribute: attrs.Attribute[Any], value: object) -> None:
    # Required by the spec: None must not slip through as "not sent" (nor be sent as "None").
    if value is None:
        raise RequestValidationError(attribute.name, "is required: an E.164 number")
    check_e164(attribute.name, value)


def _area_code(_: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if value is not None:
        check_area_code(attribute.name, value)


def _friendly_name(_: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if value is not None and len(text := check_text(attribute.name, value)) > _FRIENDLY_NAME_MAX:
        raise RequestValidationError(
            attribute.name, f"is {len(text)} characters long; Twilio allows {_FRIENDLY_NAME_MAX}"
        )


def _bool(_: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if value is not None and not isinstance(value, bool):
        raise RequestValidationError(
            attribute.name, f"must be True or False, not {type(value).__name__}"
        )


def _sid(prefix: str) -> _Validator:
    def validate(_: object, attribute: attrs.Attribute[Any], value: object) -> None:
        if value is not None:
            check_sid(attribute.name, value, prefix)

    return validate


def _member_of(kind: type[enum.StrEnum]) -> _Validator:
    allowed = ", ".join(repr(member.value) for member in kind)

    def validate(_: object, attribute: attrs.Attribute[Any], value: object) -> None:
        if value is not None and not isinstance(value, kind):
            raise RequestValidationError(
                attribute.name, f"{value!r} is not one of {allowed} (or {kind.__name__})"
            )

    return validate


_is_http_method = _member_of(HttpMethod)


# Converters turn an enum's string value into its member; anything else passes through
# untouched for the validator to reject by field name. The mypy attrs plugin needs them named.
# None ("not sent", most fields of most requests) returns at once, without a second call.
def _to_http_method(value: HttpMethod | Literal["GET", "POST"] | None) -> HttpMethod | None:
    return None if value is None else _to_member(HttpMethod, value)  # type: ignore[return-value]


def _to_emergency_status(
    value: EmergencyStatus | Literal["Active", "Inactive"] | None,
) -> EmergencyStatus | None:
    return None if value is None else _to_member(EmergencyStatus, value)  # type: ignore[return-value]


def _to_voice_receive_mode(
    value: VoiceReceiveMode | Literal["voice", "fax"] | None,
) -> VoiceReceiveMode | None:
    return None if value is None else _to_member(VoiceReceiveMode, value)  # type: ignore[return-value]


def _to_member(kind: type[enum.StrEnum], value: object) -> object:
    if isinstance(value, str) and not isinstance(value, kind):
        return kind._value2member_map_.get(value, value)
    return value


def _url_field() -> Any:
    return attrs.field(default=None, validator=_url, repr=_repr_url)


def _sid_field(prefix: str) -> Any:
    return attrs.field(default=None, validator=_sid(prefix))


def _repr_url(value: str | None) -> str:
    return repr(redact_url(value) if isinstance(value, str) else value)


@attrs.frozen(kw_only=True, repr=False)
class PurchaseRequest:
    """What both endpoints take: the 22 optional fields they share, each "not sent" by default.

    The base of :class:`NumberPurchase` and :class:`MobileNumberPurchase`, which add the number
    to buy; build one of those. Typing a list of requests of both kinds needs no annotation:
    its items are ``PurchaseRequest``.
    """

    #: The path under ``/2010-04-01/Accounts/{AccountSid}/`` that this request is sent to.
    endpoint: ClassVar[str]

    api_version: str | None = attrs.field(default=None, validator=_text)
    friendly_name: str | None = attrs.field(default=None, validator=_friendly_name)
    sms_application_sid: str | None = _sid_field("AP")
    sms_fallback_method: HttpMethod | None = attrs.field(
        default=None, converter=_to_http_method, validator=_is_http_method
    )
    sms_fallback_url: str | None = _url_field()
    sms_method: HttpMethod | None = attrs.field(
        default=None, converter=_to_http_method, validator=_is_http_method
    )
    sms_url: str | None = _url_field()
    status_callback: str | None = _url_field()
    status_callback_method: HttpMethod | None = attrs.field(
        default=None, converter=_to_http_method, validator=_is_http_method
    )
    voice_application_sid: str | None = _sid_field("AP")
    voice_caller_id_lookup: bool | None = attrs.field(default=None, validator=_bool)
    voice_fallback_method: HttpMethod | None = attrs.field(
        default=None, converter=_to_http_method, validator=_is_http_method
    )
    voice_fallback_url: str | None = _url_field()
    voice_method: HttpMethod | None = attrs.field(
        default=None, converter=_to_http_method, validator=_is_http_method
    )
    voice_url: str | None = _url_field()
    emergency_status: EmergencyStatus | None = attrs.field(
        default=None,
        converter=_to_emergency_status,
        validator=_member_of(EmergencyStatus),
    )
    emergency_address_sid: str | None = _sid_field("AD")
    trunk_sid: str | None = _sid_field("TK")
    identity_sid: str | None = _sid_field("RI")
    address_sid: str | None = _sid_field("AD")
    voice_receive_mode: VoiceReceiveMode | None = attrs.field(
        default=None,
        converter=_to_voice_receive_mode,
        validator=_member_of(VoiceReceiveMode),
    )
    bundle_sid: str | None = _sid_field("BU")

    def __attrs_post_init__(self) -> None:
        if type(self) is PurchaseRequest:
            raise TypeError(
                "PurchaseRequest is the base of NumberPurchase and MobileNumberPurchase: "
                "build one of those"
            )

    # Each subclass declares these as fields; here they are what every request can be asked.
    @property
    def phone_number(self) -> str | None:
        """The given number to buy, in E.164; ``None`` for an area-code purchase."""
        raise NotImplementedError  # pragma: no cover - never built, see __attrs_post_init__

    @property
    def area_code(self) -> str | None:
        """The area code to buy any number in; ``None`` for a given number."""
        return None

    def __repr__(self) -> str:
        # Only what is sent: two dozen "=None" would hide the two fields that matter.
        shown = [
            f"{field.name}={field.repr(value) if callable(field.repr) else repr(value)}"
            for field in attrs.fields(type(self))
            if (value := getattr(self, field.name)) is not None
        ]
        return f"{type(self).__name__}({', '.join(shown)})"


@attrs.frozen(kw_only=True, repr=False)
class NumberPurchase(PurchaseRequest):
    """Buy a given ``phone_number``, or any number in an ``area_code`` (exactly one of them).

    Sent to ``POST /2010-04-01/Accounts/{AccountSid}/IncomingPhoneNumbers.json``.
    A ``phone_number`` purchase can be looked up when its outcome is unknown, so it is retried
    safely; an ``area_code`` one can't, so it is never retried once Twilio may have processed it.
    """

    endpoint: ClassVar[str] = "IncomingPhoneNumbers.json"

    phone_number: str | None = attrs.field(default=None, validator=_e164)
    area_code: str | None = attrs.field(default=None, validator=_area_code)

    def __attrs_post_init__(self) -> None:
        if (self.phone_number is None) == (self.area_code is None):
            raise RequestValidationError(
                "phone_number" if self.phone_number is None else "area_code",
                "give exactly one of phone_number (a given number) and area_code "
                "(any number in it)",
            )


@attrs.frozen(kw_only=True, repr=False)
class MobileNumberPurchase(PurchaseRequest):
    """Buy a given mobile ``phone_number``.

    Sent to ``POST /2010-04-01/Accounts/{AccountSid}/IncomingPhoneNumbers/Mobile.json``.
    """

    endpoint: ClassVar[str] = "IncomingPhoneNumbers/Mobile.json"

    phone_number: str = attrs.field(validator=_required_e164)


_Method: TypeAlias = HttpMethod | Literal["GET", "POST"] | None


class PurchaseFields(TypedDict, total=False):
    """The keyword arguments of every ``create_*`` method: :class:`PurchaseRequest`'s fields.

    Declared for type checkers and IDEs; a test checks that it matches the attrs classes.
    """

    api_version: str | None
    friendly_name: str | None
    sms_application_sid: str | None
    sms_fallback_method: _Method
    sms_fallback_url: str | None
    sms_method: _Method
    sms_url: str | None
    status_callback: str | None
    status_callback_method: _Method
    voice_application_sid: str | None
    voice_caller_id_lookup: bool | None
    voice_fallback_method: _Method
    voice_fallback_url: str | None
    voice_method: _Method
    voice_url: str | None
    emergency_status: EmergencyStatus | Literal["Active", "Inactive"] | None
    emergency_address_sid: str | None
    trunk_sid: str | None
    identity_sid: str | None
    address_sid: str | None
    voice_receive_mode: VoiceReceiveMode | Literal["voice", "fax"] | None
    bundle_sid: str | None


class NumberPurchaseFields(PurchaseFields, total=False):
    """:meth:`~TwilioNumbersClient.create_incoming_phone_number`'s keyword arguments."""

    phone_number: str | None
    area_code: str | None


class MobileNumberPurchaseFields(PurchaseFields, total=False):
    """:meth:`~TwilioNumbersClient.create_incoming_phone_number_mobile`'s keyword arguments."""

    phone_number: Required[str]


# --- response --------------------------------------------------------------------------------
# Field metadata tells the converter how to read a value: "sid" is the SID's prefix, "uri"
# marks a URL. Both read Twilio's "" (unset) as None.


def _read_sid(prefix: str, *, required: bool = False) -> Any:
    if required:
        return attrs.field(metadata={"sid": prefix})
    return attrs.field(default=None, metadata={"sid": prefix})


def _read_url() -> Any:
    return attrs.field(default=None, metadata={"uri": True}, repr=_repr_url)


@attrs.frozen(kw_only=True)
class Capabilities:
    """What the number can receive. ``None`` where Twilio did not say."""

    voice: bool | None = None
    sms: bool | None = None
    mms: bool | None = None
    fax: bool | None = None


@attrs.frozen(kw_only=True)
class IncomingPhoneNumber:
    """A phone number on the account, as Twilio describes it after a purchase.

    Every property of Twilio's spec, typed. What every number Twilio sold has (``sid``,
    ``account_sid``, ``phone_number`` and the two dates) is never ``None``: an answer without
    them is not read as a number. The rest is read tolerantly, because a purchase answered with
    201 has been paid for: an enum value Twilio adds later is kept as its plain string, and a
    property the spec does not have yet is kept in :attr:`extra`.
    """

    # In the order of Twilio's own answers (and of a journal's records), required or not.
    account_sid: str = _read_sid("AC", required=True)
    address_sid: str | None = _read_sid("AD")
    address_requirements: AddressRequirement | str | None = None
    api_version: str | None = None
    beta: bool | None = None
    capabilities: Capabilities | None = None
    date_created: datetime
    date_updated: datetime
    friendly_name: str | None = None
    identity_sid: str | None = _read_sid("RI")
    phone_number: str
    origin: str | None = None
    sid: str = _read_sid("PN", required=True)
    sms_application_sid: str | None = _read_sid("AP")
    sms_fallback_method: HttpMethod | str | None = None
    sms_fallback_url: str | None = _read_url()
    sms_method: HttpMethod | str | None = None
    sms_url: str | None = _read_url()
    status_callback: str | None = _read_url()
    status_callback_method: HttpMethod | str | None = None
    trunk_sid: str | None = _read_sid("TK")
    uri: str | None = None
    voice_receive_mode: VoiceReceiveMode | str | None = None
    voice_application_sid: str | None = _read_sid("AP")
    voice_caller_id_lookup: bool | None = None
    voice_fallback_method: HttpMethod | str | None = None
    voice_fallback_url: str | None = _read_url()
    voice_method: HttpMethod | str | None = None
    voice_url: str | None = _read_url()
    emergency_status: EmergencyStatus | str | None = None
    emergency_address_sid: str | None = _read_sid("AD")
    emergency_address_status: EmergencyAddressStatus | str | None = None
    bundle_sid: str | None = _read_sid("BU")
    status: str | None = None
    #: The number's type (``local``, ``mobile``, ``toll-free``...); the Mobile endpoint omits it.
    type: str | None = None
    #: Properties Twilio sent that the spec this library was built from does not have.
    extra: dict[str, Any] = attrs.field(factory=dict, hash=False)


#: What :meth:`~TwilioNumbersClient.search_available_phone_numbers` searches: Twilio's
#: ``Local``, ``Mobile`` and ``TollFree`` lists of a country.
NumberKind: TypeAlias = Literal["local", "mobile", "toll_free"]


@attrs.frozen(kw_only=True)
class AvailablePhoneNumber:
    """A number for sale, as Twilio's ``AvailablePhoneNumbers`` search describes it.

    Every property of the spec, read as tolerantly as :class:`IncomingPhoneNumber`: Twilio sends
    the coordinates as strings ("19.720000") where the spec says numbers, and both are read.
    Buy it with ``NumberPurchase(phone_number=candidate.phone_number)`` (``MobileNumberPurchase``
    for a mobile one).
    """

    phone_number: str
    friendly_name: str | None = None
    lata: str | None = None
    locality: str | None = None
    rate_center: str | None = None
    latitude: float | None = None
    longitude: float | None = None
    region: str | None = None
    postal_code: str | None = None
    iso_country: str | None = None
    address_requirements: AddressRequirement | str | None = None
    beta: bool | None = None
    capabilities: Capabilities | None = None
    #: Properties Twilio sent that the spec this library was built from does not have.
    extra: dict[str, Any] = attrs.field(factory=dict, hash=False)
