"""The one cattrs converter, and the codecs built on it: request → form bytes, JSON → models.

Every function cattrs generates here is generated once, at import, and calls the field's hook
directly: nothing is looked up per value on the hot path.

Reading is tolerant, because a 201 means the number was bought: Twilio's ``""`` for an unset SID
or URL reads as ``None``, an enum value newer than this library stays a plain string, and
unknown properties are kept in ``extra``. What truly can't be read raises
:class:`~twilio_numbers_async.errors.ResponseParseError` with the raw body and the SID.
"""

from __future__ import annotations

import email.utils
import enum
import functools
import importlib
import json
import logging
import math
import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, ClassVar, Final, Literal, TypeVar, get_args
from urllib.parse import quote_plus

import attrs
import cattrs
from attrs import AttrsInstance
from cattrs.errors import AttributeValidationNote
from cattrs.gen import make_dict_structure_fn, make_dict_unstructure_fn, override

from ._checks import SID_PREFIXES, find_sid
from .errors import (
    AuthenticationError,
    ClientClosedError,
    PurchaseOutcomeUnknownError,
    RateLimitedError,
    RedisLimiterError,
    ResponseParseError,
    TransportError,
    TwilioApiError,
    TwilioNumbersError,
)
from .models import (
    AvailablePhoneNumber,
    Capabilities,
    IncomingPhoneNumber,
    MobileNumberPurchase,
    NumberPurchase,
    PurchaseRequest,
)

__all__ = [
    "JOURNAL_LINE_START",
    "JOURNAL_VERSION",
    "ApiErrorRecord",
    "ErrorBody",
    "ErrorRecord",
    "IntentRecord",
    "JournalRecord",
    "NewerRecordError",
    "NotARecordError",
    "OutcomeRecord",
    "ParseErrorRecord",
    "TransportErrorRecord",
    "UnknownOutcomeRecord",
    "encode_form",
    "error_record",
    "form_fields",
    "form_key",
    "journal_line",
    "number_from_json",
    "number_to_json",
    "parse_available_numbers",
    "parse_error_body",
    "parse_number",
    "parse_number_page",
    "parse_retry_after",
    "parse_rfc2822",
    "read_journal_line",
]

logger = logging.getLogger("twilio_numbers_async")

_T = TypeVar("_T")
_R = TypeVar("_R", bound=AttrsInstance)
_Hook = Callable[[Any, Any], Any]

_converter: Final = cattrs.Converter(detailed_validation=True, forbid_extra_keys=False)


def _structurer(kind: type[_T], **overrides: Any) -> Callable[[Any, Any], _T]:
    # ``overrides`` are cattrs.gen.override()s keyed by attribute name; cattrs does not export
    # their class, so they are typed Any here.
    return make_dict_structure_fn(kind, _converter, **overrides)


# --- dates -----------------------------------------------------------------------------------

_MONTHS: Final = {
    name: number
    for number, name in enumerate(
        ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), 1
    )
}
# "Thu, 30 Jul 2015 23:19:04 +0000": Twilio's fixed layout, 31 characters.
_FIXED_LAYOUT: Final = re.compile(
    r"[A-Z][a-z]{2}, (\d\d) ([A-Z][a-z]{2}) (\d{4}) (\d\d):(\d\d):(\d\d) ([+-])(\d\d)(\d\d)"
)


@functools.lru_cache(maxsize=512)
def parse_rfc2822(text: str) -> datetime:
    """An RFC 2822 date as an aware datetime that keeps the offset the text gives.

    Twilio's own layout takes a fast path; anything else RFC 2822 allows (named zones, no
    weekday, one-digit days) goes to the standard library's parser. ``-0000`` ("UTC, local
    offset unknown") reads as UTC rather than as a naive datetime. Cached: a resource's two
    dates are usually equal, and a bulk run sees the same second many times.
    """
    match = _FIXED_LAYOUT.fullmatch(text)
    if match is not None and (month := _MONTHS.get(match[2])) is not None:
        day, _, year, hour, minute, second, sign, tz_hours, tz_minutes = match.groups()
        return datetime(
            int(year),
            month,
            int(day),
            int(hour),
            int(minute),
            int(second),
            tzinfo=_offset(sign, int(tz_hours), int(tz_minutes)),
        )
    try:
        parsed = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError) as exc:
        raise ValueError(f"{text!r} is not an RFC 2822 date") from exc
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


