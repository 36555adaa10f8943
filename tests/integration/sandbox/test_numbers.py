"""One number by its SID: ``GET`` it, ``DELETE`` it (a release), as Twilio answers both."""

from __future__ import annotations

import pytest

from tests._spec import check_formats, fetch_response_schema, requires_spec, validate
from twilio_numbers_async.sandbox import Faults, ReleaseRecord

from ._http import Api, assert_error

UNKNOWN_SID = "PN" + "0" * 32


async def test_fetch_shows_the_number_as_the_list_does(api: Api) -> None:
    bought = (await api.buy({"PhoneNumber": "+447700900123"}, mobile=True)).body
    fetched = await api.fetch(bought["sid"])
    assert fetched.status == 200
    assert fetched.headers["Content-Type"].startswith("application/json")
    (listed,) = (await api.list()).body["incoming_phone_numbers"]
    assert fetched.body == listed
    assert fetched.body["type"] == "mobile"  # the generic schema's, as the list shows it
    assert {k: v for k, v in fetched.body.items() if k != "type"} == bought


async def test_an_unknown_number_is_404_in_twilios_words(api: Api) -> None:
    answer = await api.fetch(UNKNOWN_SID)
    assert_error(answer, 404, 20404)
    path = f"/2010-04-01/Accounts/{api.sandbox.account_sid}/IncomingPhoneNumbers/{UNKNOWN_SID}.json"
    assert answer.body["message"] == f"The requested resource {path} was not found"
    assert_error(await api.release(UNKNOWN_SID), 404, 20404)


async def test_a_number_is_found_only_on_its_own_account(api: Api) -> None:
    sub = api.sandbox.add_subaccount()
    sid = (await api.buy({"PhoneNumber": "+14155550100"}, account=sub)).body["sid"]
    assert_error(await api.fetch(sid), 404, 20404)
    assert_error(await api.release(sid), 404, 20404)
    assert (await api.fetch(sid, account=sub)).body["account_sid"] == sub
    assert (await api.release(sid, account=sub)).status == 204


async def test_a_release_is_204_and_the_number_is_gone(api: Api) -> None:
    bought = (await api.buy({"PhoneNumber": "+14155550100"})).body
    sid = bought["sid"]
    answer = await api.release(sid)
    assert answer.status == 204
    assert answer.text == ""
    assert "Content-Type" not in answer.headers
    assert answer.headers["Twilio-Request-Id"] == api.sandbox.requests[-1].request_id
    assert api.sandbox.owned() == {}
    assert (await api.list()).body["incoming_phone_numbers"] == []
    assert_error(await api.fetch(sid), 404, 20404)
    assert_error(await api.release(sid), 404, 20404)  # again: already gone
    assert api.sandbox.releases == [
        ReleaseRecord(
            sid=sid,
            phone_number="+14155550100",
            account_sid=api.sandbox.account_sid,
            request_id=api.sandbox.requests[1].request_id,
            fault=None,
        )
    ]
    assert [(r.method, r.status) for r in api.sandbox.requests[1:3]] == [
        ("DELETE", 204),
        ("GET", 200),
    ]


async def test_a_released_number_is_sold_again(api: Api) -> None:
    first = (await api.buy({"PhoneNumber": "+14155550100"})).body
    await api.release(first["sid"])
    again = await api.buy({"PhoneNumber": "+14155550100"})
    assert again.status == 201
    assert again.body["sid"] != first["sid"]
    assert api.sandbox.owned()["+14155550100"]["sid"] == again.body["sid"]
    assert [p.phone_number for p in api.sandbox.purchases] == ["+14155550100"] * 2


async def test_releasing_one_magic_number_keeps_the_others(api: Api) -> None:
    sids = [(await api.buy({"PhoneNumber": "+15005550006"})).body["sid"] for _ in range(3)]
    assert (await api.release(sids[2])).status == 204
    assert api.sandbox.owned()["+15005550006"]["sid"] == sids[1]
    listed = (await api.list({"PhoneNumber": "+15005550006"})).body["incoming_phone_numbers"]
    assert [n["sid"] for n in listed] == sids[:2]
    assert (await api.fetch(sids[0])).status == 200


async def test_the_list_pages_right_after_releases(api: Api) -> None:
    sids = [(await api.buy({"PhoneNumber": f"+1415555010{k}"})).body["sid"] for k in range(6)]
    page = (await api.list({"PageSize": "2"})).body
    for sid in (sids[1], sids[2]):
        await api.release(sid)
    rest = (await api.request("GET", api.sandbox.url + page["next_page_uri"])).body
    assert [n["sid"] for n in rest["incoming_phone_numbers"]] == sids[3:5]
    everything = (await api.list()).body["incoming_phone_numbers"]
    assert [n["sid"] for n in everything] == [sids[0], *sids[3:]]


@pytest.mark.parametrize("method", ["POST", "PUT"])
async def test_other_methods_on_a_number_are_405(api: Api, method: str) -> None:
    answer = await api.request(method, api.number_url(UNKNOWN_SID))
    assert_error(answer, 405, 20004)
    assert answer.headers["Allow"] == "GET, DELETE"


@pytest.mark.parametrize("sid", ["PN123", "XX" + "0" * 32, "PN" + "g" * 32])
async def test_a_malformed_sid_is_an_unknown_path(api: Api, sid: str) -> None:
    assert_error(await api.fetch(sid), 404, 20404)
    assert_error(await api.release(sid), 404, 20404)


async def test_fetch_and_release_need_credentials(api: Api) -> None:
    sid = (await api.buy({"PhoneNumber": "+14155550100"})).body["sid"]
    assert_error(await api.fetch(sid, auth="Basic eDp5"), 401, 20003)
    assert_error(await api.release(sid, auth="Basic eDp5"), 401, 20003)
    assert "+14155550100" in api.sandbox.owned()


async def test_random_faults_hit_reads_and_releases(api: Api) -> None:
    sid = (await api.buy({"PhoneNumber": "+14155550100"})).body["sid"]
    api.sandbox.faults = Faults(server_error=1.0)
    assert (await api.fetch(sid)).status in (500, 502, 503, 504)
    assert (await api.search()).status in (500, 502, 503, 504)
    assert (await api.release(sid)).status in (500, 502, 503, 504)
    assert "+14155550100" in api.sandbox.owned()  # a 5xx before the release: nothing released
    api.sandbox.faults = Faults(error_after_commit=1.0)
    assert (await api.fetch(sid)).status == 200  # a read has nothing to commit
    assert (await api.release(sid)).status in (500, 502, 503, 504)
    assert api.sandbox.owned() == {}
    assert api.sandbox.releases[0].fault == "error_after_commit"


@pytest.mark.contract
@requires_spec
async def test_fetch_matches_the_spec(api: Api) -> None:
    sid = (await api.buy({"AreaCode": "800", "SmsUrl": "https://example.com/sms"})).body["sid"]
    body = (await api.fetch(sid)).body
    validate(body, fetch_response_schema())
    check_formats(body)
