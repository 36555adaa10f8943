"""``twilio-numbers buy``: one number."""

from __future__ import annotations

from argparse import Namespace
from collections.abc import Coroutine
from datetime import datetime
from typing import Any

import attrs

from twilio_numbers_async._serde import number_to_json
from twilio_numbers_async.client import TwilioNumbersClient
from twilio_numbers_async.models import IncomingPhoneNumber, MobileNumberPurchase, PurchaseRequest

from ._console import Output
from ._fields import build_request, optional_fields
from ._twilio import GoAhead, connect

__all__ = ["run"]


def run(args: Namespace, out: Output) -> Coroutine[Any, Any, bool]:
    """Check the request and get the go-ahead, before the event loop starts; then buy one
    number on Twilio (or wherever ``--base-url`` points)."""
    values = {field.name: getattr(args, field.name) for field in optional_fields()}
    request = build_request(
        {**values, "phone_number": args.phone_number, "area_code": args.area_code},
        mobile=args.mobile,
    )
    client = connect(args, go_ahead=GoAhead(_purchase(request)), area_codes=args.area_codes)
    return _buy(client, request, args, out)


async def _buy(
    client: TwilioNumbersClient, request: PurchaseRequest, args: Namespace, out: Output
) -> bool:
    async with client:
        number = await client.purchase(request, account_sid=args.account_sid)
    if out.json_mode:
        out.json(_number_json(number))
    else:
        out.table("Bought", _rows(number))
    return True


def _number_json(number: IncomingPhoneNumber) -> dict[str, Any]:
    """The number as Twilio sends it, but its dates in ISO 8601, as the table shows them and
    as every other date the command line writes (Twilio's RFC 2822 dates are for Twilio)."""
    data = number_to_json(number)
    for field in attrs.fields(IncomingPhoneNumber):
        value = getattr(number, field.name)
        if isinstance(value, datetime) and field.name in data:
            data[field.name] = value.isoformat()
    return data


def _purchase(request: PurchaseRequest) -> str:
    if isinstance(request, MobileNumberPurchase):
        return f"buy the mobile number {request.phone_number}"
    if request.phone_number is not None:
        return f"buy {request.phone_number}"
    return f"buy a number in area code {request.area_code}"


def _rows(number: IncomingPhoneNumber) -> list[tuple[str, str]]:
    created = number.date_created.isoformat()
    return [
        ("sid", number.sid),
        ("phone_number", number.phone_number),
        ("friendly_name", number.friendly_name or ""),
        ("date_created", created),
        ("account_sid", number.account_sid or ""),
    ]