@functools.lru_cache(maxsize=64)
def _offset(sign: str, hours: int, minutes: int) -> timezone:
    if hours == minutes == 0:
        return UTC
    delta = timedelta(hours=hours, minutes=minutes)
    return timezone(-delta if sign == "-" else delta)


def parse_retry_after(value: str | None, *, now: datetime) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: delay-seconds or an HTTP-date.

    ``None`` when the header is absent or unreadable; never negative.
    """
    if value is None:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        # "inf", "nan" and "1e999" are floats to Python, and no wait a server can mean.
        return max(0.0, seconds) if math.isfinite(seconds) else None
    try:
        when = parse_rfc2822(value)
    except ValueError:
        return None
    return max(0.0, (when - now).total_seconds())


# --- hooks -----------------------------------------------------------------------------------


def _sid_hook(prefix: str) -> _Hook:
    pattern = re.compile(f"{prefix}[0-9a-fA-F]{{32}}")
    kind = SID_PREFIXES[prefix]

    def structure(value: Any, _: Any) -> str | None:
        if value is None or value == "":
            return None
        if not isinstance(value, str) or not pattern.fullmatch(value):
            raise ValueError(f"{value!r} is not the SID of {kind} ({prefix} + 32 hex digits)")
        return value

    return structure


def _url_hook(value: Any, _: Any) -> str | None:
    if value is None or value == "":
        return None
    return _str_hook(value, None)


def _str_hook(value: Any, _: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool | int | float):
        return str(value)
    raise TypeError(f"expected a string, got {type(value).__name__}")


def _bool_hook(value: Any, _: Any) -> bool | None:
    # Not bool(value): the string "false" is truthy.
    if value is None or isinstance(value, bool):
        return value
    raise TypeError(f"expected true or false, got {value!r}")


def _datetime_hook(value: Any, _: Any) -> datetime | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise TypeError(f"expected an RFC 2822 date string, got {type(value).__name__}")
    return parse_rfc2822(value)


def _enum_or_str_hook(kind: type[enum.StrEnum]) -> _Hook:
    members = kind._value2member_map_

    def structure(value: Any, _: Any) -> enum.StrEnum | str | None:
        if value is None or value == "":
            return None
        if not isinstance(value, str):
            raise TypeError(f"expected a string, got {type(value).__name__}")
        return members.get(value, value)  # type: ignore[return-value]

    return structure


_capabilities_fn = _structurer(
    Capabilities, **{f.name: override(struct_hook=_bool_hook) for f in attrs.fields(Capabilities)}
)


def _capabilities_hook(value: Any, _: Any) -> Capabilities | None:
    if value is None:
        return None
    if type(value) is not dict and not isinstance(value, Mapping):  # dict: the cheap check
        raise TypeError(f"expected an object, got {type(value).__name__}")
    # A loop rather than all(<generator>): half this hook's cost, on every response.
    for flag in value.values():
        if flag is not True and flag is not False and flag is not None:
            return _read_capabilities(value)
    # Only true booleans are cached: 1 == True, and 1 must be refused, not read as True.
    return _cached_capabilities(tuple(value.items()))


@functools.lru_cache(maxsize=64)
def _cached_capabilities(items: tuple[tuple[str, Any], ...]) -> Capabilities:
    # A handful of combinations covers every number, and Capabilities is immutable.
    return _read_capabilities(dict(items))


def _read_capabilities(value: Mapping[str, Any]) -> Capabilities:
    # Older resources spell them "SMS" and "MMS".
    return _capabilities_fn({key.lower(): flag for key, flag in value.items()}, Capabilities)


def _float_hook(value: Any, _: Any) -> float | None:
    # The spec says number; Twilio's own example sends "19.720000". Both are read.
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise TypeError(f"expected a number, got {type(value).__name__}")
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(f"{value!r} is not a finite number")
    return number


def _property_hook(owner: type, field: attrs.Attribute[Any]) -> _Hook:
    """The hook that reads one property of a resource Twilio describes."""
    if "sid" in field.metadata:
        return _sid_hook(field.metadata["sid"])
    if "uri" in field.metadata:
        return _url_hook
    members = [arg for arg in get_args(field.type) or (field.type,) if isinstance(arg, type)]
    for kind in members:
        if issubclass(kind, enum.StrEnum):
            return _enum_or_str_hook(kind)
    simple: dict[type, _Hook] = {
        bool: _bool_hook,
        datetime: _datetime_hook,
        float: _float_hook,
        Capabilities: _capabilities_hook,
        str: _str_hook,
    }
    for kind in members:
        if kind in simple:
            return simple[kind]
    raise TypeError(f"no hook for {owner.__name__}.{field.name}: {field.type!r}")


def _resource_hook(
    kind: type[_R], required: tuple[str, ...], *, tolerant: bool = True
) -> Callable[[Any, Any], _R]:
    """The tolerant reader of a resource: unknown properties kept in ``extra``, ``required``
    properties present and not empty (Twilio sends "" for what is unset), the rest as the
    spec allows; ``tolerant``, a property outside ``required`` that can't be read is dropped
    (logged), not a failure to read the whole resource."""
    attrs.resolve_types(kind)
    known = frozenset(field.name for field in attrs.fields(kind) if field.name != "extra")
    structure = _structurer(
        kind,
        extra=override(struct_hook=lambda value, _: value),
        **{
            field.name: override(struct_hook=_property_hook(kind, field))
            for field in attrs.fields(kind)
            if field.name != "extra"
        },
    )

    def read(value: Any, _: Any) -> _R:
        # type() first: JSON gives a dict, and isinstance() against the Mapping ABC costs more.
        if type(value) is not dict and not isinstance(value, Mapping):
            raise TypeError(f"expected an object, got {type(value).__name__}")
        # issuperset() only looks keys up; a set difference would build a set for every
        # response, though a response with unknown properties is the rare case.
        if not known.issuperset(value):
            unknown = value.keys() - known
            value = {**value, "extra": {key: value[key] for key in sorted(unknown)}}
        try:
            resource = structure(value, kind)
        except cattrs.ClassValidationError as exc:
            unreadable = _unreadable_properties(exc) if tolerant else None
            if unreadable is None or not unreadable.isdisjoint(required):
                raise
            # A property the purchase does not hang on, in a shape the spec does not allow (a
            # legacy trunk SID, say): the number is still bought, and still readable.
            logger.warning(
                "%s %s: ignoring what can't be read in %s",
                kind.__name__,
                value.get("sid"),
                ", ".join(sorted(unreadable)),
            )
            resource = structure(
                {key: item for key, item in value.items() if key not in unreadable}, kind
            )
        if missing := [name for name in required if not getattr(resource, name)]:
            # A half number is no purchase anyone can use or reconcile.
            raise ValueError(f"the resource names no number: it has no {' and no '.join(missing)}")
        return resource

    return read


def _unreadable_properties(exc: cattrs.ClassValidationError) -> set[str] | None:
    """The properties that failed to read, or ``None`` if a failure names none."""
    names: set[str] = set()
    for error in exc.exceptions:
        notes = [
            n for n in getattr(error, "__notes__", ()) if isinstance(n, AttributeValidationNote)
        ]
        if not notes:
            return None
        names.update(note.name for note in notes)
    return names


# What every number Twilio sold has; the model types them as never None.
_NUMBER_REQUIRED: Final = ("sid", "account_sid", "phone_number", "date_created", "date_updated")
_converter.register_structure_hook(
    IncomingPhoneNumber, _resource_hook(IncomingPhoneNumber, _NUMBER_REQUIRED)
)
_converter.register_structure_hook(
    AvailablePhoneNumber, _resource_hook(AvailablePhoneNumber, ("phone_number",))
)


@attrs.frozen
class _NumberPage:
    incoming_phone_numbers: list[IncomingPhoneNumber]
    next_page_uri: str | None = None


@attrs.frozen
class _AvailablePage:
    available_phone_numbers: list[AvailablePhoneNumber]


_converter.register_structure_hook(
    _NumberPage,
    _structurer(_NumberPage, next_page_uri=override(struct_hook=_url_hook)),
)
_converter.register_structure_hook(_AvailablePage, _structurer(_AvailablePage))


@attrs.frozen(kw_only=True)
class ErrorBody:
    """Twilio's error body: ``{"code": 21422, "message": "...", "more_info": "...", ...}``."""

    code: int | None = None
    message: str | None = None
    more_info: str | None = None
    details: dict[str, Any] | None = None


