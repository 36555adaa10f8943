"""Drift: our models against the spec, field by field, so that a new spec release (a field
added, renamed or dropped, an enum value, a SID prefix) fails here, naming what changed."""

from __future__ import annotations

import enum
import typing
from datetime import datetime
from typing import Any, get_args

import attrs
import pytest

from tests._spec import (
    field_for_key,
    path_parameters,
    request_class,
    request_properties,
    required_keys,
    response_schema,
    sid_prefix,
)
from twilio_numbers_async import (
    AddressRequirement,
    Capabilities,
    EmergencyAddressStatus,
    EmergencyStatus,
    HttpMethod,
    IncomingPhoneNumber,
    RequestValidationError,
    TwilioNumbersClient,
    VoiceReceiveMode,
)
from twilio_numbers_async._checks import SID_PREFIXES
from twilio_numbers_async._serde import form_fields
from twilio_numbers_async.models import PurchaseRequest

pytestmark = pytest.mark.contract

ENDPOINTS = pytest.mark.parametrize("mobile", [False, True], ids=["generic", "mobile"])
OUR_ENUMS = {
    AddressRequirement,
    EmergencyStatus,
    EmergencyAddressStatus,
    VoiceReceiveMode,
    HttpMethod,
}
# What a required field is set to when the test looks at another one.
REQUIRED_VALUES = {"phone_number": "+15005550006"}
HEX32 = "0123456789abcdefABCDEF0123456789"


def differences(
    what: str, ours: set[str], spec: set[str], allowed_extra: frozenset[str] = frozenset()
) -> str:
    lines = [f"{what}: the spec has {name!r}, we don't" for name in sorted(spec - ours)]
    lines += [
        f"{what}: we have {name!r}, the spec doesn't"
        for name in sorted(ours - spec - allowed_extra)
    ]
    return "\n".join(lines)


def build(kind: type[PurchaseRequest], **fields: Any) -> PurchaseRequest:
    """A request with ``fields`` and, where not given, valid values of the required ones."""
    if kind.endpoint == "IncomingPhoneNumbers.json" and not {"phone_number", "area_code"} & set(
        fields
    ):
        fields = {"area_code": "415", **fields}
    required = {
        field.name: REQUIRED_VALUES[field.name]
        for field in attrs.fields(kind)
        if field.default is attrs.NOTHING
    }
    return kind(**{**required, **fields})


def enum_in(annotation: Any) -> type[enum.StrEnum] | None:
    for arg in get_args(annotation):
        if isinstance(arg, type) and issubclass(arg, enum.StrEnum):
            return arg
    return None


# --- fields ------------------------------------------------------------------------------


@ENDPOINTS
def test_request_fields_are_the_specs_form_keys(mobile: bool) -> None:
    kind = request_class(mobile)
    problem = differences(
        f"{kind.__name__} form keys",
        set(form_fields(kind).values()),
        set(request_properties(mobile)),
    )
    assert not problem, problem


@ENDPOINTS
def test_required_fields_are_the_specs(mobile: bool) -> None:
    kind = request_class(mobile)
    ours = {form_fields(kind)[f.name] for f in attrs.fields(kind) if f.default is attrs.NOTHING}
    problem = differences(f"{kind.__name__} required fields", ours, set(required_keys(mobile)))
    assert not problem, problem
    for key in required_keys(mobile):
        name = field_for_key(mobile, key)
        with pytest.raises(RequestValidationError, match=name):
            build(kind, **{name: None})


@ENDPOINTS
def test_client_helpers_take_every_field(mobile: bool) -> None:
    method = (
        TwilioNumbersClient.create_incoming_phone_number_mobile
        if mobile
        else TwilioNumbersClient.create_incoming_phone_number
    )
    # The fields arrive as **fields, typed by a TypedDict: its keys are the keywords.
    (fields,) = typing.get_args(typing.get_type_hints(method)["fields"])  # Unpack[...]
    parameters = set(typing.get_type_hints(fields))
    expected = {field_for_key(mobile, key) for key in request_properties(mobile)}
    problem = differences(f"{method.__name__} parameters", parameters, expected)
    assert not problem, problem


@ENDPOINTS
def test_response_fields_are_the_specs(mobile: bool) -> None:
    ours = {field.name for field in attrs.fields(IncomingPhoneNumber)} - {"extra"}
    spec = set(response_schema(mobile)["properties"])
    # One model reads both answers: it may carry what only the generic schema has (`type`).
    generic_only = frozenset(response_schema(mobile=False)["properties"]) - spec
    schema = "mobile" if mobile else "generic"
    problem = differences(f"IncomingPhoneNumber vs the {schema} schema", ours, spec, generic_only)
    assert not problem, problem


@ENDPOINTS
def test_capabilities_are_the_specs(mobile: bool) -> None:
    spec = set(response_schema(mobile)["properties"]["capabilities"]["properties"])
    ours = {field.name for field in attrs.fields(Capabilities)}
    problem = differences("Capabilities", ours, spec)
    assert not problem, problem


@ENDPOINTS
def test_response_dates_are_the_specs(mobile: bool) -> None:
    attrs.resolve_types(IncomingPhoneNumber)
    properties = response_schema(mobile)["properties"]

    def is_date(kind: object) -> bool:  # datetime, or datetime | None
        return kind is datetime or datetime in get_args(kind)

    problems = [
        f"IncomingPhoneNumber.{field.name}: read as a datetime: {is_date(field.type)}"
        f", the spec's format: {properties[field.name].get('format')!r}"
        for field in attrs.fields(IncomingPhoneNumber)
        if field.name in properties
        and is_date(field.type) != (properties[field.name].get("format") == "date-time-rfc-2822")
    ]
    assert not problems, "\n".join(problems)


