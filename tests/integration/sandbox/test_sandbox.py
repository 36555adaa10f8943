"""The sandbox behaves like Twilio: tested over HTTP with a raw aiohttp session, not the client."""

from __future__ import annotations

import asyncio
import contextlib
import re
from typing import Any

import aiohttp
import pytest

from tests._spec import (
    check_formats,
    list_response_schema,
    request_properties,
    requires_spec,
    response_schema,
    validate,
)
from twilio_numbers_async._serde import form_key
from twilio_numbers_async.sandbox import (
    Fault,
    Faults,
    PurchaseRecord,
    RequestRecord,
    Sandbox,
)
from twilio_numbers_async.sandbox._catalog import capabilities
from twilio_numbers_async.sandbox._form import GENERIC_RULES, MOBILE_RULES
from twilio_numbers_async.sandbox._resource import snake_case

from ._http import PN_SID, REQUEST_ID, Answer, Api, assert_error

AP_SID = "AP" + "a" * 32
FULL_FORM = {
    "ApiVersion": "2010-04-01",
    "FriendlyName": "support line",
    "SmsApplicationSid": AP_SID,
    "SmsFallbackMethod": "GET",
    "SmsFallbackUrl": "https://example.com/sms-fallback",
    "SmsMethod": "GET",
    "SmsUrl": "https://example.com/sms",
    "StatusCallback": "https://example.com/status",
    "StatusCallbackMethod": "GET",
    "VoiceApplicationSid": "AP" + "b" * 32,
    "VoiceCallerIdLookup": "true",
    "VoiceFallbackMethod": "GET",
    "VoiceFallbackUrl": "https://example.com/voice-fallback",
    "VoiceMethod": "GET",
    "VoiceUrl": "https://example.com/voice",
    "EmergencyStatus": "Active",
    "EmergencyAddressSid": "AD" + "c" * 32,
    "TrunkSid": "TK" + "d" * 32,
    "IdentitySid": "RI" + "e" * 32,
    "AddressSid": "AD" + "f" * 32,
    "VoiceReceiveMode": "fax",
    "BundleSid": "BU" + "0" * 32,
}


# --- authentication and accounts -----------------------------------------------------------


async def test_auth_token_buys(api: Api) -> None:
    answer = await api.buy({"PhoneNumber": "+14155550100"})
    assert answer.status == 201
    assert answer.body["account_sid"] == api.sandbox.account_sid


@pytest.mark.parametrize(
    "header",
    [
        None,
        "Basic " + "!!!not base64",
        "Bearer abc",
        "wrong token",
        "wrong user",
    ],
)
async def test_bad_credentials_get_401(api: Api, header: str | None) -> None:
    sandbox = api.sandbox
    if header == "wrong token":
        header = aiohttp.encode_basic_auth(sandbox.account_sid, "0" * 32)
    elif header == "wrong user":
        header = aiohttp.encode_basic_auth("AC" + "9" * 32, sandbox.auth_token)
    for answer in (await api.buy({"AreaCode": "415"}, auth=header), await api.list(auth=header)):
        assert_error(answer, 401, 20003)
        assert answer.body["message"] == "Authenticate"
        assert answer.headers["WWW-Authenticate"] == 'Basic realm="Twilio API"'
    assert sandbox.purchases == []


async def test_api_key_acts_on_main_account_and_subaccounts(api: Api) -> None:
    key, secret = api.sandbox.add_api_key()
    assert re.fullmatch(r"SK[0-9a-f]{32}", key)
    sub = api.sandbox.add_subaccount()
    auth = aiohttp.encode_basic_auth(key, secret)
    assert (await api.buy({"AreaCode": "415"}, auth=auth)).status == 201
    assert (await api.buy({"AreaCode": "415"}, auth=auth, account=sub)).status == 201
    wrong = aiohttp.encode_basic_auth(key, secret + "x")
    assert_error(await api.buy({"AreaCode": "415"}, auth=wrong), 401, 20003)


async def test_main_credentials_act_on_subaccounts(api: Api) -> None:
    sandbox = api.sandbox
    sub = sandbox.add_subaccount()
    assert sandbox.subaccounts == [sub]
    answer = await api.buy({"PhoneNumber": "+14155550100"}, account=sub)
    assert answer.status == 201
    assert answer.body["account_sid"] == sub
    assert answer.body["uri"].startswith(f"/2010-04-01/Accounts/{sub}/IncomingPhoneNumbers/PN")
    assert list(sandbox.owned(sub)) == ["+14155550100"]
    assert sandbox.owned() == {}
    listed = await api.list(account=sub)
    assert [n["phone_number"] for n in listed.body["incoming_phone_numbers"]] == ["+14155550100"]
    assert (await api.list()).body["incoming_phone_numbers"] == []


