"""``AvailablePhoneNumbers`` searches: numbers nobody owns, in the right country, filtered and
paged as the spec says, and each one buyable by ``PhoneNumber`` until someone does."""

from __future__ import annotations

import re
from typing import Any

import aiohttp
import pytest

from tests._spec import check_formats, requires_spec, search_response_schema, validate
from twilio_numbers_async._nanp import country_of_area_code
from twilio_numbers_async.sandbox import Sandbox

from ._http import Answer, Api, assert_error

SPEC_PROPERTIES = (
    "friendly_name",
    "phone_number",
    "lata",
    "locality",
    "rate_center",
    "latitude",
    "longitude",
    "region",
    "postal_code",
    "iso_country",
    "address_requirements",
    "beta",
    "capabilities",
)
CAPABILITY_FILTERS = {
    "VoiceEnabled": "voice",
    "SmsEnabled": "sms",
    "MmsEnabled": "mms",
    "FaxEnabled": "fax",
}


def numbers(answer: Answer) -> list[str]:
    assert answer.status == 200, answer.text
    return [n["phone_number"] for n in answer.body["available_phone_numbers"]]


async def everything(api: Api, params: dict[str, str], **kw: Any) -> list[dict[str, Any]]:
    """Every number a search finds, page after page (PageSize 7) through next_page_uri."""
    body = (await api.search({**params, "PageSize": "7"}, **kw)).body
    found = list(body["available_phone_numbers"])
    while body["next_page_uri"] is not None:
        body = (await api.request("GET", api.sandbox.url + body["next_page_uri"])).body
        found += body["available_phone_numbers"]
    return found


# --- what is for sale ---------------------------------------------------------------------------


async def test_an_area_code_lists_its_stock_that_nobody_owns(api: Api) -> None:
    # The fixture's stock is 20 numbers per area code: +1415555{0000..0019}.
    listed = numbers(await api.search({"AreaCode": "415"}))
    assert sorted(listed) == [f"+14155550{k:03d}" for k in range(20)]
    assert listed != sorted(listed)  # in the stock's seeded order
    taken = listed[5]
    assert (await api.buy({"PhoneNumber": taken})).status == 201
    assert numbers(await api.search({"AreaCode": "415"})) == [n for n in listed if n != taken]


async def test_a_search_shows_what_an_area_code_purchase_buys_next(api: Api) -> None:
    first, second = numbers(await api.search({"AreaCode": "415", "PageSize": "2"}))
    assert (await api.buy({"AreaCode": "415"})).body["phone_number"] == first
    assert numbers(await api.search({"AreaCode": "415", "PageSize": "1"})) == [second]


async def test_a_found_number_is_bought_by_phone_number_once(api: Api) -> None:
    found = (await api.search({"AreaCode": "212", "PageSize": "1"})).body
    (number,) = found["available_phone_numbers"]
    bought = await api.buy({"PhoneNumber": number["phone_number"]})
    assert bought.status == 201
    # What the search said it can do is what was bought.
    assert bought.body["capabilities"] == number["capabilities"]
    assert bought.body["friendly_name"] == number["friendly_name"]
    again = await api.buy({"PhoneNumber": number["phone_number"]})
    assert_error(again, 400, 21422)
    sub = api.sandbox.add_subaccount()  # sold on one account: found on none
    assert number["phone_number"] not in numbers(await api.search({"AreaCode": "212"}, account=sub))


async def test_a_number_sold_out_then_released_is_found_again(api: Api) -> None:
    sids = [(await api.buy({"AreaCode": "303"})).body["sid"] for _ in range(20)]
    assert numbers(await api.search({"AreaCode": "303"})) == []
    assert_error(await api.buy({"AreaCode": "303"}), 400, 21452)
    released = api.sandbox.owned()
    assert (await api.release(sids[7])).status == 204
    (back,) = numbers(await api.search({"AreaCode": "303"}))
    assert released[back]["sid"] == sids[7]
    rebought = await api.buy({"AreaCode": "303"})
    assert rebought.body["phone_number"] == back
    assert rebought.body["sid"] != sids[7]


