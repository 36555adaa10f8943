"""How user code sees the public API: type-checked by .ci/run (mypy --strict), never run.

The ``type: ignore`` lines are claims that a mistake is caught: under ``--strict`` an ignore
that is not needed is itself an error, so a type that loosens fails CI.
"""

from __future__ import annotations

import contextlib
from datetime import datetime

from twilio_numbers_async import (
    HttpMethod,
    IncomingPhoneNumber,
    MobileNumberPurchase,
    NumberPurchase,
    OutcomeStatus,
    PurchaseOutcome,
    PurchaseOutcomeUnknownError,
    PurchaseRequest,
    RetryPolicy,
    TokenBucket,
    TwilioApiError,
    TwilioNumbersClient,
)
from twilio_numbers_async.sandbox import Fault, Sandbox


async def buy(client: TwilioNumbersClient) -> tuple[str | None, datetime | None]:
    number: IncomingPhoneNumber = await client.create_incoming_phone_number(
        area_code="415", sms_method="GET", voice_method=HttpMethod.POST
    )
    await client.create_incoming_phone_number(sms_method="PUT")  # type: ignore[arg-type]
    await client.create_incoming_phone_number(voice_caller_id_lookup="yes")  # type: ignore[arg-type]
    await client.create_incoming_phone_number_mobile()  # type: ignore[call-arg]
    await client.purchase(
        MobileNumberPurchase(phone_number="+447700900123", emergency_status="Active")
    )
    return number.sid, number.date_created


async def bulk(client: TwilioNumbersClient) -> list[object]:
    # mypy joins a list of both request kinds to their common base class: annotate the list
    # with PurchaseRequest (or pass it inline, where the parameter's type guides inference).
    requests: list[PurchaseRequest] = [
        NumberPurchase(area_code="212"),
        MobileNumberPurchase(phone_number="+447700900123"),
    ]
    seen: list[object] = []
    async with contextlib.aclosing(client.purchase_many(requests, concurrency=4)) as outcomes:
        async for outcome in outcomes:
            checked: PurchaseOutcome = outcome
            if checked.status is OutcomeStatus.BOUGHT and checked.number is not None:
                seen.append(checked.number.sid)
            elif isinstance(checked.error, PurchaseOutcomeUnknownError):
                seen.append(checked.error.request)
            elif isinstance(checked.error, TwilioApiError):
                seen.append((checked.error.code, checked.error.request_id))
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
    TwilioNumbersClient("AC" + "0" * 32, "token", rate_limit="10")  # type: ignore[arg-type]