async def test_foreign_account_is_404_after_auth(api: Api) -> None:
    foreign = "AC" + "1" * 32
    assert_error(await api.buy({"AreaCode": "415"}, account=foreign), 404, 20404)
    assert_error(await api.list(account=foreign), 404, 20404)
    assert_error(await api.buy({"AreaCode": "415"}, account="not-an-account"), 404, 20404)
    bad = aiohttp.encode_basic_auth(api.sandbox.account_sid, "nope")
    assert_error(await api.buy({"AreaCode": "415"}, account=foreign, auth=bad), 401, 20003)


async def test_unknown_route_and_method(api: Api) -> None:
    base = f"{api.sandbox.url}/2010-04-01/Accounts/{api.sandbox.account_sid}"
    assert_error(await api.request("GET", f"{base}/Calls.json"), 404, 20404)
    assert_error(await api.request("GET", f"{api.sandbox.url}/"), 404, 20404)
    answer = await api.request("DELETE", f"{base}/IncomingPhoneNumbers.json")
    assert_error(answer, 405, 20004)
    assert answer.headers["Allow"] == "GET, POST"
    answer = await api.request("GET", f"{base}/IncomingPhoneNumbers/Mobile.json")
    assert_error(answer, 405, 20004)
    assert answer.headers["Allow"] == "POST"


# --- responses follow the spec -------------------------------------------------------------


@pytest.mark.contract
@requires_spec
@pytest.mark.parametrize("mobile", [False, True], ids=["generic", "mobile"])
async def test_full_purchase_matches_spec_and_echoes_form(api: Api, mobile: bool) -> None:
    number = "+447700900123" if mobile else "+14155550100"
    answer = await api.buy({**FULL_FORM, "PhoneNumber": number}, mobile=mobile)
    assert answer.status == 201, answer.text
    validate(answer.body, response_schema(mobile, exact=True))
    check_formats(answer.body)
    for key, value in FULL_FORM.items():
        expected: Any = value == "true" if key == "VoiceCallerIdLookup" else value
        assert answer.body[snake_case(key)] == expected, key
    assert answer.body["phone_number"] == number


@pytest.mark.contract
@requires_spec
@pytest.mark.parametrize("mobile", [False, True], ids=["generic", "mobile"])
async def test_minimal_purchase_matches_spec(api: Api, mobile: bool) -> None:
    answer = await api.buy({"PhoneNumber": "+14155550100"}, mobile=mobile)
    validate(answer.body, response_schema(mobile, exact=True))
    check_formats(answer.body)


async def test_minimal_purchase_resource(api: Api) -> None:
    body = (await api.buy({"PhoneNumber": "+14155550100"})).body
    sid = body["sid"]
    assert PN_SID.fullmatch(sid)
    assert (
        body["uri"]
        == f"/2010-04-01/Accounts/{api.sandbox.account_sid}/IncomingPhoneNumbers/{sid}.json"
    )
    assert body["friendly_name"] == "(415) 555-0100"
    assert body["status"] == "in-use"
    assert body["origin"] == "twilio"
    assert body["type"] == "local"
    # The number's own capabilities, drawn from the seed: what a search showed for it.
    assert body["capabilities"] == capabilities("+14155550100", seed=7)
    assert {type(value) for value in body["capabilities"].values()} == {bool}
    assert re.fullmatch(
        r"[A-Z][a-z]{2}, \d\d [A-Z][a-z]{2} \d{4} \d\d:\d\d:\d\d \+0000", body["date_created"]
    )
    assert body["date_updated"] == body["date_created"]
    # Unset SIDs and URLs are null, never "" (which would break the spec's pattern and format).
    for prop in (
        "sms_url",
        "voice_url",
        "status_callback",
        "trunk_sid",
        "address_sid",
        "bundle_sid",
    ):
        assert body[prop] is None, prop
    assert "" not in body.values()


async def test_mobile_response_has_no_type(api: Api) -> None:
    answer = await api.buy({"PhoneNumber": "+447700900123"}, mobile=True)
    assert answer.status == 201
    assert "type" not in answer.body
    # The list shows it with the generic schema, which has a type.
    listed = (await api.list()).body["incoming_phone_numbers"]
    assert listed[0]["type"] == "mobile"


async def test_toll_free_area_code_gives_toll_free_type(api: Api) -> None:
    body = (await api.buy({"AreaCode": "800"})).body
    assert body["type"] == "toll-free"
    assert body["phone_number"].startswith("+1800")


@pytest.mark.contract
@requires_spec
@pytest.mark.parametrize("mobile", [False, True], ids=["generic", "mobile"])
def test_form_rules_restate_the_spec(mobile: bool) -> None:
    rules = MOBILE_RULES if mobile else GENERIC_RULES
    spec = request_properties(mobile)
    assert set(rules) == set(spec)
    for key, rule in rules.items():
        prop = spec[key]
        if "pattern" in prop:
            assert rule.kind == "sid", key
            assert prop["pattern"] == f"^{rule.prefix}[0-9a-fA-F]{{32}}$", key
        elif "enum" in prop:
            assert rule.kind == "enum", key
            assert list(rule.choices) == prop["enum"], key
        elif prop.get("type") == "boolean":
            assert rule.kind == "bool", key
        elif prop.get("format") == "uri":
            assert rule.kind == "uri", key
        elif prop.get("format") == "phone-number":
            assert rule.kind == "phone", key
        elif key == "AreaCode":
            assert rule.kind == "area"
        else:
            assert rule.kind == "text", key
    assert rules["FriendlyName"].max_length == 64
    assert "64 characters" in spec["FriendlyName"]["description"]


