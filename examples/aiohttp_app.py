"""An aiohttp.web service that buys a phone number per request, with ONE client for its lifetime.

    POST /numbers  {"area_code": "415"}  or  {"phone_number": "+14155550100"}
                   (optionally "friendly_name"), with Content-Type: application/json
    -> 201 {"phone_number": "+14155550100", "sid": "PN...", "friendly_name": "...", ...}

The client is made in the application's cleanup context, so it is created inside the running
loop, shared by every request (one connection pool, one rate limiter) and closed at shutdown:
no "Unclosed client session" warning, no pool per request.

Configuration, from the environment, read by TwilioNumbersClient.from_env():
  TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN (or TWILIO_API_KEY and TWILIO_API_SECRET),
  TWILIO_EDGE, TWILIO_REGION
  TWILIO_BASE_URL              a sandbox's URL, for trying it out without spending money
                               (`twilio-numbers sandbox` prints one), as for twilio-numbers
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import math
from collections.abc import AsyncIterator, Callable
from typing import Any, Final

from aiohttp import web

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

logger = logging.getLogger("examples.aiohttp_app")

# What a caller may send. Webhook URLs and the like are this service's business, not the
# caller's: a public endpoint that let anyone point a number's SmsUrl anywhere would be a hole.
FIELDS: Final = ("phone_number", "area_code", "friendly_name")
TWILIO: Final = web.AppKey("twilio", TwilioNumbersClient)

# Twilio's codes that are about the caller's request, and the status that tells the caller so.
# Everything else Twilio refuses (credentials, account, a missing address or bundle) is this
# service's configuration: a 502, since retrying or rephrasing won't help the caller.
CALLER_ERRORS: Final = {
    21421: 422,  # PhoneNumber is not a valid number
    21451: 422,  # AreaCode is not a valid area code
    21422: 409,  # the number is not available (any more): pick another
    21452: 409,  # no numbers left in that area code: try another
}


def client_from_env(**settings: Any) -> TwilioNumbersClient:
    """The client, configured from TWILIO_* variables (see the docstring); ``settings``
    (``retry=``, ``timeout=``...) go to the client."""
    return TwilioNumbersClient.from_env(**settings)


def is_json(content_type: str) -> bool:
    """Whether a request's media type is JSON: ``application/json``, or ``application/*+json``."""
    kind, _, subtype = content_type.partition("/")
    return kind == "application" and (subtype == "json" or subtype.endswith("+json"))


def parse_request(body: object) -> NumberPurchase:
    """The purchase a request body asks for; :class:`RequestValidationError` if it is wrong."""
    if not isinstance(body, dict):
        raise RequestValidationError("body", "must be a JSON object")
    for name in body:
        if name not in FIELDS:
            raise RequestValidationError(name, f"unknown field; the fields are {', '.join(FIELDS)}")
    # NumberPurchase checks every value (types included) before anything is sent.
    return NumberPurchase(**body)


def number_json(number: IncomingPhoneNumber) -> dict[str, Any]:
    """What the caller gets back: the number, not the account's configuration."""
    capabilities = number.capabilities
    return {
        "phone_number": number.phone_number,
        "sid": number.sid,
        "friendly_name": number.friendly_name,
        "capabilities": {
            "voice": capabilities.voice,
            "sms": capabilities.sms,
            "mms": capabilities.mms,
        }
        if capabilities is not None
        else None,
    }


def problem(error: TwilioNumbersError) -> tuple[int, dict[str, Any], dict[str, str]]:
    """Status, JSON body and headers for a failed purchase."""
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


def error_response(error: TwilioNumbersError) -> web.Response:
    status, body, headers = problem(error)
    return web.json_response(body, status=status, headers=headers)


async def buy_number(request: web.Request) -> web.Response:
    """``POST /numbers``: buy the number the JSON body describes."""
    if not is_json(request.content_type):
        # As FastAPI does. A web page can make a browser POST a form or text/plain to any site
        # without asking (cross-site request forgery); application/json needs the site's
        # consent first (a CORS preflight). A purchase must not be one click on a hostile page.
        message = "send the body as JSON, with the header Content-Type: application/json"
        return web.json_response(
            {"error": "unsupported_media_type", "message": message}, status=415
        )
    try:
        body = await request.json()
    except json.JSONDecodeError:
        return web.json_response(
            {"error": "invalid_json", "message": "the body must be JSON"}, status=400
        )
    try:
        purchase = parse_request(body)
    except RequestValidationError as error:
        return error_response(error)
    try:
        number = await request.app[TWILIO].purchase(purchase)
    except TwilioNumbersError as error:
        # The full error (account, Twilio-Request-Id, more_info) is for the logs.
        logger.warning("%r failed: %s", purchase, error)
        return error_response(error)
    return web.json_response(number_json(number), status=201)


async def twilio_client(
    app: web.Application, *, make_client: Callable[[], TwilioNumbersClient]
) -> AsyncIterator[None]:
    """The client's life: made at start-up, inside the loop, and closed at shutdown."""
    async with make_client() as client:
        app[TWILIO] = client
        yield


def create_app(make_client: Callable[[], TwilioNumbersClient] = client_from_env) -> web.Application:
    """The application; ``make_client`` is called once, at start-up (tests pass their own)."""
    app = web.Application()
    app.cleanup_ctx.append(functools.partial(twilio_client, make_client=make_client))
    app.router.add_post("/numbers", buy_number)
    return app


def main(argv: list[str] | None = None) -> None:
    summary, _, details = (__doc__ or "").partition("\n\n")
    parser = argparse.ArgumentParser(
        description=summary,
        epilog=details,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to serve on (127.0.0.1)")
    parser.add_argument("--port", type=int, default=8001, help="port to serve on (8001)")
    args = parser.parse_args(argv)
    try:
        # Fail before serving, with a message, when the environment is incomplete.
        client_from_env()
    except ValueError as exc:
        parser.exit(2, f"error: {exc}\n")
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    web.run_app(create_app(), host=args.host, port=args.port)


if __name__ == "__main__":
    main()