def _code_hook(value: Any, _: Any) -> int | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


_converter.register_structure_hook(
    ErrorBody,
    _structurer(
        ErrorBody,
        code=override(struct_hook=_code_hook),
        message=override(struct_hook=_str_hook),
        more_info=override(struct_hook=_url_hook),
        details=override(
            struct_hook=lambda value, _: dict(value) if isinstance(value, Mapping) else None
        ),
    ),
)


# --- reading ---------------------------------------------------------------------------------


_orjson_loads: Callable[[bytes], Any] | None
try:
    # Imported by name, so that type checking does not need orjson installed.
    _orjson_loads = importlib.import_module("orjson").loads
except ImportError:  # pragma: no cover - orjson is an optional speed-up
    _orjson_loads = None


def _loads(body: bytes) -> Any:
    """``json.loads(body)``, by orjson when it is installed: a third of the time.

    The same results, but for an integer beyond 64 bits, which orjson reads as a float (no
    property of Twilio's resources is a number that large, or a number at all but a search's
    coordinates). What orjson refuses (NaN, a BOM, UTF-16, a lone surrogate...) is read again
    by json, so that json decides, and words, every error.
    """
    if _orjson_loads is not None:
        try:
            return _orjson_loads(body)
        except ValueError:
            pass
    return json.loads(body)