@pytest.mark.contract
@requires_spec
def test_every_form_key_has_its_snake_case_property() -> None:
    properties = response_schema(mobile=False)["properties"]
    for key in GENERIC_RULES:
        if key != "AreaCode":
            assert snake_case(key) in properties, key
            assert form_key(snake_case(key)) == key


# --- magic numbers and inventory -----------------------------------------------------------


@pytest.mark.parametrize("mobile", [False, True], ids=["generic", "mobile"])
async def test_magic_numbers(api: Api, mobile: bool) -> None:
    first = await api.buy({"PhoneNumber": "+15005550006"}, mobile=mobile)
    again = await api.buy({"PhoneNumber": "+15005550006"}, mobile=mobile)
    assert first.status == again.status == 201
    assert first.body["sid"] != again.body["sid"]
    assert [p.phone_number for p in api.sandbox.purchases] == ["+15005550006"] * 2
    assert api.sandbox.owned()["+15005550006"]["sid"] == again.body["sid"]
    assert_error(await api.buy({"PhoneNumber": "+15005550000"}, mobile=mobile), 400, 21422)
    assert_error(await api.buy({"PhoneNumber": "+15005550001"}, mobile=mobile), 400, 21421)
    assert len(api.sandbox.purchases) == 2


async def test_magic_area_codes(api: Api) -> None:
    assert_error(await api.buy({"AreaCode": "533"}), 400, 21452)
    answer = await api.buy({"AreaCode": "500"})
    assert answer.status == 201
    assert answer.body["phone_number"] == "+15005550006"
    assert (await api.buy({"AreaCode": "500"})).status == 201


async def test_a_number_sells_once_across_accounts_and_endpoints(api: Api) -> None:
    sub = api.sandbox.add_subaccount()
    assert (await api.buy({"PhoneNumber": "+14155550100"})).status == 201
    for answer in (
        await api.buy({"PhoneNumber": "+14155550100"}),
        await api.buy({"PhoneNumber": "+14155550100"}, account=sub),
        await api.buy({"PhoneNumber": "+14155550100"}, mobile=True),
    ):
        assert_error(answer, 400, 21422)
        assert answer.body["message"] == "PhoneNumber +14155550100 is not available"
    assert len(api.sandbox.purchases) == 1


async def test_area_code_stock_is_sold_once_skipping_numbers_sold_by_phone_number(
    api: Api,
) -> None:
    # The fixture's stock is 20 numbers per area code: +1415555{0000..0019}.
    stock = {f"+14155550{k:03d}" for k in range(20)}
    assert (await api.buy({"PhoneNumber": "+14155550003"})).status == 201
    bought = set()
    for _ in range(19):
        answer = await api.buy({"AreaCode": "415"})
        assert answer.status == 201, answer.text
        bought.add(answer.body["phone_number"])
    assert bought == stock - {"+14155550003"}
    assert_error(await api.buy({"AreaCode": "415"}), 400, 21452)
    assert (await api.buy({"AreaCode": "212"})).status == 201


async def test_area_code_order_is_seeded() -> None:
    async def numbers(seed: int) -> list[str]:
        async with Sandbox(seed=seed) as sandbox, aiohttp.ClientSession() as session:
            api = Api(sandbox, session)
            return [(await api.buy({"AreaCode": "415"})).body["phone_number"] for _ in range(3)]

    first = await numbers(1)
    assert first == await numbers(1)
    assert first != await numbers(2)


@pytest.mark.parametrize("area_code", ["41", "4155", "abc", "", "015", "123", "911", "411"])
async def test_invalid_area_code_is_21451(api: Api, area_code: str) -> None:
    assert_error(await api.buy({"AreaCode": area_code}), 400, 21451)


# --- validation ------------------------------------------------------------------------------


@pytest.mark.parametrize("number", ["4155550100", "+0123", "+1 4155550100", "", "+1415555010x"])
@pytest.mark.parametrize("mobile", [False, True], ids=["generic", "mobile"])
async def test_bad_phone_number_is_21421(api: Api, number: str, mobile: bool) -> None:
    answer = await api.buy({"PhoneNumber": number}, mobile=mobile)
    assert_error(answer, 400, 21421)
    assert answer.body["message"] == "PhoneNumber is invalid"


