"""An asyncio client for buying Twilio phone numbers that never buys one twice.

::

    async with TwilioNumbersClient.from_env() as client:
        number = await client.create_incoming_phone_number(area_code="415")

Everything public is importable from here; the modules behind it are private but for
``sandbox`` (a fake Twilio on loopback), ``ratelimit``, ``retry`` and ``bulk``.
"""

from __future__ import annotations

from ._journal import JournalError
from ._purchase import PurchaseStats
from ._version import VERSION as __version__  # noqa: N811 - the conventional name
from .bulk import BulkProgress, OutcomeStatus, PurchaseOutcome
from .client import TwilioNumbersClient
from .errors import (
    AuthenticationError,
    PurchaseOutcomeUnknownError,
    RateLimitedError,
    RequestValidationError,
    ResponseParseError,
    TransportError,
    TwilioApiError,
    TwilioNumbersError,
)
from .models import (
    AddressRequirement,
    Capabilities,
    EmergencyAddressStatus,
    EmergencyStatus,
    HttpMethod,
    IncomingPhoneNumber,
    MobileNumberPurchase,
    NumberPurchase,
    PurchaseRequest,
    VoiceReceiveMode,
)
from .ratelimit import Limiter, TokenBucket
from .retry import FailureKind, RetryEvent, RetryPolicy

__all__ = [
    "AddressRequirement",
    "AuthenticationError",
    "BulkProgress",
    "Capabilities",
    "EmergencyAddressStatus",
    "EmergencyStatus",
    "FailureKind",
    "HttpMethod",
    "IncomingPhoneNumber",
    "JournalError",
    "Limiter",
    "MobileNumberPurchase",
    "NumberPurchase",
    "OutcomeStatus",
    "PurchaseOutcome",
    "PurchaseOutcomeUnknownError",
    "PurchaseRequest",
    "PurchaseStats",
    "RateLimitedError",
    "RequestValidationError",
    "ResponseParseError",
    "RetryEvent",
    "RetryPolicy",
    "TokenBucket",
    "TransportError",
    "TwilioApiError",
    "TwilioNumbersClient",
    "TwilioNumbersError",
    "VoiceReceiveMode",
    "__version__",
]