# The converter's hooks for what _read reads, looked up once: _converter.structure() would
# dispatch on the type again for every response.
_READERS: Final[Mapping[type, Callable[[Any, Any], Any]]] = {
    kind: _converter.get_structure_hook(kind)
    for kind in (IncomingPhoneNumber, _NumberPage, _AvailablePage)
}


def _read(kind: type[_T], status: int, body: bytes) -> _T:
    try:
        result: _T = _READERS[kind](_loads(body), kind)
        return result
    except (ValueError, TypeError, RecursionError, cattrs.BaseValidationError) as exc:
        text = body.decode("utf-8", "replace")
        raise ResponseParseError(
            _describe(exc), status=status, body=text, sid=find_sid(text)
        ) from exc


def _describe(exc: BaseException) -> str:
    if isinstance(exc, cattrs.BaseValidationError):
        return "; ".join(cattrs.transform_error(exc, path="$"))
    if isinstance(exc, json.JSONDecodeError):
        return f"not JSON ({exc.msg} at {exc.pos})"
    return str(exc)


def parse_number(status: int, body: bytes) -> IncomingPhoneNumber:
    """The :class:`IncomingPhoneNumber` in a 2xx body, or :class:`ResponseParseError`."""
    return _read(IncomingPhoneNumber, status, body)


def parse_available_numbers(status: int, body: bytes) -> list[AvailablePhoneNumber]:
    """The numbers of one page of an ``AvailablePhoneNumbers`` search."""
    return _read(_AvailablePage, status, body).available_phone_numbers


def parse_number_page(status: int, body: bytes) -> tuple[list[IncomingPhoneNumber], str | None]:
    """The numbers of one page of the list endpoint, and the next page's URI."""
    page = _read(_NumberPage, status, body)
    return page.incoming_phone_numbers, page.next_page_uri


def parse_error_body(body: bytes) -> ErrorBody | None:
    """Twilio's JSON error body, or ``None`` when the body is something else (an HTML page)."""
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):  # RecursionError: "[[[[..." nested past the stack
        return None
    if not isinstance(data, Mapping):
        return None
    try:
        return _converter.structure(data, ErrorBody)
    except cattrs.BaseValidationError:
        return None


def number_from_json(data: Mapping[str, Any]) -> IncomingPhoneNumber:
    """An :class:`IncomingPhoneNumber` from its JSON object (as Twilio or :func:`number_to_json`
    wrote it); raises ``cattrs`` or ``ValueError`` errors where it can't be read."""
    return _converter.structure(data, IncomingPhoneNumber)


def number_to_json(number: IncomingPhoneNumber) -> dict[str, Any]:
    """The JSON object Twilio would send for ``number``, ``extra`` properties included."""
    data: dict[str, Any] = _converter.unstructure(number)
    data.update(data.pop("extra"))
    return data