async def test_nothing_to_buy_is_21605(api: Api) -> None:
    assert_error(await api.buy({"SmsUrl": "https://example.com"}), 400, 21605)
    assert_error(await api.buy({}), 400, 21605)
    # AreaCode is not a key of the Mobile endpoint: ignored, so PhoneNumber is missing.
    assert_error(await api.buy({"AreaCode": "415"}, mobile=True), 400, 21605)


@pytest.mark.parametrize("url", ["not a url", "ftp://example.com/x", "/relative", "", "https://"])
async def test_bad_url_is_21502(api: Api, url: str) -> None:
    for key in ("SmsUrl", "VoiceFallbackUrl", "StatusCallback"):
        answer = await api.buy({"AreaCode": "415", key: url})
        assert_error(answer, 400, 21502)
        assert key in answer.body["message"]


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("SmsMethod", "PUT"),
        ("VoiceMethod", "post"),
        ("VoiceCallerIdLookup", "yes"),
        ("VoiceCallerIdLookup", "True"),
        ("EmergencyStatus", "active"),
        ("VoiceReceiveMode", "sms"),
        ("SmsApplicationSid", "AP123"),
        ("TrunkSid", AP_SID),
        ("BundleSid", "BU" + "g" * 32),
        ("FriendlyName", "x" * 65),
    ],
)
async def test_other_bad_values_are_20001_naming_the_key(api: Api, key: str, value: str) -> None:
    answer = await api.buy({"AreaCode": "415", key: value})
    assert_error(answer, 400, 20001)
    assert key in answer.body["message"]
    assert api.sandbox.purchases == []


async def test_friendly_name_of_64_characters_is_fine(api: Api) -> None:
    answer = await api.buy({"AreaCode": "415", "FriendlyName": "x" * 64})
    assert answer.status == 201
    assert answer.body["friendly_name"] == "x" * 64


async def test_unknown_keys_are_ignored_but_recorded(api: Api) -> None:
    answer = await api.buy({"AreaCode": "415", "Foo": "bar", "sms_url": "not checked"})
    assert answer.status == 201
    assert "foo" not in answer.body
    assert answer.body["sms_url"] is None
    assert api.sandbox.purchases[0].form == {
        "AreaCode": "415",
        "Foo": "bar",
        "sms_url": "not checked",
    }


async def test_form_must_be_urlencoded_utf8(api: Api) -> None:
    answer = await api.request("POST", api.url(), json={"AreaCode": "415"})
    assert_error(answer, 400, 20001)
    assert "Content-Type" in answer.body["message"]
    form_type = {"Content-Type": "application/x-www-form-urlencoded"}
    answer = await api.request(
        "POST", api.url(), data=b"AreaCode=415&FriendlyName=%FF", headers=form_type
    )
    assert_error(answer, 400, 20001)
    assert "UTF-8" in answer.body["message"]


async def test_phone_number_wins_over_area_code(api: Api) -> None:
    answer = await api.buy({"PhoneNumber": "+12125550100", "AreaCode": "415"})
    assert answer.body["phone_number"] == "+12125550100"
    assert_error(await api.buy({"PhoneNumber": "+12125550101", "AreaCode": "4"}), 400, 21451)


# --- the GET list ----------------------------------------------------------------------------


async def buy_numbers(api: Api, *numbers: str, **form: str) -> list[str]:
    sids = []
    for number in numbers:
        answer = await api.buy({"PhoneNumber": number, **form})
        assert answer.status == 201, answer.text
        sids.append(answer.body["sid"])
    return sids


def listed_numbers(answer: Answer) -> list[str]:
    assert answer.status == 200, answer.text
    return [n["phone_number"] for n in answer.body["incoming_phone_numbers"]]


async def test_list_filters(api: Api) -> None:
    await buy_numbers(api, "+14155550100", "+14155550199", "+12125550100")
    await buy_numbers(api, "+13105550100", FriendlyName="front desk")
    assert listed_numbers(await api.list({"PhoneNumber": "+14155550100"})) == ["+14155550100"]
    assert listed_numbers(await api.list({"PhoneNumber": "555010"})) == [
        "+14155550100",
        "+12125550100",
        "+13105550100",
    ]
    assert listed_numbers(await api.list({"PhoneNumber": "+1415555****"})) == [
        "+14155550100",
        "+14155550199",
    ]
    assert listed_numbers(await api.list({"PhoneNumber": "+1999"})) == []
    assert listed_numbers(await api.list({"FriendlyName": "front desk"})) == ["+13105550100"]
    assert listed_numbers(await api.list({"FriendlyName": "(212) 555-0100"})) == ["+12125550100"]
    assert listed_numbers(await api.list({"FriendlyName": "front"})) == []
    assert listed_numbers(await api.list({"Origin": "hosted"})) == []
    assert len(listed_numbers(await api.list({"Origin": "twilio", "Beta": "false"}))) == 4
    # An unencoded "+" arrives as a space; it still means "+".
    raw = f"{api.url()}?PhoneNumber=+12125550100"
    assert listed_numbers(await api.request("GET", raw)) == ["+12125550100"]


