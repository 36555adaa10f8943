"""What Prism does not check, checked in Python from the same spec file.

Prism ignores form keys the spec does not have, Twilio's own formats (``phone-number``,
``http-method``, ``date-time-rfc-2822``) and ``x-twilio.conditional``. Every rule here is
read from the spec, so that a release that changes one fails a test.
"""

from __future__ import annotations

import email.utils
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests._spec import (
    GENERIC_PATH,
    LIST_PAGE_URI_PROPERTIES,
    conditional_groups,
    e164_numbers,
    field_for_key,
    full_request,
    list_response_schema,
    load_spec,
    not_e164_numbers,
    property_examples,
    request_class,
    request_properties,
    required_keys,
    response_schema,
    valid_requests,
    value_strategy,
)
from twilio_numbers_async import (
    HttpMethod,
    NumberPurchase,
    RequestValidationError,
    TwilioNumbersClient,
)
from twilio_numbers_async._serde import encode_form, form_fields, number_from_json, parse_rfc2822
from twilio_numbers_async.models import PurchaseRequest

pytestmark = pytest.mark.contract

ENDPOINTS = pytest.mark.parametrize("mobile", [False, True], ids=["generic", "mobile"])
ACCOUNT_SID = "AC" + "0123456789abcdef" * 2


def form_of(request: PurchaseRequest) -> list[tuple[str, str]]:
    return parse_qsl(
        encode_form(request).decode("ascii"), keep_blank_values=True, strict_parsing=True
    )


def sent_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def with_required(mobile: bool, **fields: Any) -> PurchaseRequest:
    """A request of one endpoint with ``fields``, and a valid value for what must be given."""
    if mobile:
        fields.setdefault("phone_number", "+447700900123")
    elif "phone_number" not in fields and "area_code" not in fields:
        fields["area_code"] = "415"
    return request_class(mobile)(**fields)


def properties_with_format(fmt: str) -> list[tuple[bool, str]]:
    """(mobile, key) of every request body property with ``format: fmt``."""
    return [
        (mobile, key)
        for mobile in (False, True)
        for key, schema in request_properties(mobile).items()
        if schema.get("format") == fmt
    ]


# --- (a) the form keys we send -------------------------------------------------------------


@ENDPOINTS
def test_form_keys_are_exactly_the_request_properties(mobile: bool) -> None:
    spec = set(request_properties(mobile))
    assert set(form_fields(request_class(mobile)).values()) == spec
    # What encode_form writes: the fullest requests of the endpoint, together, send every key.
    by = ["phone_number"] if mobile else ["phone_number", "area_code"]
    sent: set[str] = set()
    for name in by:
        keys = [key for key, _ in form_of(full_request(mobile, by=name))]
        assert len(keys) == len(set(keys)), f"a key sent twice: {keys}"
        sent |= set(keys)
    assert sent == spec, f"never sent: {sorted(spec - sent)}; unknown: {sorted(sent - spec)}"


@ENDPOINTS
@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_the_form_holds_exactly_the_fields_set(mobile: bool, data: st.DataObject) -> None:
    request = data.draw(valid_requests(mobile))
    properties = request_properties(mobile)
    expected = {
        key: sent_value(value)
        for name, key in form_fields(type(request)).items()
        if (value := getattr(request, name)) is not None
    }
    form = form_of(request)
    assert {key for key, _ in form} <= set(properties)
    assert dict(form) == expected
    assert len(form) == len(expected)


@settings(max_examples=200, deadline=None)
@given(
    text=st.text(st.one_of(st.characters(), st.characters(categories=["Cs"])), max_size=64),
    key=st.sampled_from(["FriendlyName", "ApiVersion"]),
)
def test_any_text_we_take_is_sent_whole(text: str, key: str) -> None:
    # The spec's free-text properties are plain strings, sent as UTF-8: whatever a model
    # takes must encode, and decode back unchanged (a lone surrogate can't: it is refused).
    fields: dict[str, Any] = {field_for_key(False, key): text}
    try:
        request = NumberPurchase(area_code="415", **fields)
    except RequestValidationError:
        return
    assert dict(form_of(request))[key] == text


# --- (b) Twilio's own formats ----------------------------------------------------------------


def test_the_formats_are_where_we_expect_them() -> None:
    # Not hard-coded rules, but a guard: if a release drops every use of a format, the tests
    # below would pass vacuously.
    assert properties_with_format("phone-number")
    assert properties_with_format("http-method")
    assert any(
        schema.get("format") == "date-time-rfc-2822"
        for schema in response_schema(mobile=False)["properties"].values()
    )


@settings(max_examples=200, deadline=None)
@given(data=st.data(), number=e164_numbers())
def test_phone_number_properties_take_e164_numbers(data: st.DataObject, number: str) -> None:
    mobile, key = data.draw(st.sampled_from(properties_with_format("phone-number")))
    name = field_for_key(mobile, key)
    assert getattr(with_required(mobile, **{name: number}), name) == number


@settings(max_examples=200, deadline=None)
@given(data=st.data(), text=not_e164_numbers())
def test_phone_number_properties_refuse_anything_else(data: st.DataObject, text: str) -> None:
    mobile, key = data.draw(st.sampled_from(properties_with_format("phone-number")))
    name = field_for_key(mobile, key)
    with pytest.raises(RequestValidationError, match=name):
        with_required(mobile, **{name: text})


def test_phone_number_examples_of_the_spec_are_e164() -> None:
    for mobile, key in properties_with_format("phone-number"):
        examples = property_examples({key})[key]
        assert examples, f"the spec has no example of {key}"
        name = field_for_key(mobile, key)
        for example in examples:
            with_required(mobile, **{name: example})