# --- writing ---------------------------------------------------------------------------------

_converter.register_unstructure_hook(datetime, email.utils.format_datetime)


def form_key(name: str) -> str:
    """The spec's PascalCase form key for a snake_case field: ``sms_url`` → ``SmsUrl``."""
    return "".join(part.capitalize() for part in name.split("_"))


def form_fields(kind: type[PurchaseRequest]) -> dict[str, str]:
    """Every field of a request class, mapped to the form key it is sent as."""
    return {field.name: form_key(field.name) for field in attrs.fields(kind)}


def _form_unstructurer(kind: type[PurchaseRequest]) -> Callable[[Any], dict[str, Any]]:
    renames: dict[str, Any] = {
        name: override(rename=key) for name, key in form_fields(kind).items()
    }
    return make_dict_unstructure_fn(kind, _converter, _cattrs_omit_if_default=True, **renames)


_FORM_UNSTRUCTURERS: Final[Mapping[type, Callable[[Any], dict[str, Any]]]] = {
    kind: _form_unstructurer(kind) for kind in (NumberPurchase, MobileNumberPurchase)
}


# quote_plus(text, safe="") for ASCII text, as one str.translate through a table indexed by
# code point: the same output (unreserved characters kept, space as "+", anything else as %XX
# in upper case), without urllib's per-byte Python loop. A quarter of the cost of quote_plus
# on a webhook URL; non-ASCII text still goes to quote_plus (UTF-8, then %XX per byte).
_UNRESERVED: Final = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-~")
_FORM_ESCAPES: Final = [
    chr(code) if chr(code) in _UNRESERVED else "+" if code == 0x20 else f"%{code:02X}"
    for code in range(128)
]
# Most values of a form (webhook URLs, methods, names) are the same from one purchase to the
# next: their encoding is remembered, in a bounded cache of short strings.
_CACHED_VALUE_MAX: Final = 2048


def _form_value(value: object) -> str:
    if value is True:
        return "true"
    if value is False:
        return "false"
    text = str(value)
    return _quoted(text) if len(text) <= _CACHED_VALUE_MAX else _quote(text)


def _quote(text: str) -> str:
    return text.translate(_FORM_ESCAPES) if text.isascii() else quote_plus(text, safe="")


_quoted: Final = functools.lru_cache(maxsize=512)(_quote)


def encode_form(request: PurchaseRequest) -> bytes:
    """The request's ``application/x-www-form-urlencoded`` body: only the fields that are set."""
    fields = _FORM_UNSTRUCTURERS[type(request)](request)
    return "&".join([f"{key}={_form_value(value)}" for key, value in fields.items()]).encode()


# --- journal records -------------------------------------------------------------------------
#
# The bulk journal's lines (see _journal): a JSON object each, ``{"v": 1, "kind": ..., "key":
# ..., <the record's fields>}``. Unlike a response, a record is read strictly: the journal is
# our own writing, and a field that does not hold exactly what we write ("false" for false, "1"
# for 1) can't be trusted to say what was bought. A number in it is read as Twilio's, though:
# it is what Twilio sent.

#: The format version this code writes, and the only one it reads.
JOURNAL_VERSION: Final = 1
# What every line this code writes begins with: a last line that could be the start of one is
# a torn write; anything else is not ours.
JOURNAL_LINE_START: Final = b'{"v":'
_JOURNAL_KEY: Final = re.compile(r"[0-9a-f]{32}#(0|[1-9][0-9]*)")


class NotARecordError(ValueError):
    """A journal line that is not one of our records at all."""


class NewerRecordError(ValueError):
    """A journal record of a format version newer than this code's."""


def _non_negative(instance: object, attribute: attrs.Attribute[int], value: int) -> None:
    if value < 0:
        raise ValueError(f"{attribute.name} is {value}, and can't be negative")


@attrs.frozen(kw_only=True)
class ErrorRecord:
    """The error an outcome holds; of a type this version does not rebuild, its message."""

    type: str
    message: str

    def rebuild(self, request: object) -> TwilioNumbersError:
        """The error this record describes; ``request`` is the request it concerns."""
        if self.type == ClientClosedError.__name__:
            return ClientClosedError(self.message)
        return _RecordedError(f"{self.type}: {self.message}")


