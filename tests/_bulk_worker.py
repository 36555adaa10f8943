"""A bulk purchase run as its own process, so a test can kill it mid-run (``SIGKILL``).

``python -m tests._bulk_worker URL ACCOUNT_SID AUTH_TOKEN JOURNAL COUNT`` buys :func:`batch`
against the sandbox at URL, journaling to JOURNAL. The parent builds the same batch to resume.
"""

from __future__ import annotations

import asyncio
import sys

from twilio_numbers_async import (
    MobileNumberPurchase,
    NumberPurchase,
    PurchaseRequest,
    RetryPolicy,
    TwilioNumbersClient,
)

__all__ = ["batch", "tag"]


def tag(index: int) -> str:
    """The friendly name that ties a sandbox purchase to the request that made it."""
    return f"req-{index:05d}"


def batch(count: int) -> list[PurchaseRequest]:
    """A deterministic mix of given numbers, area codes and mobile numbers, each tagged."""
    requests: list[PurchaseRequest] = []
    for index in range(count):
        name = tag(index)
        kind = index % 3
        if kind == 0:
            requests.append(NumberPurchase(phone_number=f"+1312555{index:04d}", friendly_name=name))
        elif kind == 1:
            requests.append(NumberPurchase(area_code="415", friendly_name=name))
        else:
            requests.append(
                MobileNumberPurchase(phone_number=f"+4477009{index:05d}", friendly_name=name)
            )
    return requests


async def _main(url: str, account_sid: str, auth_token: str, journal: str, count: int) -> None:
    policy = RetryPolicy(initial_delay=0.01, max_delay=0.1)
    async with TwilioNumbersClient(
        account_sid, auth_token, base_url=url, rate_limit=None, retry=policy
    ) as client:
        async for _ in client.purchase_many(batch(count), concurrency=8, journal=journal):
            pass


if __name__ == "__main__":
    url, account_sid, auth_token, journal, count = sys.argv[1:]
    asyncio.run(_main(url, account_sid, auth_token, journal, int(count)))