async def test_list_exact_number_still_finds_longer_numbers_containing_it(api: Api) -> None:
    # +44 numbers have 9 or 10 digits after the code, so one can hold the other (+1 can't).
    await buy_numbers(api, "+44207946000", "+442079460001")
    assert listed_numbers(await api.list({"PhoneNumber": "+44207946000"})) == [
        "+44207946000",
        "+442079460001",
    ]
    assert listed_numbers(await api.list({"PhoneNumber": "+442079460001"})) == ["+442079460001"]


async def test_list_pages_follow_next_and_previous(api: Api) -> None:
    sids = await buy_numbers(api, *(f"+1415555010{k}" for k in range(5)))
    answer = await api.list({"PageSize": "2"})
    body = answer.body
    assert (body["page"], body["page_size"], body["start"], body["end"]) == (0, 2, 0, 1)
    assert body["previous_page_uri"] is None
    assert body["first_page_uri"].endswith("IncomingPhoneNumbers.json?PageSize=2&Page=0")
    seen, pages = [], []
    while True:
        seen += [n["sid"] for n in body["incoming_phone_numbers"]]
        pages.append(body)
        if body["next_page_uri"] is None:
            break
        answer = await api.request("GET", api.sandbox.url + body["next_page_uri"])
        body = answer.body
    assert seen == sids
    assert [p["page"] for p in pages] == [0, 1, 2]
    assert (pages[2]["start"], pages[2]["end"]) == (4, 4)
    back = await api.request("GET", api.sandbox.url + pages[2]["previous_page_uri"])
    assert [n["sid"] for n in back.body["incoming_phone_numbers"]] == sids[2:4]
    assert listed_numbers(await api.list({"PageSize": "2", "Page": "1"})) == [
        "+14155550102",
        "+14155550103",
    ]


@pytest.mark.parametrize(
    "params",
    [
        {"PageSize": "0"},
        {"PageSize": "1001"},
        {"PageSize": "x"},
        {"Page": "-1"},
        {"PageToken": "PAPN" + "0" * 32},
        {"PageToken": "garbage"},
        {"PhoneNumber": "abc"},
        {"Beta": "maybe"},
    ],
)
async def test_list_bad_parameters_are_400(api: Api, params: dict[str, str]) -> None:
    assert_error(await api.list(params), 400, 20001)


async def test_list_page_size_bounds_are_allowed(api: Api) -> None:
    assert (await api.list({"PageSize": "1"})).status == 200
    assert (await api.list({"PageSize": "1000"})).status == 200


@pytest.mark.contract
@requires_spec
async def test_list_matches_spec(api: Api) -> None:
    await buy_numbers(api, "+14155550100", "+14155550101", SmsUrl="https://example.com/sms")
    await api.buy({"PhoneNumber": "+447700900123"}, mobile=True)
    body = (await api.list({"PageSize": "2"})).body
    validate(body, list_response_schema())
    assert set(body) == set(list_response_schema()["properties"])
    item_schema = response_schema(mobile=False, exact=True)
    for item in body["incoming_phone_numbers"]:
        validate(item, item_schema)
        check_formats(item)


# --- headers, concurrency, records -----------------------------------------------------------


async def test_every_answer_has_a_request_id(api: Api) -> None:
    api.sandbox.script(Fault.server_error(502))
    answers = [
        await api.buy({"AreaCode": "415"}),  # 502, HTML
        await api.buy({"AreaCode": "415"}),  # 201
        await api.buy({"AreaCode": "41"}),  # 400
        await api.buy({"AreaCode": "415"}, auth="Basic eDp5"),  # 401
        await api.request("GET", f"{api.sandbox.url}/nowhere"),  # 404
        await api.list(),  # 200
    ]
    ids = [answer.headers["Twilio-Request-Id"] for answer in answers]
    assert all(REQUEST_ID.fullmatch(i) for i in ids)
    assert len(set(ids)) == len(ids)
    assert [r.request_id for r in api.sandbox.requests] == ids
    assert api.sandbox.purchases[0].request_id == ids[1]


async def test_too_many_in_flight_is_429_at_once(session: aiohttp.ClientSession) -> None:
    async with Sandbox(max_concurrency=2, faults=Faults(latency=0.2)) as sandbox:
        api = Api(sandbox, session)
        answers = await asyncio.gather(
            *(api.list() for _ in range(3)), *(api.buy({"AreaCode": "415"}) for _ in range(2))
        )
        statuses = sorted(a.status for a in answers)
        assert statuses.count(429) == 3, statuses
        for answer in answers:
            if answer.status == 429:
                assert_error(answer, 429, 20429)
        refused = [r for r in sandbox.requests if r.status == 429]
        assert all(
            r.finished_at is not None and r.finished_at - r.started_at < 0.1 for r in refused
        )
        bought = [a for a in answers if a.status == 201]
        assert len(sandbox.purchases) == len(bought)


