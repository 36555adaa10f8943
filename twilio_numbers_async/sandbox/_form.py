"""Reading and checking a purchase's form the way Twilio's spec says, with Twilio's error codes.

:data:`GENERIC_RULES` and :data:`MOBILE_RULES` restate, key by key, what the spec's request
bodies allow (a contract test holds them to the spec): SID patterns, enums, booleans, URLs,
E.164 numbers, area codes, FriendlyName's 64 characters. Unknown keys are ignored, as Twilio
ignores them. A value that breaks its rule is a 400 with the code Twilio uses for it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Final, Literal
from urllib.parse import parse_qsl

import attrs

from twilio_numbers_async._checks import check_e164, check_sid, check_url
from twilio_numbers_async.errors import RequestValidationError

from ._errors import ApiError, shown

__all__ = [
    "GENERIC_RULES",
    "MOBILE_RULES",
    "Rule",
    "ValidForm",
    "Value",
    "is_valid_area_code",
    "parse_form",
    "validate_form",
]

Value = str | bool
Kind = Literal["text", "sid", "enum", "bool", "uri", "phone", "area"]

_FORM_TYPE = "application/x-www-form-urlencoded"
_FRIENDLY_NAME_MAX = 64


@attrs.frozen
class Rule:
    """What one form key may hold: its ``kind``, and the SID ``prefix``, enum ``choices`` or
    ``max_length`` where the kind needs one."""

    kind: Kind
    prefix: str | None = None
    choices: tuple[str, ...] = ()
    max_length: int | None = None


_METHOD: Final = Rule("enum", choices=("GET", "POST"))
_URI: Final = Rule("uri")

#: The keys both endpoints take, in the spec's order.
_COMMON: Final[Mapping[str, Rule]] = {
    "ApiVersion": Rule("text"),
    "FriendlyName": Rule("text", max_length=_FRIENDLY_NAME_MAX),
    "SmsApplicationSid": Rule("sid", prefix="AP"),
    "SmsFallbackMethod": _METHOD,
    "SmsFallbackUrl": _URI,
    "SmsMethod": _METHOD,
    "SmsUrl": _URI,
    "StatusCallback": _URI,
    "StatusCallbackMethod": _METHOD,
    "VoiceApplicationSid": Rule("sid", prefix="AP"),
    "VoiceCallerIdLookup": Rule("bool"),
    "VoiceFallbackMethod": _METHOD,
    "VoiceFallbackUrl": _URI,
    "VoiceMethod": _METHOD,
    "VoiceUrl": _URI,
    "EmergencyStatus": Rule("enum", choices=("Active", "Inactive")),
    "EmergencyAddressSid": Rule("sid", prefix="AD"),
    "TrunkSid": Rule("sid", prefix="TK"),
    "IdentitySid": Rule("sid", prefix="RI"),
    "AddressSid": Rule("sid", prefix="AD"),
    "VoiceReceiveMode": Rule("enum", choices=("voice", "fax")),
    "BundleSid": Rule("sid", prefix="BU"),
}
#: CreateIncomingPhoneNumber's form: a PhoneNumber or an AreaCode.
GENERIC_RULES: Final[Mapping[str, Rule]] = {
    **_COMMON,
    "PhoneNumber": Rule("phone"),
    "AreaCode": Rule("area"),
}
#: CreateIncomingPhoneNumberMobile's form: a PhoneNumber (required), no AreaCode.
MOBILE_RULES: Final[Mapping[str, Rule]] = {"PhoneNumber": Rule("phone"), **_COMMON}

_BOOLEANS: Final = {"true": True, "false": False}
# North American area codes: NXX with N in 2-9, and not N11 (211, 411, 911... are services).
_AREA_CODE: Final = re.compile(r"[2-9](?!11)[0-9]{2}")


@attrs.frozen
class ValidForm:
    """A checked form: ``values`` holds every known key sent, booleans as ``bool``."""

    values: dict[str, Value]

    @property
    def phone_number(self) -> str | None:
        """The ``PhoneNumber`` to buy, if one was given."""
        value = self.values.get("PhoneNumber")
        return value if isinstance(value, str) else None

    @property
    def area_code(self) -> str | None:
        """The ``AreaCode`` to buy in, if one was given."""
        value = self.values.get("AreaCode")
        return value if isinstance(value, str) else None


def parse_form(body: bytes, content_type: str) -> dict[str, str]:
    """The fields of an ``application/x-www-form-urlencoded`` body; the first of repeated keys.

    An empty body is an empty form whatever its type; any other type is a 400, because a
    client that sends JSON or multipart here has a bug Twilio would not point out clearly.
    """
    if not body:
        return {}
    if content_type != _FORM_TYPE:
        raise ApiError(400, 20001, f"Content-Type must be {_FORM_TYPE}, not {shown(content_type)}")
    try:
        fields = parse_qsl(body.decode("utf-8"), keep_blank_values=True, errors="strict")
    except UnicodeDecodeError:
        raise ApiError(400, 20001, "The request body is not valid UTF-8") from None
    form: dict[str, str] = {}
    for key, value in fields:
        form.setdefault(key, value)
    return form


def validate_form(form: Mapping[str, str], *, mobile: bool) -> ValidForm:
    """Check every known key of ``form`` against the spec; unknown keys are dropped.

    Raises :class:`ApiError`: 21605 when there is nothing to buy, else the first bad value's
    code (21421 phone number, 21451 area code, 21502 URL, 20001 anything else).
    """
    rules = MOBILE_RULES if mobile else GENERIC_RULES
    if "PhoneNumber" not in form and (mobile or "AreaCode" not in form):
        wanted = "PhoneNumber" if mobile else "PhoneNumber or AreaCode"
        raise ApiError(400, 21605, f"{wanted} is required")
    values: dict[str, Value] = {}
    for key, value in form.items():
        rule = rules.get(key)
        if rule is not None:
            values[key] = _check(key, value, rule)
    return ValidForm(values)


def is_valid_area_code(text: str) -> bool:
    """Whether ``text`` is a North American area code (NXX, not N11)."""
    return _AREA_CODE.fullmatch(text) is not None


def _check(key: str, value: str, rule: Rule) -> Value:
    kind = rule.kind
    if kind == "text":
        if rule.max_length is not None and len(value) > rule.max_length:
            raise _invalid(key, f"is {len(value)} characters long; at most {rule.max_length}")
        return value
    if kind == "sid":
        return _check_sid(key, value, rule.prefix or "")
    if kind == "enum":
        if value not in rule.choices:
            raise _invalid(key, f"must be one of {', '.join(rule.choices)}")
        return value
    if kind == "bool":
        if value not in _BOOLEANS:
            raise _invalid(key, "must be true or false")
        return _BOOLEANS[value]
    if kind == "uri":
        return _check_uri(key, value)
    if kind == "phone":
        return _check_phone(key, value)
    return _check_area_code(key, value)


def _check_sid(key: str, value: str, prefix: str) -> str:
    try:
        return check_sid(key, value, prefix)
    except RequestValidationError:
        raise _invalid(key, f"must be {prefix} followed by 32 hexadecimal digits") from None


def _check_uri(key: str, value: str) -> str:
    try:
        return check_url(key, value)
    except RequestValidationError:
        raise ApiError(400, 21502, f"{key} is not a valid URL") from None


def _check_phone(key: str, value: str) -> str:
    try:
        return check_e164(key, value)
    except RequestValidationError:
        raise ApiError(400, 21421, f"{key} is invalid") from None


def _check_area_code(key: str, value: str) -> str:
    if not is_valid_area_code(value):
        raise ApiError(400, 21451, f"{key} {shown(value)} is not a valid area code")
    return value


def _invalid(key: str, reason: str) -> ApiError:
    return ApiError(400, 20001, f"Invalid parameter {key}: {reason}")
