"""What a type checker knows about a bought number, from each client: checked, never run.

``compare_sdk`` runs ``mypy --strict`` on this file and reads the revealed types, in the order
they are written here: the SDK's ``sid`` and ``date_created``, then ours. The SDK's import
carries no ``type: ignore`` on purpose: what mypy says about it is part of the observation.
"""

from __future__ import annotations

from typing import reveal_type

from twilio.rest import Client

from twilio_numbers_async import TwilioNumbersClient


async def bought_with_the_sdk(client: Client) -> None:
    number = await client.incoming_phone_numbers.create_async(phone_number="+14155550100")
    reveal_type(number.sid)
    reveal_type(number.date_created)


async def bought_with_ours(client: TwilioNumbersClient) -> None:
    number = await client.create_incoming_phone_number(phone_number="+14155550100")
    reveal_type(number.sid)
    reveal_type(number.date_created)