# --- enums -------------------------------------------------------------------------------


def spec_enums() -> list[tuple[str, list[Any], type[enum.StrEnum] | None]]:
    """(where, the spec's values, our enum) for every property of the spec with an enum."""
    found: list[tuple[str, list[Any], type[enum.StrEnum] | None]] = []
    attrs.resolve_types(IncomingPhoneNumber)
    for mobile in (False, True):
        kind = request_class(mobile)
        attrs.resolve_types(kind)
        ours = attrs.fields_dict(kind)
        for key, schema in request_properties(mobile).items():
            if "enum" in schema:
                field = ours.get(field_for_key(mobile, key))
                found.append(
                    (
                        f"{kind.__name__}.{key}",
                        schema["enum"],
                        None if field is None else enum_in(field.type),
                    )
                )
        response = attrs.fields_dict(IncomingPhoneNumber)
        for name, schema in response_schema(mobile)["properties"].items():
            if "enum" in schema:
                field = response.get(name)
                found.append(
                    (
                        f"IncomingPhoneNumber.{name} ({'mobile' if mobile else 'generic'})",
                        schema["enum"],
                        None if field is None else enum_in(field.type),
                    )
                )
    return found


def test_every_spec_enum_is_one_of_ours_with_the_same_values() -> None:
    problems = []
    for where, values, ours in spec_enums():
        spec_values = [value for value in values if value is not None]  # None: nullable
        if ours is None:
            problems.append(f"{where}: the spec has the enum {spec_values}, we have no StrEnum")
            continue
        our_values = [member.value for member in ours]
        if set(our_values) != set(spec_values):
            problems.append(
                f"{where}: {ours.__name__} has {our_values}, the spec has {spec_values}"
            )
    assert not problems, "\n".join(problems)


def test_each_of_our_enums_is_in_the_spec() -> None:
    used = {ours for _, _, ours in spec_enums()}
    assert used == OUR_ENUMS, f"not in the spec: {sorted(e.__name__ for e in OUR_ENUMS - used)}"


# --- SID prefixes and URLs ---------------------------------------------------------------


@ENDPOINTS
def test_request_sid_fields_check_the_specs_prefix(mobile: bool) -> None:
    kind = request_class(mobile)
    all_prefixes = set(SID_PREFIXES) | {
        prefix
        for schema in request_properties(mobile).values()
        if (prefix := sid_prefix(schema)) is not None
    }
    problems = []
    for key, schema in request_properties(mobile).items():
        prefix = sid_prefix(schema)
        if prefix is None:
            continue
        assert schema.get("minLength") == schema.get("maxLength") == 34, key
        name = field_for_key(mobile, key)
        try:
            build(kind, **{name: prefix + HEX32})
        except RequestValidationError as exc:
            problems.append(f"{kind.__name__}.{name} refuses a {prefix} SID: {exc}")
        for other in sorted(all_prefixes - {prefix}):
            try:
                build(kind, **{name: other + HEX32})
            except RequestValidationError:
                continue
            problems.append(f"{kind.__name__}.{name} takes a {other} SID; the spec: {prefix}")
    assert not problems, "\n".join(problems)


@ENDPOINTS
def test_response_sid_fields_know_the_specs_prefix(mobile: bool) -> None:
    properties = response_schema(mobile)["properties"]
    problems = []
    for field in attrs.fields(IncomingPhoneNumber):
        if field.name not in properties:
            continue
        spec_prefix = sid_prefix(properties[field.name])
        our_prefix = field.metadata.get("sid")
        if spec_prefix != our_prefix:
            problems.append(
                f"IncomingPhoneNumber.{field.name}: our SID prefix {our_prefix!r}, "
                f"the spec's {spec_prefix!r}"
            )
    assert not problems, "\n".join(problems)


@ENDPOINTS
def test_account_sid_in_the_path_is_checked_like_the_spec(mobile: bool) -> None:
    prefix = sid_prefix(path_parameters(mobile)["AccountSid"])
    assert prefix is not None
    TwilioNumbersClient(prefix + HEX32, "token")
    for other in sorted(set(SID_PREFIXES) - {prefix}):
        with pytest.raises(RequestValidationError, match="account_sid"):
            TwilioNumbersClient(other + HEX32, "token")


@ENDPOINTS
def test_request_url_fields_are_the_specs(mobile: bool) -> None:
    kind = request_class(mobile)
    problems = []
    for key, schema in request_properties(mobile).items():
        if schema.get("type") != "string" or "enum" in schema or "pattern" in schema:
            continue
        name = field_for_key(mobile, key)
        try:
            build(kind, **{name: "plainly not a URL"})
            checks_url = False
        except RequestValidationError:
            checks_url = True
        if checks_url and key != "AreaCode" and schema.get("format") not in ("uri", "phone-number"):
            problems.append(f"{kind.__name__}.{name} refuses text the spec allows")
        if schema.get("format") == "uri":
            if not checks_url:
                problems.append(f"{kind.__name__}.{name} takes any text; the spec: format uri")
            build(kind, **{name: "https://example.com/hook"})
    assert not problems, "\n".join(problems)


@ENDPOINTS
def test_response_url_fields_are_the_specs(mobile: bool) -> None:
    properties = response_schema(mobile)["properties"]
    problems = [
        f"IncomingPhoneNumber.{field.name}: read as a URL: {'uri' in field.metadata}, "
        f"the spec's format: {properties[field.name].get('format')!r}"
        for field in attrs.fields(IncomingPhoneNumber)
        if field.name in properties
        and ("uri" in field.metadata) != (properties[field.name].get("format") == "uri")
    ]
    assert not problems, "\n".join(problems)
