"""A fake Twilio on loopback, for tests, demos and benchmarks of clients that buy numbers.

::

    from twilio_numbers_async.sandbox import Sandbox, Faults, Fault

    async with Sandbox(faults=Faults(drop_after_commit=0.05), seed=1) as sandbox:
        async with sandbox.client() as client:
            number = await client.create_incoming_phone_number(area_code="415")
        assert len(sandbox.purchases) == len(set(p.phone_number for p in sandbox.purchases))

It serves the two purchase endpoints, the GET list of IncomingPhoneNumbers, the GET and DELETE
of one number and the AvailablePhoneNumbers searches the way Twilio does (authentication,
spec validation, error codes, magic test numbers, one sale per number, the account's limits)
and injects faults, seeded and reproducible, so that a client's "never buy twice" can be proven.
"""

from __future__ import annotations

from ._faults import Fault, Faults
from ._records import PurchaseRecord, ReleaseRecord, RequestRecord
from ._sandbox import Sandbox

__all__ = [
    "Fault",
    "Faults",
    "PurchaseRecord",
    "ReleaseRecord",
    "RequestRecord",
    "Sandbox",
]