async def test_records(api: Api) -> None:
    loop = asyncio.get_running_loop()
    before = loop.time()
    await api.buy({"PhoneNumber": "+14155550100", "FriendlyName": "desk"})
    await api.list({"PhoneNumber": "+1415"})
    requests = api.sandbox.requests
    assert [type(r) for r in requests] == [RequestRecord, RequestRecord]
    post, get = requests
    assert (post.method, post.status, post.fault) == ("POST", 201, None)
    assert post.path == f"/2010-04-01/Accounts/{api.sandbox.account_sid}/IncomingPhoneNumbers.json"
    assert post.account_sid == api.sandbox.account_sid
    assert post.form == {"PhoneNumber": "+14155550100", "FriendlyName": "desk"}
    assert (get.method, get.status, get.query, get.form) == (
        "GET",
        200,
        {"PhoneNumber": "+1415"},
        {},
    )
    assert post.finished_at is not None
    assert before <= post.started_at <= post.finished_at <= get.started_at
    (purchase,) = api.sandbox.purchases
    assert purchase == PurchaseRecord(
        sid=purchase.sid,
        phone_number="+14155550100",
        account_sid=api.sandbox.account_sid,
        endpoint="IncomingPhoneNumbers.json",
        form={"PhoneNumber": "+14155550100", "FriendlyName": "desk"},
        friendly_name="desk",
        request_id=post.request_id,
        fault=None,
    )
    mobile = await api.buy({"PhoneNumber": "+447700900123"}, mobile=True)
    assert api.sandbox.purchases[-1].endpoint == "IncomingPhoneNumbers/Mobile.json"
    assert api.sandbox.purchases[-1].sid == mobile.body["sid"]
    # What the sandbox hands out are copies.
    api.sandbox.owned()["+14155550100"]["friendly_name"] = "changed"
    assert api.sandbox.owned()["+14155550100"]["friendly_name"] == "desk"


# --- scripted faults -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("retry_after", "header"),
    [
        (None, None),
        (2, "2"),
        (0.25, "0.25"),
        ("Wed, 21 Oct 2015 07:28:00 GMT", "Wed, 21 Oct 2015 07:28:00 GMT"),
    ],
)
async def test_rate_limited_fault(
    api: Api, retry_after: float | str | None, header: str | None
) -> None:
    api.sandbox.script(Fault.rate_limited(retry_after))
    answer = await api.buy({"PhoneNumber": "+14155550100"})
    assert_error(answer, 429, 20429)
    assert answer.headers.get("Retry-After") == header
    assert api.sandbox.purchases == []
    assert api.sandbox.requests[-1].fault == "rate_limited"
    assert (await api.buy({"PhoneNumber": "+14155550100"})).status == 201


@pytest.mark.parametrize(("status", "html"), [(500, False), (502, True), (503, True), (504, False)])
async def test_server_error_fault_commits_nothing(api: Api, status: int, html: bool) -> None:
    api.sandbox.script(Fault.server_error(status))
    answer = await api.buy({"PhoneNumber": "+14155550100"})
    assert answer.status == status
    if html:
        assert answer.headers["Content-Type"].startswith("text/html")
        assert f"<h1>{status} " in answer.text
    else:
        assert_error(answer, status, 20500)
    assert api.sandbox.purchases == []
    assert api.sandbox.owned() == {}


async def test_error_after_commit_fault_commits(api: Api) -> None:
    api.sandbox.script(Fault.error_after_commit(503))
    answer = await api.buy({"PhoneNumber": "+14155550100"})
    assert answer.status == 503
    (purchase,) = api.sandbox.purchases
    assert (purchase.phone_number, purchase.fault) == ("+14155550100", "error_after_commit")
    assert "+14155550100" in api.sandbox.owned()
    # A retry meets Twilio's "not available": the first attempt bought it.
    assert_error(await api.buy({"PhoneNumber": "+14155550100"}), 400, 21422)


async def test_drop_before_commit_fault(api: Api) -> None:
    api.sandbox.script(Fault.drop_before_commit())
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await api.buy({"PhoneNumber": "+14155550100"})
    assert api.sandbox.purchases == []
    record = api.sandbox.requests[-1]
    assert (record.status, record.fault) == (None, "drop_before_commit")
    assert record.finished_at is not None


async def test_drop_after_commit_fault(api: Api) -> None:
    api.sandbox.script(Fault.drop_after_commit())
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await api.buy({"AreaCode": "415"})
    (purchase,) = api.sandbox.purchases
    assert purchase.fault == "drop_after_commit"
    assert purchase.phone_number in api.sandbox.owned()
    assert api.sandbox.requests[-1].status is None
    # The list tells the caller what happened.
    found = await api.list({"PhoneNumber": purchase.phone_number})
    assert [n["sid"] for n in found.body["incoming_phone_numbers"]] == [purchase.sid]


