"""``twilio-numbers buy``: one number."""

from __future__ import annotations

from argparse import Namespace

from twilio_numbers_async._serde import number_to_json
from twilio_numbers_async.models import IncomingPhoneNumber

from ._console import Output
from ._fields import build_request, optional_fields
from ._twilio import connect

__all__ = ["run"]


async def run(args: Namespace, out: Output) -> bool:
    """Buy one number on Twilio (or wherever ``--base-url`` points)."""
    values = {field.name: getattr(args, field.name) for field in optional_fields()}
    request = build_request(
        {**values, "phone_number": args.phone_number, "area_code": args.area_code},
        mobile=args.mobile,
    )
    async with connect(args) as client:
        number = await client.purchase(request, account_sid=args.account_sid)
    if out.json_mode:
        out.json(number_to_json(number))
    else:
        out.table("Bought", _rows(number))
    return True


def _rows(number: IncomingPhoneNumber) -> list[tuple[str, str]]:
    created = number.date_created.isoformat() if number.date_created is not None else ""
    return [
        ("sid", number.sid or ""),
        ("phone_number", number.phone_number or ""),
        ("friendly_name", number.friendly_name or ""),
        ("date_created", created),
        ("account_sid", number.account_sid or ""),
    ]
