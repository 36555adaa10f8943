"""A FastAPI service that buys a phone number per request, with ONE client for its lifetime.

    POST /numbers  {"area_code": "415"}  or  {"phone_number": "+14155550100"}
                   (optionally "friendly_name"), with Content-Type: application/json
    -> 201 {"phone_number": "+14155550100", "sid": "PN...", "friendly_name": "...", ...}

The client is made in the app's lifespan, kept on app.state and handed to the route by a
dependency: one connection pool and one rate limiter for every request, closed at shutdown.
(A client made per request is the classic mistake: a new pool each time, and a session left
unclosed when the handler forgets.)

Configuration, from the environment, read by TwilioNumbersClient.from_env():
  TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN (or TWILIO_API_KEY and TWILIO_API_SECRET),
  TWILIO_EDGE, TWILIO_REGION
  TWILIO_BASE_URL              a sandbox's URL, for trying it out without spending money
                               (`twilio-numbers sandbox` prints one), as for twilio-numbers
Needs the `examples` extra (FastAPI), and uvicorn to serve.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import math
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Annotated, Any, Final

from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict

# Careful: FastAPI has a RequestValidationError of its own (a pydantic failure); this one is
# the library's, raised when a value breaks Twilio's rules (an E.164 number, say).
from twilio_numbers_async import (
    IncomingPhoneNumber,
    NumberPurchase,
    PurchaseOutcomeUnknownError,
    RateLimitedError,
    RequestValidationError,
    ResponseParseError,
    TransportError,
    TwilioApiError,
    TwilioNumbersClient,
    TwilioNumbersError,
)

logger = logging.getLogger("examples.fastapi_app")

# Twilio's codes that are about the caller's request, and the status that tells the caller so.
# Everything else Twilio refuses (credentials, account, a missing address or bundle) is this
# service's configuration: a 502, since retrying or rephrasing won't help the caller.
CALLER_ERRORS: Final = {
    21421: 422,  # PhoneNumber is not a valid number
    21451: 422,  # AreaCode is not a valid area code
    21422: 409,  # the number is not available (any more): pick another
    21452: 409,  # no numbers left in that area code: try another
}


class NumberIn(BaseModel):
    """What a caller may send. Webhook URLs and the like are this service's business: a public
    endpoint that let anyone point a number's SmsUrl anywhere would be a hole."""

    model_config = ConfigDict(extra="forbid")

    phone_number: str | None = None
    area_code: str | None = None
    friendly_name: str | None = None


class CapabilitiesOut(BaseModel):
    voice: bool | None
    sms: bool | None
    mms: bool | None


class NumberOut(BaseModel):
    """What the caller gets back: the number, not the account's configuration."""

    phone_number: str | None
    sid: str | None
    friendly_name: str | None
    capabilities: CapabilitiesOut | None

    @classmethod
    def of(cls, number: IncomingPhoneNumber) -> NumberOut:
        caps = number.capabilities
        return cls(
            phone_number=number.phone_number,
            sid=number.sid,
            friendly_name=number.friendly_name,
            capabilities=CapabilitiesOut(voice=caps.voice, sms=caps.sms, mms=caps.mms)
            if caps is not None
            else None,
        )


def client_from_env(**settings: Any) -> TwilioNumbersClient:
    """The client, configured from TWILIO_* variables (see the docstring); ``settings``
    (``retry=``, ``timeout=``...) go to the client."""
    return TwilioNumbersClient.from_env(**settings)


def twilio(request: Request) -> TwilioNumbersClient:
    """The dependency: the application's one client."""
    client: TwilioNumbersClient = request.app.state.twilio
    return client


Twilio = Annotated[TwilioNumbersClient, Depends(twilio)]