async def test_slow_after_commit_fault_outlasts_a_client_timeout(api: Api) -> None:
    api.sandbox.script(Fault.slow_after_commit(0.5))
    with pytest.raises(asyncio.TimeoutError):
        await api.buy({"PhoneNumber": "+14155550100"}, timeout=aiohttp.ClientTimeout(total=0.1))
    (purchase,) = api.sandbox.purchases
    assert purchase.fault == "slow_after_commit"


async def test_slow_after_commit_fault_answers_late(api: Api) -> None:
    api.sandbox.script(Fault.slow_after_commit(0.05))
    answer = await api.buy({"PhoneNumber": "+14155550100"})
    assert answer.status == 201
    record = api.sandbox.requests[-1]
    assert record.finished_at is not None
    assert record.finished_at - record.started_at >= 0.05


async def test_scripted_faults_go_in_order_to_purchases_only(api: Api) -> None:
    api.sandbox.script(Fault.server_error(500), Fault.rate_limited())
    assert (await api.list()).status == 200  # a GET takes no scripted fault
    assert (await api.buy({"AreaCode": "415"}, auth="Basic eDp5")).status == 401  # nor a 401
    assert (await api.buy({"AreaCode": "415"})).status == 500
    assert (await api.buy({"AreaCode": "415"})).status == 429
    assert (await api.buy({"AreaCode": "415"})).status == 201
    assert [r.fault for r in api.sandbox.requests] == [
        None,
        None,
        "server_error",
        "rate_limited",
        None,
    ]


async def test_after_commit_fault_hits_a_refused_purchase_too(api: Api) -> None:
    api.sandbox.script(Fault.drop_after_commit())
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await api.buy({"PhoneNumber": "+15005550000"})
    assert api.sandbox.purchases == []


async def test_prompt_shutdown_with_a_slow_answer_pending(session: aiohttp.ClientSession) -> None:
    sandbox = Sandbox()
    await sandbox.start()
    api = Api(sandbox, session)
    sandbox.script(Fault.slow_after_commit(30))
    pending = asyncio.ensure_future(api.buy({"PhoneNumber": "+14155550100"}))
    for _ in range(400):  # until the purchase is committed and its answer held back
        if sandbox.purchases:
            break
        await asyncio.sleep(0.005)
    loop = asyncio.get_running_loop()
    started = loop.time()
    await sandbox.stop()
    assert loop.time() - started < 0.5
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await pending
    assert sandbox.requests[-1].status is None
    await sandbox.stop()  # twice is fine


# --- random faults ---------------------------------------------------------------------------


async def run_purchases(sandbox: Sandbox, count: int) -> list[tuple[int | None, str | None]]:
    async with aiohttp.ClientSession() as session:
        api = Api(sandbox, session)
        for _ in range(count):
            with contextlib.suppress(aiohttp.ClientError):
                await api.buy({"AreaCode": "415"})
            await api.list()
    return [(r.status, r.fault) for r in sandbox.requests]


async def test_random_faults_repeat_for_a_seed() -> None:
    faults = Faults(
        rate_limited=0.2, server_error=0.2, drop_after_commit=0.2, error_after_commit=0.1
    )

    async def run(seed: int) -> tuple[list[tuple[int | None, str | None]], list[str]]:
        async with Sandbox(seed=seed, faults=faults) as sandbox:
            outcomes = await run_purchases(sandbox, 25)
            return outcomes, [p.sid for p in sandbox.purchases]

    first = await run(3)
    assert first == await run(3)
    assert first[0] != (await run(4))[0]
    faults_seen = {fault for _, fault in first[0]}
    assert len(faults_seen - {None}) >= 3, faults_seen
    # GETs meet only 429s and 5xx.
    get_faults = {fault for (_, fault), r in zip(first[0], range(50), strict=True) if r % 2}
    assert get_faults <= {None, "rate_limited", "server_error"}


async def test_commit_faults_never_hit_the_list(api: Api) -> None:
    api.sandbox.faults = Faults(drop_after_commit=0.5, drop_before_commit=0.5)
    for _ in range(5):
        assert (await api.list()).status == 200
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await api.buy({"AreaCode": "415"})


async def test_faults_can_change_while_running(api: Api) -> None:
    assert api.sandbox.faults == Faults()
    api.sandbox.faults = Faults(server_error=1.0)
    assert (await api.buy({"AreaCode": "415"})).status in (500, 502, 503, 504)
    api.sandbox.faults = None
    assert (await api.buy({"AreaCode": "415"})).status == 201
    with pytest.raises(TypeError):
        api.sandbox.faults = "server_error=1"  # type: ignore[assignment]


async def test_latency_is_added_to_every_request(session: aiohttp.ClientSession) -> None:
    async with Sandbox(faults=Faults(latency=(0.02, 0.03))) as sandbox:
        api = Api(sandbox, session)
        await api.list()
        await api.buy({"AreaCode": "415"})
        for record in sandbox.requests:
            assert record.finished_at is not None
            assert record.finished_at - record.started_at >= 0.02


