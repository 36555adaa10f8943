"""Area codes bought through a search: candidates shared, each POSTed as a given number.

Against Twilio in memory, so that each answer is scripted; tests/integration/test_faults.py
repeats the fault scenarios against the sandbox.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from tests._memory import Hang, MemoryTwilio, form, reply
from tests.conftest import (
    ACCOUNT_SID,
    AUTH_TOKEN,
    BASE,
    NUMBERS_URL,
    FakeTime,
    page,
    resource,
    twilio_error,
)
from twilio_numbers_async import (
    NumberPurchase,
    PurchaseOutcomeUnknownError,
    TwilioApiError,
    TwilioNumbersClient,
)
from twilio_numbers_async._transport import Request, Response

SEARCH_URL = f"{BASE}/AvailablePhoneNumbers/US/Local.json?AreaCode=415&PageSize=100"
CANDIDATES = ["+14155550101", "+14155550102", "+14155550103"]


def found(*numbers: str) -> dict[str, Any]:
    return {
        "available_phone_numbers": [
            {"phone_number": n, "friendly_name": n, "iso_country": "US"} for n in numbers
        ],
        "uri": f"/2010-04-01/Accounts/{ACCOUNT_SID}/AvailablePhoneNumbers/US/Local.json",
    }


def make_client(fake_time: FakeTime, twilio: MemoryTwilio) -> TwilioNumbersClient:
    return TwilioNumbersClient(
        ACCOUNT_SID,
        AUTH_TOKEN,
        rate_limit=None,
        retry=fake_time.policy(random=lambda: 0.5),
        transport=twilio,
    )


def posted_numbers(twilio: MemoryTwilio) -> list[str]:
    return [form(request)["PhoneNumber"] for request in twilio.sent("POST", NUMBERS_URL)]


async def test_a_candidate_is_posted_as_a_given_number_with_every_other_field(
    fake_time: FakeTime, twilio: MemoryTwilio
) -> None:
    twilio.get(SEARCH_URL, 200, found(*CANDIDATES))
    twilio.post(NUMBERS_URL, 201, resource(phone_number=CANDIDATES[0]))
    request = NumberPurchase(area_code="415", friendly_name="support")
    async with make_client(fake_time, twilio) as client:
        await client.purchase(request)
    (posted,) = twilio.sent("POST", NUMBERS_URL)
    sent = form(posted)
    assert "AreaCode" not in sent
    assert sent["PhoneNumber"] in CANDIDATES
    assert sent["FriendlyName"] == "support"


async def test_a_candidate_someone_else_took_gives_way_to_the_next_with_no_doubt(
    fake_time: FakeTime, twilio: MemoryTwilio
) -> None:
    twilio.get(SEARCH_URL, 200, found(*CANDIDATES))
    twilio.post(NUMBERS_URL, 400, twilio_error(21422))
    twilio.post(NUMBERS_URL, 400, twilio_error(21422))
    twilio.post(NUMBERS_URL, 201, resource())
    async with make_client(fake_time, twilio) as client:
        number = await client.create_incoming_phone_number(area_code="415")
    assert number.sid.startswith("PN")
    tried = posted_numbers(twilio)
    assert sorted(tried) == CANDIDATES, "three candidates, each once: no look-up, no retry"
    assert fake_time.sleeps == [], "taken by someone else is no failure to back off from"


async def test_a_candidate_in_doubt_is_looked_up_not_abandoned(
    fake_time: FakeTime, twilio: MemoryTwilio
) -> None:
    twilio.get(SEARCH_URL, 200, found(CANDIDATES[0]))
    twilio.post(NUMBERS_URL, 500, twilio_error(20500, 500))
    find = f"{NUMBERS_URL}?PhoneNumber=%2B14155550101&PageSize=50"
    twilio.get(find, 200, page(resource(phone_number=CANDIDATES[0])))
    async with make_client(fake_time, twilio) as client:
        number = await client.create_incoming_phone_number(area_code="415")
    assert number.phone_number == CANDIDATES[0]
    assert len(twilio.sent("POST", NUMBERS_URL)) == 1, "found on the account: never POSTed again"


async def test_a_21422_after_doubt_that_no_look_up_finds_stays_unknown(
    fake_time: FakeTime, twilio: MemoryTwilio
) -> None:
    # Ours, not yet listed, or someone else's: only the account can tell, later. Moving on to
    # the next candidate could buy a second number.
    twilio.get(SEARCH_URL, 200, found(*CANDIDATES))
    twilio.post(NUMBERS_URL, 503, twilio_error(20503, 503))
    twilio.post(NUMBERS_URL, 400, twilio_error(21422))
    find = "{}?PhoneNumber={}&PageSize=50"
    for candidate in CANDIDATES:
        url = find.format(NUMBERS_URL, candidate.replace("+", "%2B"))
        twilio.get(url, 200, page(), repeat=True)
    async with make_client(fake_time, twilio) as client:
        with pytest.raises(PurchaseOutcomeUnknownError):
            await client.create_incoming_phone_number(area_code="415")
    assert len(set(posted_numbers(twilio))) == 1, "never a second candidate"


def find_url(number: str) -> str:
    return f"{NUMBERS_URL}?PhoneNumber={number.replace('+', '%2B')}&PageSize=50"


async def test_a_number_this_client_bought_is_never_another_purchases_candidate(
    fake_time: FakeTime, twilio: MemoryTwilio
) -> None:
    """Twilio lists a number until its sale completes: a later search may list one just bought.
    Handed to a second purchase whose answer is lost, its look-up would find the number and two
    outcomes would claim it."""
    twilio.get(SEARCH_URL, 200, found(CANDIDATES[0]), repeat=True)
    twilio.post(NUMBERS_URL, 201, resource(phone_number=CANDIDATES[0]))
    async with make_client(fake_time, twilio) as client:
        outcomes = [
            o
            async for o in client.purchase_many(
                [NumberPurchase(area_code="415")] * 2, concurrency=1
            )
        ]
    assert [o.ok for o in outcomes] == [True, False]
    assert isinstance(outcomes[1].error, TwilioApiError)
    assert outcomes[1].error.code == 21452
    assert posted_numbers(twilio) == [CANDIDATES[0]], "the number bought is not POSTed again"


async def test_a_resumed_candidate_is_held_from_the_purchases_of_the_new_run(
    fake_time: FakeTime, twilio: MemoryTwilio, tmp_path: Path
) -> None:
    """A run stopped with a candidate's POST unanswered: the rerun's first purchase looks it up,
    and no other purchase of the rerun may buy it meanwhile (its look-up would find that one)."""
    journal = tmp_path / "j.jsonl"
    hang = Hang()
    twilio.get(SEARCH_URL, 200, found(CANDIDATES[0]))
    twilio.post(NUMBERS_URL, hang)
    async with make_client(fake_time, twilio) as client:
        run = client.purchase_many([NumberPurchase(area_code="415")], journal=journal)
        first = asyncio.ensure_future(anext(run))
        await hang.reached()
        first.cancel()
        with pytest.raises(asyncio.CancelledError):
            await first
        await run.aclose()

    rerun = MemoryTwilio()
    # The earlier POST did not buy it; the look-up is slow, and the new request searches meanwhile.
    looked = asyncio.Event()

    async def not_found(_: object) -> Response:
        await looked.wait()
        return reply(200, page())

    rerun.get(find_url(CANDIDATES[0]), not_found)
    rerun.get(SEARCH_URL, 200, found(CANDIDATES[0], CANDIDATES[1]), repeat=True)

    def buy(request: Request) -> Response:
        looked.set()
        return reply(201, resource(phone_number=form(request)["PhoneNumber"]))

    rerun.post(NUMBERS_URL, buy, repeat=True)
    async with make_client(fake_time, rerun) as client:
        outcomes = [
            o
            async for o in client.purchase_many(
                [NumberPurchase(area_code="415")] * 2, journal=journal
            )
        ]
    bought = sorted(o.number.phone_number for o in outcomes if o.ok)
    assert bought == sorted(CANDIDATES[:2]), "each claims a number of its own"
    assert sorted(posted_numbers(rerun)) == sorted(CANDIDATES[:2])


async def test_pools_of_finished_purchases_are_not_kept(
    fake_time: FakeTime, twilio: MemoryTwilio
) -> None:
    """A long-lived client buying on many subaccounts keeps no pool per subaccount."""
    accounts = [f"AC{i:032x}" for i in range(1, 6)]
    for account in accounts:
        base = f"https://api.twilio.com/2010-04-01/Accounts/{account}"
        twilio.get(SEARCH_URL.replace(BASE, base), 200, found())
    async with make_client(fake_time, twilio) as client:
        for account in accounts:
            with pytest.raises(TwilioApiError):
                await client.purchase(NumberPurchase(area_code="415"), account_sid=account)
        pools = client._engine.pools
        assert len(pools._pools) <= 1
        assert len(pools._claims) <= 1


async def test_no_candidate_is_21452_and_nothing_is_posted(
    fake_time: FakeTime, twilio: MemoryTwilio
) -> None:
    twilio.get(SEARCH_URL, 200, found())
    async with make_client(fake_time, twilio) as client:
        with pytest.raises(TwilioApiError) as caught:
            await client.create_incoming_phone_number(area_code="415")
    assert (caught.value.code, caught.value.status) == (21452, 400)
    assert twilio.sent("POST", NUMBERS_URL) == []


async def test_concurrent_purchases_share_one_search_and_never_one_candidate(
    fake_time: FakeTime, twilio: MemoryTwilio
) -> None:
    many = [f"+1415555{n:04d}" for n in range(20)]
    twilio.get(SEARCH_URL, 200, found(*many))
    twilio.post(NUMBERS_URL, 201, resource(), repeat=True)
    async with make_client(fake_time, twilio) as client:
        await asyncio.gather(
            *(client.create_incoming_phone_number(area_code="415") for _ in range(10))
        )
    assert len(twilio.sent("GET", SEARCH_URL)) == 1, "one search served all ten"
    tried = posted_numbers(twilio)
    assert len(tried) == len(set(tried)) == 10, "no candidate went to two purchases"


async def test_the_request_implies_the_capabilities_searched_for(
    fake_time: FakeTime, twilio: MemoryTwilio
) -> None:
    url = (
        f"{BASE}/AvailablePhoneNumbers/CA/Local.json"
        "?AreaCode=604&SmsEnabled=true&VoiceEnabled=true&PageSize=100"
    )
    twilio.get(url, 200, found("+16045550100"))
    twilio.post(NUMBERS_URL, 201, resource())
    async with make_client(fake_time, twilio) as client:
        await client.create_incoming_phone_number(
            area_code="604", sms_url="https://example.com/sms", voice_url="https://example.com/v"
        )
    assert len(twilio.sent("GET", url)) == 1, "Canada's area code, searched in CA, with filters"


async def test_test_credentials_that_cant_search_post_the_area_code(
    fake_time: FakeTime, twilio: MemoryTwilio
) -> None:
    twilio.get(SEARCH_URL, 403, twilio_error(20008, 403))
    twilio.post(NUMBERS_URL, 201, resource())
    async with make_client(fake_time, twilio) as client:
        await client.create_incoming_phone_number(area_code="415")
    (request,) = twilio.sent("POST", NUMBERS_URL)
    assert form(request) == {"AreaCode": "415"}