async def test_no_stock_and_magic_area_codes(api: Api) -> None:
    assert numbers(await api.search({"AreaCode": "533"})) == []
    assert_error(await api.buy({"AreaCode": "533"}), 400, 21452)
    for _ in range(2):  # the magic number is never sold out
        assert numbers(await api.search({"AreaCode": "500"})) == ["+15005550006"]
        assert (await api.buy({"PhoneNumber": "+15005550006"})).status == 201


# --- countries and kinds --------------------------------------------------------------------


@pytest.mark.parametrize("area_code", ["604", "416", "514", "867"])
async def test_a_canadian_area_code_is_searched_in_canada(api: Api, area_code: str) -> None:
    assert country_of_area_code(area_code) == "CA"
    assert numbers(await api.search({"AreaCode": area_code}, country="US")) == []
    found = (await api.search({"AreaCode": area_code}, country="CA")).body
    listed = found["available_phone_numbers"]
    assert len(listed) == 20
    for number in listed:
        assert re.fullmatch(rf"\+1{area_code}[2-9][0-9]{{6}}", number["phone_number"])
        assert number["iso_country"] == "CA"
    assert numbers(await api.search({"AreaCode": "415"}, country="CA")) == []


async def test_searches_without_an_area_code_go_through_the_countrys_own(api: Api) -> None:
    for country in ("US", "CA"):
        for number in await everything(api, {}, country=country):
            assert country_of_area_code(number["phone_number"][2:5]) == country
            assert number["iso_country"] == country
            assert re.fullmatch(r"\+1[2-9][0-9]{2}[2-9][0-9]{6}", number["phone_number"])


async def test_toll_free(api: Api) -> None:
    listed = await everything(api, {}, kind="TollFree")
    codes = {n["phone_number"][2:5] for n in listed}
    assert codes == {"800", "833", "844", "855", "866", "877", "888"}
    assert all(n["lata"] is None and n["region"] is None for n in listed)
    assert {
        n["phone_number"][2:5] for n in await everything(api, {"AreaCode": "888"}, kind="TollFree")
    } == {"888"}
    assert numbers(await api.search({"AreaCode": "415"}, kind="TollFree")) == []
    assert numbers(await api.search({"AreaCode": "800"}, kind="Local")) == []
    (number,) = numbers(await api.search({"AreaCode": "866", "PageSize": "1"}, kind="TollFree"))
    bought = await api.buy({"PhoneNumber": number})
    assert bought.body["type"] == "toll-free"
    assert (await api.search({"PageSize": "1"}, country="CA", kind="TollFree")).status == 200


async def test_uk_mobile_and_london_numbers(api: Api) -> None:
    mobiles = (await api.search(country="GB", kind="Mobile")).body["available_phone_numbers"]
    assert len(mobiles) == 20
    for number in mobiles:
        assert re.fullmatch(r"\+447700[0-9]{6}", number["phone_number"])
        assert number["friendly_name"] == number["phone_number"]
        assert number["iso_country"] == "GB"
        assert number["region"] is number["latitude"] is number["rate_center"] is None
        assert number["capabilities"]["sms"] is True
    # AreaCode applies to the US and Canada only: ignored here, not even checked.
    assert numbers(await api.search({"AreaCode": "x"}, country="GB", kind="Mobile")) == [
        n["phone_number"] for n in mobiles
    ]
    london = (await api.search(country="GB", kind="Local")).body["available_phone_numbers"]
    assert all(re.fullmatch(r"\+4420[0-9]{8}", n["phone_number"]) for n in london)
    assert {n["locality"] for n in london} == {"London"}
    bought = await api.buy({"PhoneNumber": mobiles[0]["phone_number"]}, mobile=True)
    assert bought.body["capabilities"] == mobiles[0]["capabilities"]


@pytest.mark.parametrize(
    ("country", "kind"),
    [("US", "Mobile"), ("CA", "Mobile"), ("GB", "TollFree"), ("XX", "Local"), ("FR", "Local")],
)
async def test_a_country_without_such_numbers_is_404(api: Api, country: str, kind: str) -> None:
    answer = await api.search(country=country, kind=kind)
    assert_error(answer, 404, 20404)
    assert f"/AvailablePhoneNumbers/{country}/{kind}.json was not found" in answer.body["message"]