def problem(error: TwilioNumbersError) -> tuple[int, dict[str, Any], dict[str, str]]:
    """Status, JSON body and headers for a failed purchase (as in aiohttp_app.py)."""
    if isinstance(error, RequestValidationError):
        return 422, {"error": "invalid_request", "field": error.field, "message": error.reason}, {}
    # The number may have been bought. A 409, not a 5xx: proxies and HTTP clients retry 5xx on
    # their own, and a blind retry is the one thing that could buy a second number. The caller
    # must look before buying again.
    if isinstance(error, PurchaseOutcomeUnknownError):
        message = "the number may have been bought; check the account before trying again"
        return 409, {"error": "purchase_outcome_unknown", "message": message}, {}
    if isinstance(error, ResponseParseError):
        # Twilio answered 2xx with a body that names no number, and the number was not on the
        # account when looked up (an answer that names its SID is fetched by it, and returned).
        message = "Twilio answered, but what it bought could not be read; check the account"
        return 409, {"error": "purchase_unreadable", "message": message, "sid": error.sid}, {}
    if isinstance(error, RateLimitedError):
        # Nothing was bought: the caller may try again once Twilio's limit has passed.
        wait = math.ceil(error.retry_after) if error.retry_after else 1
        message = "Twilio is rate limiting this account; try again later"
        return 503, {"error": "rate_limited", "message": message}, {"Retry-After": str(wait)}
    if isinstance(error, TransportError) or (
        isinstance(error, TwilioApiError) and error.status >= 500
    ):
        # The library raises these only when nothing was bought: the number (an area code's
        # too: it is bought as a number a search found) was looked up on the account first.
        # str(error) names the account in its URL: it is logged, not handed to the caller.
        message = "Twilio could not be reached; nothing was bought, try again later"
        return 503, {"error": "twilio_unavailable", "message": message}, {}
    if isinstance(error, TwilioApiError):
        body: dict[str, Any] = {
            "error": "twilio_error",
            "code": error.code,
            "message": error.message,
            "hint": error.hint,
            "request_id": error.request_id,
        }
        status = CALLER_ERRORS.get(error.code, 502) if error.code is not None else 502
        return status, body, {}
    return 500, {"error": "internal_error", "message": type(error).__name__}, {}


async def twilio_error(request: Request, error: Exception) -> JSONResponse:
    """Every library error a route lets through becomes a JSON answer; routes stay simple."""
    assert isinstance(error, TwilioNumbersError)  # noqa: S101 - registered for it alone
    if not isinstance(error, RequestValidationError):
        # The full error (account, Twilio-Request-Id, more_info) is for the logs.
        logger.warning("%s %s failed: %s", request.method, request.url.path, error)
    status, body, headers = problem(error)
    return JSONResponse(body, status_code=status, headers=headers)


def create_app(make_client: Callable[[], TwilioNumbersClient] = client_from_env) -> FastAPI:
    """The application; ``make_client`` is called once, at start-up (tests pass their own)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Made here, inside the running loop, and closed when the server stops.
        async with make_client() as client:
            app.state.twilio = client
            yield

    app = FastAPI(title="numbers", lifespan=lifespan)
    app.add_exception_handler(TwilioNumbersError, twilio_error)

    @app.post("/numbers", status_code=201)
    async def buy_number(body: NumberIn, client: Twilio) -> NumberOut:
        """Buy the number the body describes."""
        # NumberPurchase checks the values against Twilio's rules before anything is sent.
        number = await client.purchase(NumberPurchase(**body.model_dump(exclude_none=True)))
        return NumberOut.of(number)

    return app


def main(argv: list[str] | None = None) -> None:
    summary, _, details = (__doc__ or "").partition("\n\n")
    parser = argparse.ArgumentParser(
        description=summary,
        epilog=details,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to serve on (127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="port to serve on (8000)")
    args = parser.parse_args(argv)
    try:
        # Fail before serving, with a message, when the environment is incomplete.
        client_from_env()
    except ValueError as exc:
        parser.exit(2, f"error: {exc}\n")
    try:
        # Needed only to serve, not to import or test the app.
        uvicorn = importlib.import_module("uvicorn")
    except ImportError:
        parser.exit(2, "error: serving needs uvicorn: pip install uvicorn\n")
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    uvicorn.run(create_app(), host=args.host, port=args.port)


if __name__ == "__main__":
    main()