# --- Faults and Fault ------------------------------------------------------------------------


def test_faults_parse() -> None:
    assert Faults.parse(
        "latency=0.005,rate_limited=0.05,server_error=0.02,drop_after_commit=0.01"
    ) == Faults(latency=0.005, rate_limited=0.05, server_error=0.02, drop_after_commit=0.01)
    assert Faults.parse(" latency = 0.001:0.002 , retry_after=3 ") == Faults(
        latency=(0.001, 0.002), retry_after=3.0
    )
    assert Faults.parse("") == Faults.parse("none") == Faults()
    assert Faults.parse("demo") == Faults.demo()


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("bogus=0.1", "'bogus'"),
        ("rate_limited=lots", "'rate_limited'"),
        ("rate_limited", "'rate_limited'"),
        ("rate_limited=0.1,rate_limited=0.2", "'rate_limited'"),
        ("server_error=1.5", "server_error"),
        ("server_error=nan", "'server_error'"),
        ("latency=-1", "latency"),
        ("latency=0.2:0.1", "latency"),
        ("rate_limited=0.6,server_error=0.6", "sum"),
    ],
)
def test_faults_parse_errors_name_the_culprit(text: str, named: str) -> None:
    with pytest.raises(ValueError, match=re.escape(named)):
        Faults.parse(text)


def test_faults_demo_is_lively_but_valid() -> None:
    demo = Faults.demo()
    assert demo.active
    assert 0 < demo.drop_after_commit < 0.1
    assert demo.latency != 0.0


@pytest.mark.parametrize(
    "build",
    [
        lambda: Fault.server_error(404),
        lambda: Fault.error_after_commit(200),
        lambda: Fault.slow_after_commit(-1),
        lambda: Fault.rate_limited(-2),
        lambda: Fault.rate_limited("bad\r\nheader"),
        lambda: Fault(name="explode"),
    ],
)
def test_fault_validation(build: Any) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - each case has its own message
        build()


def test_fault_names_and_commits() -> None:
    assert Fault.drop_after_commit().name == "drop_after_commit"
    assert Fault.error_after_commit().status == 500
    assert Fault.slow_after_commit(1.5).seconds == 1.5
    assert [
        f.commits for f in (Fault.server_error(), Fault.drop_before_commit(), Fault.rate_limited())
    ] == [False] * 3
    assert all(
        f.commits
        for f in (Fault.error_after_commit(), Fault.drop_after_commit(), Fault.slow_after_commit(1))
    )


# --- the Sandbox object ----------------------------------------------------------------------


async def test_sandbox_lifecycle_and_defaults() -> None:
    sandbox = Sandbox(seed=11)
    with pytest.raises(RuntimeError):
        _ = sandbox.url
    assert re.fullmatch(r"AC[0-9a-f]{32}", sandbox.account_sid)
    assert re.fullmatch(r"[0-9a-f]{32}", sandbox.auth_token)
    assert (Sandbox(seed=11).account_sid, Sandbox(seed=11).auth_token) == (
        sandbox.account_sid,
        sandbox.auth_token,
    )
    assert Sandbox(seed=12).account_sid != sandbox.account_sid
    assert Sandbox(seed=11, account_sid="AC" + "0" * 32).auth_token == sandbox.auth_token
    _key, secret = sandbox.add_api_key()
    async with sandbox:
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+", sandbox.url)
        assert sandbox.running
        for text in (repr(sandbox), str(sandbox)):
            assert sandbox.auth_token not in text
            assert secret not in text
            assert sandbox.account_sid in text
        with pytest.raises(RuntimeError):
            await sandbox.start()
    with pytest.raises(RuntimeError):
        _ = sandbox.url  # not running any more
    await sandbox.start()  # a stopped sandbox starts again, state and all
    await sandbox.stop()


def test_sandbox_refuses_bad_arguments() -> None:
    with pytest.raises(ValueError, match="account_sid"):
        Sandbox(account_sid="AC123")
    with pytest.raises(ValueError, match="max_concurrency"):
        Sandbox(max_concurrency=0)
    with pytest.raises(ValueError, match="area_code_stock"):
        Sandbox(area_code_stock=-1)
    with pytest.raises(TypeError, match="faults"):
        Sandbox(faults=0.1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="auth_token"):
        Sandbox(auth_token="")
    with pytest.raises(ValueError, match="neither"):
        Sandbox().owned("AC" + "0" * 32)


async def test_client_points_at_the_sandbox(sandbox: Sandbox) -> None:
    from twilio_numbers_async.client import TwilioNumbersClient

    client = sandbox.client(timeout=5.0)
    assert isinstance(client, TwilioNumbersClient)
    assert sandbox.auth_token not in repr(client)
    await client.aclose()
    key, secret = sandbox.add_api_key()
    keyed = sandbox.client(api_key=key, api_secret=secret)
    await keyed.aclose()