async def test_an_unknown_kind_or_country_shape_is_an_unknown_path(api: Api) -> None:
    assert_error(await api.search(kind="Shared"), 404, 20404)
    assert_error(await api.search(country="us"), 404, 20404)
    answer = await api.request("POST", f"{api.base()}/AvailablePhoneNumbers/US/Local.json")
    assert_error(answer, 405, 20004)
    assert answer.headers["Allow"] == "GET"


# --- filters --------------------------------------------------------------------------------


async def test_capabilities_vary_and_filters_keep_what_they_ask(
    session: aiohttp.ClientSession,
) -> None:
    async with Sandbox(seed=3, area_code_stock=200) as sandbox:
        api = Api(sandbox, session)
        every = await everything(api, {"AreaCode": "512"})
        assert len(every) == 200
        for key, capability in CAPABILITY_FILTERS.items():
            values = {n["capabilities"][capability] for n in every}
            assert values == {True, False}, capability  # something to filter
            for wanted in (True, False):
                kept = await everything(api, {"AreaCode": "512", key: str(wanted).lower()})
                assert kept == [n for n in every if n["capabilities"][capability] is wanted]
        both = await everything(
            api, {"AreaCode": "512", "SmsEnabled": "true", "MmsEnabled": "false"}
        )
        assert both
        assert both == [
            n for n in every if n["capabilities"]["sms"] and not n["capabilities"]["mms"]
        ]


async def test_capabilities_are_the_seeds(session: aiohttp.ClientSession) -> None:
    async def capabilities(seed: int) -> list[dict[str, bool]]:
        async with Sandbox(seed=seed) as sandbox:
            found = (await Api(sandbox, session).search({"AreaCode": "415"})).body
            return [n["capabilities"] for n in found["available_phone_numbers"]]

    assert await capabilities(1) == await capabilities(1)
    assert await capabilities(1) != await capabilities(2)


@pytest.mark.parametrize(
    ("contains", "kept"),
    [
        ("+1415", r"\+1415.*"),
        ("+1415JKL", r"\+1415555.*"),  # letters are a keypad's digits: JKL is 555
        ("0012$", r".*0012"),
        ("55500**", r".*55500[0-9]{2}.*"),
        ("%0019", r".*0019"),
        ("5550001", r".*5550001.*"),
    ],
)
async def test_contains(api: Api, contains: str, kept: str) -> None:
    every = numbers(await api.search({"AreaCode": "415"}))
    found = numbers(await api.search({"AreaCode": "415", "Contains": contains}))
    assert found == [n for n in every if re.fullmatch(kept, n)]
    assert found


async def test_contains_with_an_unencoded_plus(api: Api) -> None:
    url = f"{api.base()}/AvailablePhoneNumbers/US/Local.json?AreaCode=415&Contains=+1415"
    assert len(numbers(await api.request("GET", url))) == 20


async def test_parameters_twilio_does_not_support_here_are_ignored(api: Api) -> None:
    plain = numbers(await api.search({"AreaCode": "415"}))
    ignored = {"NearNumber": "+14155550100", "InRegion": "CA", "Distance": "5", "Foo": "bar"}
    assert numbers(await api.search({"AreaCode": "415", **ignored})) == plain
    flags = {"Beta": "false", "ExcludeAllAddressRequired": "true"}
    assert numbers(await api.search({"AreaCode": "415", **flags})) == plain


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({"AreaCode": "41"}, 21451),
        ({"AreaCode": "911"}, 21451),
        ({"AreaCode": "abc"}, 21451),
        ({"SmsEnabled": "yes"}, 20001),
        ({"FaxEnabled": "True"}, 20001),
        ({"Beta": "maybe"}, 20001),
        ({"ExcludeLocalAddressRequired": "1"}, 20001),
        ({"PageSize": "0"}, 20001),
        ({"PageSize": "1001"}, 20001),
        ({"Page": "-1"}, 20001),
        ({"PageToken": "garbage"}, 20001),
        ({"PageToken": "PA+12125550000"}, 20001),  # not a number this search goes through
        ({"Contains": "5"}, 20001),
        ({"Contains": "5" * 17}, 20001),
        ({"Contains": "5*5"}, 20001),
        ({"Contains": "+*55"}, 20001),
        ({"Contains": "55*%"}, 20001),
        ({"Contains": "55*$"}, 20001),
        ({"Contains": "*5"}, 20001),
        ({"Contains": "55-55"}, 20001),
    ],
)
async def test_bad_values_are_400(api: Api, params: dict[str, str], code: int) -> None:
    answer = await api.search({"AreaCode": "415", **params} if "AreaCode" not in params else params)
    assert_error(answer, 400, code)
    assert next(iter(params)) in answer.body["message"]


