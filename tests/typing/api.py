"""How user code sees the public API: type-checked by .ci/run (mypy --strict), never run.

The ``type: ignore`` lines are claims that a mistake is caught: under ``--strict`` an ignore
that is not needed is itself an error, so a type that loosens fails CI.
"""

from __future__ import annotations

import contextlib
from datetime import datetime

from twilio_numbers_async import (
    Bought,
    HttpMethod,
    IncomingPhoneNumber,
    MobileNumberPurchase,
    NotBought,
    NumberPurchase,
    OutcomeStatus,
    PurchaseOutcome,
    PurchaseOutcomeUnknownError,
    RetryPolicy,
    TokenBucket,
    TwilioApiError,
    TwilioNumbersClient,
)
from twilio_numbers_async.sandbox import Fault, Sandbox


async def buy(client: TwilioNumbersClient) -> tuple[str, datetime]:
    number: IncomingPhoneNumber = await client.create_incoming_phone_number(
        area_code="415", sms_method="GET", voice_method=HttpMethod.POST
    )
    # What every number Twilio sold has is never None: no check needed before using it.
    assert number.sid.startswith("PN")
    number.phone_number.removeprefix("+1")
    await client.create_incoming_phone_number(area_code=415)  # type: ignore[arg-type]
    await client.create_incoming_phone_number(sms_urll="https://x")  # type: ignore[call-arg]
    await client.create_incoming_phone_number(sms_method="PUT")  # type: ignore[arg-type]
    await client.create_incoming_phone_number(voice_caller_id_lookup="yes")  # type: ignore[arg-type]
    await client.create_incoming_phone_number_mobile()  # type: ignore[call-arg]
    await client.purchase(
        MobileNumberPurchase(phone_number="+447700900123", emergency_status="Active")
    )
    return number.sid, number.date_created


async def bulk(client: TwilioNumbersClient) -> list[object]:
    # A list of both request kinds needs no annotation: mypy joins them to PurchaseRequest.
    requests = [
        NumberPurchase(area_code="212"),
        MobileNumberPurchase(phone_number="+447700900123"),
    ]
    seen: list[object] = []
    async with contextlib.aclosing(client.purchase_many(requests, concurrency=4)) as outcomes:
        async for outcome in outcomes:
            checked: PurchaseOutcome = outcome
            checked.number.sid  # type: ignore[union-attr]  # noqa: B018 - not narrowed yet
            if checked.ok:  # narrows: the number is there
                seen.append(checked.number.phone_number)
            elif checked.status is OutcomeStatus.UNKNOWN:
                seen.append(checked.error)  # narrowed too: not bought, so an error
            elif isinstance(checked.error, PurchaseOutcomeUnknownError):
                seen.append(checked.error.request)
            elif isinstance(checked.error, TwilioApiError):
                seen.append((checked.error.code, checked.error.request_id))
            match outcome:
                case Bought(number=number):
                    seen.append(number.sid.upper())
                case NotBought(error=error):
                    seen.append(str(error))
    inline = client.purchase_many(
        [NumberPurchase(area_code="312"), MobileNumberPurchase(phone_number="+447700900124")]
    )
    seen.extend([outcome async for outcome in inline])
    return seen


async def configured() -> None:
    policy = RetryPolicy(max_attempts=3, initial_delay=0.1)
    async with Sandbox(seed=1) as sandbox, sandbox.client(retry=policy) as client:
        sandbox.script(Fault.drop_after_commit())
        await client.purchase(NumberPurchase(phone_number="+14155550100"))
    TwilioNumbersClient("AC" + "0" * 32, "token", rate_limit=TokenBucket(10), max_concurrency=4)
    async with TwilioNumbersClient() as from_the_environment:  # TWILIO_* variables
        limit: int = from_the_environment.concurrency.limit
        found = await from_the_environment.search_available_phone_numbers(area_code="415")
        assert all(candidate.phone_number.startswith("+1415") for candidate in found)
        gone: bool = await from_the_environment.release_incoming_phone_number("PN" + "0" * 32)
        del limit, gone
    TwilioNumbersClient("AC" + "0" * 32, "token", rate_limit="10")  # type: ignore[arg-type]
