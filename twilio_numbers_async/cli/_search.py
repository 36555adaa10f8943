"""``twilio-numbers search``: the numbers for sale, as a table or one JSON object."""

from __future__ import annotations

from argparse import Namespace
from collections.abc import Coroutine
from typing import Any

import attrs

from twilio_numbers_async._nanp import country_of_area_code
from twilio_numbers_async.client import TwilioNumbersClient
from twilio_numbers_async.models import AvailablePhoneNumber, Capabilities

from ._console import Output
from ._twilio import connect

__all__ = ["run"]

_CAPABILITIES = ("voice", "sms", "mms", "fax")


def run(args: Namespace, out: Output) -> Coroutine[Any, Any, bool]:
    """Search Twilio's numbers for sale (or wherever ``--base-url`` points). A search buys
    nothing, so it needs no go-ahead."""
    client = connect(args, go_ahead=None)
    return _search(client, args, out)


async def _search(client: TwilioNumbersClient, args: Namespace, out: Output) -> bool:
    country = args.country or _country(args.area_code)
    async with client:
        found = await client.search_available_phone_numbers(
            country,
            kind=args.kind,
            area_code=args.area_code,
            contains=args.contains,
            sms_enabled=args.sms or None,
            mms_enabled=args.mms or None,
            voice_enabled=args.voice or None,
            limit=args.limit,
            account_sid=args.account_sid,
        )
    if out.json_mode:
        out.json(
            {
                "country": country,
                "kind": args.kind,
                "area_code": args.area_code,
                "contains": args.contains,
                "count": len(found),
                "numbers": [_number_json(number) for number in found],
            }
        )
    elif found:
        out.table(
            f"Numbers for sale ({country}, {args.kind}): {len(found)}",
            [_row(number) for number in found],
            headers=("phone_number", "friendly_name", "locality", "region", "capabilities"),
        )
    else:
        out.line(f"No numbers for sale in {country} ({args.kind}) match.")
    return True


def _country(area_code: str | None) -> str:
    """The country an area code's numbers are searched in (Canada's codes: ``CA``), or
    ``US``. An area code that is not one is left for the search's own check to name."""
    if area_code is None:
        return "US"
    try:
        return country_of_area_code(area_code)
    except ValueError:
        return "US"


def _number_json(number: AvailablePhoneNumber) -> dict[str, Any]:
    data = attrs.asdict(number)
    data.update(data.pop("extra"))  # as Twilio sent it
    return data


def _row(number: AvailablePhoneNumber) -> tuple[str, str, str, str, str]:
    return (
        number.phone_number,
        number.friendly_name or "",
        number.locality or "",
        number.region or "",
        _capabilities(number.capabilities),
    )


def _capabilities(capabilities: Capabilities | None) -> str:
    if capabilities is None:
        return ""
    return " ".join(name for name in _CAPABILITIES if getattr(capabilities, name))