# --- pages ----------------------------------------------------------------------------------


async def test_pages_follow_next_and_previous(api: Api) -> None:
    every = numbers(await api.search({"AreaCode": "415"}))
    first = (await api.search({"AreaCode": "415", "SmsEnabled": "true", "PageSize": "3"})).body
    assert (first["page"], first["page_size"], first["start"], first["end"]) == (0, 3, 0, 2)
    assert first["previous_page_uri"] is None
    assert first["first_page_uri"].endswith(
        "Local.json?AreaCode=415&SmsEnabled=true&PageSize=3&Page=0"
    )
    with_sms = await everything(api, {"AreaCode": "415", "SmsEnabled": "true"})
    assert [n["phone_number"] for n in with_sms] == [
        n for n in every if n in {m["phone_number"] for m in with_sms}
    ]
    second = (await api.request("GET", api.sandbox.url + first["next_page_uri"])).body
    assert second["page"] == 1
    back = (await api.request("GET", api.sandbox.url + second["previous_page_uri"])).body
    assert back["available_phone_numbers"] == first["available_phone_numbers"]
    by_page = numbers(
        await api.search({"AreaCode": "415", "SmsEnabled": "true", "PageSize": "3", "Page": "1"})
    )
    assert by_page == [n["phone_number"] for n in second["available_phone_numbers"]]


async def test_pages_stay_right_while_numbers_are_bought(api: Api) -> None:
    first = (await api.search({"AreaCode": "415", "PageSize": "5"})).body
    ahead = numbers(await api.search({"AreaCode": "415"}))[5:]
    # Bought between two pages: one on the page read, one on the next.
    await api.buy({"PhoneNumber": first["available_phone_numbers"][0]["phone_number"]})
    await api.buy({"PhoneNumber": ahead[0]})
    second = numbers(await api.request("GET", api.sandbox.url + first["next_page_uri"]))
    assert second == ahead[1:6]


async def test_the_last_page_has_no_next(api: Api) -> None:
    last = (await api.search({"AreaCode": "415", "PageSize": "20"})).body
    assert len(last["available_phone_numbers"]) == 20
    assert last["next_page_uri"] is None
    beyond = (await api.search({"AreaCode": "415", "PageSize": "20", "Page": "1"})).body
    assert beyond["available_phone_numbers"] == []
    assert beyond["next_page_uri"] is None


# --- access, and the spec -----------------------------------------------------------------------


async def test_a_search_needs_credentials_and_a_known_account(api: Api) -> None:
    answer = await api.search(auth="Basic eDp5")
    assert_error(answer, 401, 20003)
    assert_error(await api.search(account="AC" + "1" * 32), 404, 20404)
    sub = api.sandbox.add_subaccount()
    assert len(numbers(await api.search({"AreaCode": "415"}, account=sub))) == 20


@pytest.mark.contract
@requires_spec
@pytest.mark.parametrize(
    ("country", "kind", "params"),
    [
        ("US", "Local", {"AreaCode": "415"}),
        ("US", "Local", {}),
        ("CA", "Local", {"AreaCode": "604"}),
        ("US", "TollFree", {}),
        ("GB", "Mobile", {}),
        ("GB", "Local", {}),
        ("US", "Local", {"AreaCode": "533"}),
    ],
)
async def test_a_search_matches_the_spec(
    api: Api, country: str, kind: str, params: dict[str, str]
) -> None:
    body = (await api.search({**params, "PageSize": "4"}, country=country, kind=kind)).body
    validate(body, search_response_schema(kind))
    for number in body["available_phone_numbers"]:
        assert tuple(number) == SPEC_PROPERTIES  # every property, in the spec's order
        check_formats({"phone_number": number["phone_number"]})
        assert set(number["capabilities"]) == {"voice", "sms", "mms", "fax"}