@attrs.frozen(kw_only=True)
class ApiErrorRecord(ErrorRecord):
    """A :class:`TwilioApiError`, :class:`AuthenticationError` or :class:`RateLimitedError`."""

    status: int
    code: int | None
    twilio_message: str
    more_info: str | None
    request_id: str | None
    method: str
    url: str
    # Written only when set: journals without them read as before.
    retry_after: float | None = None
    details: dict[str, Any] | None = None

    def rebuild(self, request: object) -> TwilioNumbersError:
        common: dict[str, Any] = {
            "status": self.status,
            "code": self.code,
            "message": self.twilio_message,
            "more_info": self.more_info,
            "details": self.details,
            "request_id": self.request_id,
            "method": self.method,
            "url": self.url,
        }
        if self.type == RateLimitedError.__name__:
            return _said(RateLimitedError(retry_after=self.retry_after, **common), self)
        kind = AuthenticationError if self.type == AuthenticationError.__name__ else TwilioApiError
        return _said(kind(**common), self)


@attrs.frozen(kw_only=True)
class TransportErrorRecord(ErrorRecord):
    """A :class:`TransportError`."""

    method: str
    url: str
    sent: bool

    def rebuild(self, request: object) -> TwilioNumbersError:
        if self.type == RedisLimiterError.__name__:
            redis = RedisLimiterError("", where=self.url, operation=self.method)
            return _said(redis, self)
        return _said(TransportError("", method=self.method, url=self.url, sent=self.sent), self)


@attrs.frozen(kw_only=True)
class ParseErrorRecord(ErrorRecord):
    """A :class:`ResponseParseError`: a 2xx that could not be read (the number was bought)."""

    reason: str
    status: int
    body: str
    sid: str | None

    def rebuild(self, request: object) -> TwilioNumbersError:
        error = ResponseParseError(self.reason, status=self.status, body=self.body, sid=self.sid)
        return _said(error, self)


@attrs.frozen(kw_only=True)
class UnknownOutcomeRecord(ErrorRecord):
    """A :class:`PurchaseOutcomeUnknownError`, and the failure that left the outcome unknown."""

    account: str
    cause: ErrorRecord

    def rebuild(self, request: object) -> TwilioNumbersError:
        cause = self.cause.rebuild(request)
        error = PurchaseOutcomeUnknownError(request, cause, account_sid=self.account)
        return _said(error, self)


class _RecordedError(TwilioNumbersError):
    """An error of a kind this version can't rebuild, kept as its recorded message."""


def _said(error: TwilioNumbersError, record: ErrorRecord) -> TwilioNumbersError:
    # A rebuilt error says what it said when it was recorded, word for word (a hint reworded
    # since, or a TransportError's own suffix, would otherwise change it).
    error.args = (record.message,)
    return error


def error_record(error: BaseException) -> ErrorRecord:
    """How the journal keeps ``error``: every error type an outcome can hold is rebuilt from
    its record; any other is kept as its type's name and its message."""
    name, message = type(error).__name__, str(error)
    if isinstance(error, TwilioApiError):
        return ApiErrorRecord(
            type=name,
            message=message,
            status=error.status,
            code=error.code,
            twilio_message=error.message,
            more_info=error.more_info,
            request_id=error.request_id,
            method=error.method,
            url=error.url,
            retry_after=error.retry_after if isinstance(error, RateLimitedError) else None,
            details=dict(error.details) if error.details is not None else None,
        )
    if isinstance(error, TransportError):
        return TransportErrorRecord(
            type=name, message=message, method=error.method, url=error.url, sent=error.sent
        )
    if isinstance(error, ResponseParseError):
        return ParseErrorRecord(
            type=name,
            message=message,
            reason=error.reason,
            status=error.status,
            body=error.body,
            sid=error.sid,
        )
    if isinstance(error, PurchaseOutcomeUnknownError):
        return UnknownOutcomeRecord(
            type=name, message=message, account=error.account_sid, cause=error_record(error.cause)
        )
    return ErrorRecord(type=name, message=message)