async def test_the_list_filter_takes_only_e164_numbers() -> None:
    # The GET list's PhoneNumber query parameter is format: phone-number too. The client
    # looks up exact numbers only, and checks before any I/O (nothing listens on port 9).
    operation = load_spec()["paths"][GENERIC_PATH]["get"]
    formats = {p["name"]: p["schema"].get("format") for p in operation["parameters"]}
    assert formats["PhoneNumber"] == "phone-number"
    async with TwilioNumbersClient(
        ACCOUNT_SID, "token", base_url="http://127.0.0.1:9", rate_limit=None
    ) as client:
        for text in ("4155551234", "+1 415 555 1234", "+0123", ""):
            with pytest.raises(RequestValidationError, match="phone_number"):
                await client.find_incoming_phone_number(text)


def test_http_method_properties_are_our_http_method() -> None:
    ours = [member.value for member in HttpMethod]
    for mobile, key in properties_with_format("http-method"):
        schema = request_properties(mobile)[key]
        assert schema["enum"] == ours, key
        name = field_for_key(mobile, key)
        for value in schema["enum"]:
            assert getattr(with_required(mobile, **{name: value}), name) is HttpMethod(value)
        for wrong in ("get", "Post", "PUT", "DELETE", "", " GET"):
            with pytest.raises(RequestValidationError, match=name):
                with_required(mobile, **{name: wrong})
    for mobile in (False, True):
        for name, schema in response_schema(mobile)["properties"].items():
            if schema.get("format") == "http-method":
                assert [v for v in schema["enum"] if v is not None] == ours, name
                for value in ours:
                    assert read_property(name, value) is HttpMethod(value)


#: What a resource needs besides the property under test: a number that names itself.
IDENTITY = {
    "sid": "PN" + "0" * 32,
    "account_sid": "AC" + "0" * 32,
    "phone_number": "+14155550100",
    "date_created": "Thu, 30 Jul 2015 23:19:04 +0000",
    "date_updated": "Thu, 30 Jul 2015 23:19:04 +0000",
}


def read_property(name: str, value: object) -> object:
    """How the converter reads ``value`` as the property ``name`` of a number."""
    return getattr(number_from_json({**IDENTITY, name: value}), name)


def rfc2822_properties() -> set[str]:
    return {
        name
        for mobile in (False, True)
        for name, schema in response_schema(mobile)["properties"].items()
        if schema.get("format") == "date-time-rfc-2822"
    }


def test_rfc2822_examples_of_the_spec_are_read() -> None:
    examples = property_examples(rfc2822_properties())
    for name, values in examples.items():
        assert values, f"the spec has no example of {name}"
        for value in values:
            parsed = parse_rfc2822(value)
            assert parsed == email.utils.parsedate_to_datetime(value), value
            assert parsed.utcoffset() is not None, value
            assert read_property(name, value) == parsed


offsets = st.integers(-(23 * 60 + 59), 23 * 60 + 59).map(
    lambda minutes: timezone(timedelta(minutes=minutes))
)


@settings(max_examples=200, deadline=None)
@given(
    moment=st.datetimes(
        min_value=datetime(1970, 1, 2), max_value=datetime(2199, 12, 31), timezones=offsets
    ).map(lambda moment: moment.replace(microsecond=0))
)
def test_rfc2822_dates_are_read_with_their_offset(moment: datetime) -> None:
    text = email.utils.format_datetime(moment)
    for name in rfc2822_properties():
        parsed = read_property(name, text)
        assert parsed == moment
        assert parsed.utcoffset() == moment.utcoffset()
    assert parse_rfc2822(email.utils.format_datetime(moment.astimezone(UTC))).tzinfo is UTC


# --- (c) x-twilio.conditional ----------------------------------------------------------------


def test_the_generic_endpoint_has_a_conditional_group() -> None:
    groups = conditional_groups(mobile=False)
    assert groups, "x-twilio.conditional is gone: NumberPurchase still demands one of them"
    for group in groups:
        for name in group:
            assert name in form_fields(NumberPurchase), f"{name} of {group} is no field of ours"
            assert form_fields(NumberPurchase)[name] in request_properties(mobile=False)
    assert conditional_groups(mobile=True) == []
    assert required_keys(mobile=False) == []


@settings(max_examples=50, deadline=None)
@given(data=st.data())
def test_exactly_one_field_of_each_conditional_group(data: st.DataObject) -> None:
    for group in conditional_groups(mobile=False):
        keys = {name: form_fields(NumberPurchase)[name] for name in group}
        values = {name: data.draw(value_strategy(False, keys[name]), label=name) for name in group}
        for name in group:
            assert getattr(NumberPurchase(**{name: values[name]}), name) == values[name]
        with pytest.raises(RequestValidationError):
            NumberPurchase()
        with pytest.raises(RequestValidationError):
            NumberPurchase(**values)


# --- the spec's one patch for prism proxy ------------------------------------------------------


def test_the_list_page_patch_is_still_needed() -> None:
    """tests._spec.proxy_spec reads the list page's links as uri-reference: the spec says
    format: uri, but its own example (like Twilio) sends paths. When a release fixes either,
    this fails: drop the patch."""
    properties = list_response_schema()["properties"]
    examples = property_examples(set(LIST_PAGE_URI_PROPERTIES))
    relative = [
        name
        for name in LIST_PAGE_URI_PROPERTIES
        if properties[name].get("format") == "uri"
        and any(
            isinstance(value, str) and value.startswith("/") and not urlsplit(value).scheme
            for value in examples[name]
        )
    ]
    assert relative, "the spec's list page links are consistent now: drop the proxy patch"
