"""Twilio's error answers: the JSON error body, and the exception that carries one to the app.

Handlers raise :class:`ApiError`; the app turns it into the response Twilio would send, so
that every error in the sandbox has one shape:
``{"code": 21422, "message": "...", "more_info": "https://www.twilio.com/docs/errors/21422",
"status": 400}`` with ``Content-Type: application/json``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

__all__ = [
    "ApiError",
    "error_body",
    "not_found",
    "rate_limited",
    "shown",
]

_MORE_INFO = "https://www.twilio.com/docs/errors/{code}"
# Values echoed into messages are cut short: a message is for a human, not a dump of the form.
_SHOWN_MAX = 80
# Paths longer: Twilio's 404 names a number's whole path (about 120 characters).
_PATH_SHOWN_MAX = 200


class ApiError(Exception):
    """An error answer: HTTP ``status``, Twilio's ``code`` and ``message``, extra ``headers``."""

    def __init__(
        self,
        status: int,
        code: int,
        message: str,
        *,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.status = status
        self.code = code
        self.message = message
        self.headers: dict[str, str] = dict(headers or {})
        super().__init__(f"HTTP {status} {code}: {message}")

    def body(self) -> bytes:
        """The JSON body Twilio sends with this error."""
        return error_body(self.status, self.code, self.message)


def error_body(status: int, code: int, message: str) -> bytes:
    """Twilio's JSON error body, encoded."""
    return json.dumps(
        {
            "code": code,
            "message": message,
            "more_info": _MORE_INFO.format(code=code),
            "status": status,
        }
    ).encode()


def shown(value: str, limit: int = _SHOWN_MAX) -> str:
    """``value`` as it may appear in an error message: shortened when over ``limit``."""
    if len(value) <= limit:
        return value
    return value[: limit - 3] + "..."


def not_found(path: str) -> ApiError:
    """404 / 20404, Twilio's answer for a path or account it does not know."""
    return ApiError(
        404, 20404, f"The requested resource {shown(path, _PATH_SHOWN_MAX)} was not found"
    )


def rate_limited(retry_after: float | str | None = None) -> ApiError:
    """429 / 20429, with ``Retry-After`` when one is given (seconds, or an HTTP-date as is)."""
    headers = {} if retry_after is None else {"Retry-After": _retry_after(retry_after)}
    return ApiError(429, 20429, "Too Many Requests", headers=headers)


def _retry_after(value: float | str) -> str:
    if isinstance(value, str):
        return value
    # Whole seconds print as "2", not "2.0": the form RFC 9110's delay-seconds takes.
    return str(int(value)) if float(value).is_integer() else repr(float(value))