#: The record each error type is read as, by the name a record gives as its ``type``.
_ERROR_RECORDS: Final[Mapping[str, type[ErrorRecord]]] = {
    TwilioApiError.__name__: ApiErrorRecord,
    AuthenticationError.__name__: ApiErrorRecord,
    RateLimitedError.__name__: ApiErrorRecord,
    TransportError.__name__: TransportErrorRecord,
    RedisLimiterError.__name__: TransportErrorRecord,
    ResponseParseError.__name__: ParseErrorRecord,
    PurchaseOutcomeUnknownError.__name__: UnknownOutcomeRecord,
}


@attrs.frozen(kw_only=True)
class IntentRecord:
    """A request about to be sent for the first time: on disk before its first POST."""

    KIND: ClassVar = "intent"

    index: int = attrs.field(validator=_non_negative)
    account: str
    endpoint: str
    form: str


@attrs.frozen(kw_only=True)
class OutcomeRecord:
    """How a request ended: on disk before the caller sees it.

    ``resend``: Twilio certainly never processed it, so a later run may send it again;
    ``in_doubt`` as well: an attempt's outcome was unknown, so that run looks it up first.
    """

    KIND: ClassVar = "outcome"

    index: int = attrs.field(validator=_non_negative)
    status: Literal["bought", "failed", "unknown"]
    attempts: int = attrs.field(validator=_non_negative)
    reconciled: bool
    resend: bool
    in_doubt: bool
    number: IncomingPhoneNumber | None
    error: ErrorRecord | None

    def __attrs_post_init__(self) -> None:
        # The status is written for people reading the file; what decides is the number and
        # the error, so the two must agree.
        if (self.number is None) == (self.error is None):
            raise ValueError("an outcome holds a number or an error: it holds both or neither")
        if self.number is not None or isinstance(self.error, ParseErrorRecord):
            says = "bought"
        elif isinstance(self.error, UnknownOutcomeRecord):
            says = "unknown"
        else:
            says = "failed"
        if self.status != says:
            raise ValueError(f"status is {self.status!r}, but its number and error say {says!r}")
        if self.resend and self.status != "failed":
            raise ValueError(f"resend is true on a {self.status!r} outcome")
        if self.in_doubt and not self.resend:
            raise ValueError("in_doubt is true, resend false")


JournalRecord = IntentRecord | OutcomeRecord


def _exactly(kind: type, name: str) -> _Hook:
    def structure(value: Any, _: Any) -> Any:
        if type(value) is not kind:
            raise TypeError(f"expected {name}, got {_as_json(value)}")
        return value

    return structure


def _json_number(value: Any, _: Any) -> float:
    if type(value) is not float and type(value) is not int:
        raise TypeError(f"expected a number, got {_as_json(value)}")
    return value


def _json_object(value: Any, _: Any) -> dict[str, Any]:
    if type(value) is not dict:
        raise TypeError(f"expected an object, got {_as_json(value)}")
    return value


def _as_json(value: Any) -> str:
    """A value read from a journal line, as the line spells it (shortened)."""
    text = json.dumps(value, default=repr)
    return text if len(text) <= 60 else text[:57] + "..."


_EXACT: Final[Mapping[Any, _Hook]] = {
    str: _exactly(str, "a string"),
    int: _exactly(int, "an integer"),
    bool: _exactly(bool, "true or false"),
    float: _json_number,
    dict[str, Any]: _json_object,
    # Written by this code: anything it can't read means the file is not what it wrote.
    IncomingPhoneNumber: _resource_hook(IncomingPhoneNumber, _NUMBER_REQUIRED, tolerant=False),
}


def _strict(kind: Any) -> _Hook:
    """The hook that takes exactly what the journal's writer writes for ``kind``."""
    members = get_args(kind)
    if type(None) in members:
        (inner,) = (member for member in members if member is not type(None))
        hook = _strict(inner)
        return lambda value, _: None if value is None else hook(value, inner)
    return _EXACT.get(kind) or _converter.get_structure_hook(kind)


def _number_json(number: IncomingPhoneNumber | None) -> dict[str, Any] | None:
    return None if number is None else number_to_json(number)


def _strict_structurer(kind: type[Any]) -> Callable[[Any, Any], Any]:
    attrs.resolve_types(kind)
    hooks = {field.name: override(struct_hook=_strict(field.type)) for field in attrs.fields(kind)}
    return _structurer(kind, **hooks)


