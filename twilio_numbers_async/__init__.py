"""An asyncio client for buying Twilio phone numbers that never buys one twice.

::

    async with TwilioNumbersClient.from_env() as client:
        number = await client.create_incoming_phone_number(area_code="415")

Everything public is importable from here; the modules behind it are private but for
``sandbox`` (a fake Twilio on loopback), ``ratelimit``, ``retry`` and ``bulk``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._version import VERSION as __version__  # noqa: N811 - the conventional name

if TYPE_CHECKING:
    from ._journal import JournalError
    from .bulk import BulkProgress, OutcomeStatus, PurchaseOutcome
    from .client import TwilioNumbersClient
    from .errors import (
        AuthenticationError,
        ClientClosedError,
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
    "ClientClosedError",
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

# Where each public name lives. Names are imported on first use (PEP 562), so that importing a
# submodule alone, such as the pytest plugin that every test run of a project with this library
# installed loads, does not pay for aiohttp and the converter's code generation.
_HOMES: dict[str, str] = {
    "AddressRequirement": "models",
    "AuthenticationError": "errors",
    "BulkProgress": "bulk",
    "Capabilities": "models",
    "ClientClosedError": "errors",
    "EmergencyAddressStatus": "models",
    "EmergencyStatus": "models",
    "FailureKind": "retry",
    "HttpMethod": "models",
    "IncomingPhoneNumber": "models",
    "JournalError": "_journal",
    "Limiter": "ratelimit",
    "MobileNumberPurchase": "models",
    "NumberPurchase": "models",
    "OutcomeStatus": "bulk",
    "PurchaseOutcome": "bulk",
    "PurchaseOutcomeUnknownError": "errors",
    "PurchaseRequest": "models",
    "RateLimitedError": "errors",
    "RequestValidationError": "errors",
    "ResponseParseError": "errors",
    "RetryEvent": "retry",
    "RetryPolicy": "retry",
    "TokenBucket": "ratelimit",
    "TransportError": "errors",
    "TwilioApiError": "errors",
    "TwilioNumbersClient": "client",
    "TwilioNumbersError": "errors",
    "VoiceReceiveMode": "models",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{home}", __name__), name)
    globals()[name] = value  # once: later look-ups find it directly
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