_ERROR_RECORD_CLASSES: Final = (
    ErrorRecord,
    ApiErrorRecord,
    TransportErrorRecord,
    ParseErrorRecord,
    UnknownOutcomeRecord,
)
#: Each error record's reader, by the record's class; filled in below.
_ERROR_READERS: Final[dict[type[ErrorRecord], Callable[[Any, Any], ErrorRecord]]] = {}


def _error_record_hook(value: Any, _: Any) -> ErrorRecord:
    # Told apart by their "type", the error's class name; any other type is kept as a message.
    name = _json_object(value, None).get("type")
    kind = _ERROR_RECORDS.get(name, ErrorRecord) if isinstance(name, str) else ErrorRecord
    return _ERROR_READERS[kind](value, kind)


# Registered first: the fields that hold an error (an outcome's, an unknown outcome's cause)
# are read through it.
_converter.register_structure_hook(ErrorRecord, _error_record_hook)
_ERROR_READERS.update((kind, _strict_structurer(kind)) for kind in _ERROR_RECORD_CLASSES)
_RECORD_READERS: Final[Mapping[str, Callable[[Any, Any], JournalRecord]]] = {
    kind.KIND: _strict_structurer(kind) for kind in (IntentRecord, OutcomeRecord)
}

# An error is written as the record it is, not as the ErrorRecord its field declares.
_AS_ITS_TYPE: Final = override(unstruct_hook=_converter.unstructure)
_converter.register_unstructure_hook(
    ApiErrorRecord,
    make_dict_unstructure_fn(
        ApiErrorRecord,
        _converter,
        retry_after=override(omit_if_default=True),
        details=override(omit_if_default=True),
    ),
)
_converter.register_unstructure_hook(
    UnknownOutcomeRecord,
    make_dict_unstructure_fn(UnknownOutcomeRecord, _converter, cause=_AS_ITS_TYPE),
)
_converter.register_unstructure_hook(
    OutcomeRecord,
    make_dict_unstructure_fn(
        OutcomeRecord, _converter, number=override(unstruct_hook=_number_json), error=_AS_ITS_TYPE
    ),
)


def journal_line(key: str, record: JournalRecord) -> bytes:
    """One line of the journal, its newline included: ``record``, of the request ``key``."""
    line = {"v": JOURNAL_VERSION, "kind": record.KIND, "key": key}
    line.update(_converter.unstructure(record))
    return json.dumps(line, separators=(",", ":"), ensure_ascii=True).encode("ascii") + b"\n"


def read_journal_line(line: bytes) -> tuple[str, JournalRecord]:
    """The key and the record of one line of a journal.

    Raises :class:`NotARecordError` for a line that is not one of our records,
    :class:`NewerRecordError` for a record of a newer format, and ``ValueError`` for a record
    that can't be read; each says what is wrong.
    """
    try:
        data = _loads(line)
    except (ValueError, RecursionError) as exc:
        raise NotARecordError(_describe(exc)) from exc
    if type(data) is not dict or "v" not in data:
        raise NotARecordError('not a JSON object with a format version "v"')
    version, kind, key = data["v"], data.get("kind"), data.get("key")
    if type(version) is int and version > JOURNAL_VERSION:
        raise NewerRecordError(
            f"journal format {version}; this version reads format {JOURNAL_VERSION}"
        )
    if type(version) is not int or version != JOURNAL_VERSION:
        raise NotARecordError(f"format version {_as_json(version)} is none this library wrote")
    if not isinstance(kind, str) or kind not in _RECORD_READERS:
        raise ValueError(f"kind {_as_json(kind)} is neither intent nor outcome @ $.kind")
    if not isinstance(key, str) or not _JOURNAL_KEY.fullmatch(key):
        raise ValueError(f"key {_as_json(key)} is not 32 hex digits, '#' and a count @ $.key")
    try:
        return key, _RECORD_READERS[kind](data, None)
    except cattrs.BaseValidationError as exc:
        raise ValueError("; ".join(cattrs.transform_error(exc, "$", _plainly))) from exc


def _plainly(exc: BaseException, _: Any) -> str:
    # What our hooks and validators say is what is wrong; cattrs' default words drop it.
    return "required field missing" if isinstance(exc, KeyError) else str(exc)
