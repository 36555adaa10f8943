"""The exception tree: every error this library raises is a :class:`TwilioNumbersError`.

::

    TwilioNumbersError
    ├── RequestValidationError (also ValueError)  bad input; raised before any I/O
    ├── TwilioApiError           Twilio answered with an error status
    │   ├── AuthenticationError     401 / 20003
    │   └── RateLimitedError        429 / 20429, once retries are spent
    ├── TransportError           connect / read failures and timeouts, once retries are spent
    │   └── RedisLimiterError       a shared limiter could not reach Redis: not sent
    ├── ResponseParseError       a 2xx body that can't be read (for a purchase: the money is spent)
    ├── PurchaseOutcomeUnknownError  the purchase may have happened and can't be checked
    ├── ClientClosedError (also RuntimeError)  the client was closed: the request was not sent
    └── JournalError (also ValueError)  a bulk journal that can't be used: in use, corrupt, not one

No message, ``repr`` or attribute here ever holds a credential: errors are built from the
method, the URL (which names the account, not its token) and Twilio's own error body.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = [
    "AuthenticationError",
    "ClientClosedError",
    "JournalError",
    "PurchaseOutcomeUnknownError",
    "RateLimitedError",
    "RedisLimiterError",
    "RequestValidationError",
    "ResponseParseError",
    "TransportError",
    "TwilioApiError",
    "TwilioNumbersError",
]

# What a caller can do about the Twilio codes this library meets most, so that an error says
# more than its number. https://www.twilio.com/docs/api/errors
_HINTS: Mapping[int, str] = {
    20003: "check the account SID and auth token (or API key and secret) you passed in",
    20404: "no such resource on this account: check the account SID, or the number was released",
    20429: (
        "the account's limit was reached, by this program or others on the account: it is "
        "safe to try again later, or run fewer requests at once"
    ),
    21421: "the number is not valid for Twilio: check its country code and its length",
    21422: "the number is not available: search AvailablePhoneNumbers and pick another",
    21451: "AreaCode must be a three-digit US or Canada area code",
    21452: "no numbers are available in that area code: try a nearby one",
    21631: "the number needs an address: pass address_sid",
    21649: "the number needs a regulatory bundle: pass bundle_sid",
}


class TwilioNumbersError(Exception):
    """The root of every error raised by ``twilio_numbers_async``."""

    def __reduce__(self) -> tuple[Any, ...]:
        # Pickling (multiprocessing, a task queue) must survive keyword-only constructors.
        return (_rebuild, (type(self), dict(self.__dict__), self.args))


class RequestValidationError(TwilioNumbersError, ValueError):
    """A request's field breaks Twilio's contract; raised at construction, before any I/O.

    ``field`` is the snake_case name of the offending field, ``reason`` says what is wrong.
    """

    def __init__(self, field: str, reason: str) -> None:
        self.field = field
        self.reason = reason
        super().__init__(f"{field}: {reason}")


class TwilioApiError(TwilioNumbersError):
    """Twilio answered with an error status.

    ``code`` is Twilio's error code (``21422``...), ``None`` when the body was not Twilio's
    JSON error (an HTML page from a proxy, say). ``request_id`` is the ``Twilio-Request-Id``
    header, the reference Twilio's support asks for.
    """

    def __init__(
        self,
        *,
        status: int,
        code: int | None = None,
        message: str = "",
        more_info: str | None = None,
        details: Mapping[str, Any] | None = None,
        request_id: str | None = None,
        method: str = "",
        url: str = "",
    ) -> None:
        self.status = status
        self.code = code
        self.message = message
        self.more_info = more_info
        self.details = details
        self.request_id = request_id
        self.method = method
        self.url = url
        super().__init__(self._describe())

    @property
    def hint(self) -> str | None:
        """What to do about this error, where the library knows."""
        return _HINTS.get(self.code) if self.code is not None else None

    def _describe(self) -> str:
        code = f" {self.code}" if self.code is not None else ""
        text = f"HTTP {self.status}{code}: {self.message or 'no message'}"
        if self.hint:
            text += f" ({self.hint})"
        context = [f"{self.method} {self.url}".strip()]
        if self.request_id:
            context.append(f"request id {self.request_id}")
        if self.more_info:
            context.append(self.more_info)
        context = [part for part in context if part]
        return f"{text} [{'; '.join(context)}]" if context else text


class AuthenticationError(TwilioApiError):
    """Twilio refused the credentials (HTTP 401, code 20003)."""


class RateLimitedError(TwilioApiError):
    """Twilio kept answering 429 (code 20429) until the retry budget was spent.

    ``retry_after`` is the wait Twilio asked for in its last answer, in seconds, if it sent one.
    ``from_limiter`` is true when it was the client's own limiter, not Twilio, that would not
    admit the request within the retry budget (a long Retry-After paused it): nothing was sent,
    and it is safe to send again later.
    """

    def __init__(
        self, *, retry_after: float | None = None, from_limiter: bool = False, **kwargs: Any
    ) -> None:
        self.retry_after = retry_after
        self.from_limiter = from_limiter
        super().__init__(**kwargs)


class TransportError(TwilioNumbersError):
    """The request failed below HTTP: DNS, connect, TLS, a dropped connection or a timeout.

    ``sent`` is ``False`` only when the request certainly never reached Twilio (it failed
    while connecting); ``True`` means Twilio may have received and processed it.
    """

    def __init__(self, message: str, *, method: str, url: str, sent: bool) -> None:
        self.method = method
        self.url = url
        self.sent = sent
        super().__init__(f"{message} [{method} {url}]")


class ResponseParseError(TwilioNumbersError):
    """Twilio answered 2xx with a body this library can't read.

    For a purchase this means the number **was bought**: ``sid`` (the ``PN...`` SID found in
    the raw text, if any) and ``body`` identify it, so record them rather than retry.
    """

    def __init__(self, reason: str, *, status: int, body: str, sid: str | None) -> None:
        self.reason = reason
        self.status = status
        self.body = body
        self.sid = sid
        where = f"; the resource is {sid}" if sid else ""
        super().__init__(f"HTTP {status} with a body that can't be read: {reason}{where}")


class PurchaseOutcomeUnknownError(TwilioNumbersError):
    """The purchase may or may not have happened, and the library could not find out.

    Raised instead of a blind retry, when the look-up that would settle it could not: it failed
    itself, or a 21422 came after an attempt of unknown outcome and no look-up found the number
    yet, or a 2xx named no number that a look-up could find, or an area code was POSTed as it is
    (``area_codes="direct"``), which can't be looked up. Check the account (the console, or
    ``find_incoming_phone_number``) before buying again. ``request`` is the request, ``cause``
    the failure that left the outcome unknown.
    """

    def __init__(self, request: object, cause: BaseException, *, account_sid: str) -> None:
        self.request = request
        self.cause = cause
        self.account_sid = account_sid
        super().__init__(
            f"the purchase may have happened on {account_sid} and could not be checked "
            f"({type(cause).__name__}: {cause}); check the account before buying again"
        )


class ClientClosedError(TwilioNumbersError, RuntimeError):
    """The client (or its transport) was closed: the request was not sent, safe to send again
    from a client that is open."""


class RedisLimiterError(TransportError):
    """A shared limiter (``twilio_numbers_async.redis_limiter``) could not use Redis, so the
    request was not sent to Twilio.

    ``sent`` is always ``False``: the client's retry policy treats it like a failure to
    connect (retry with backoff, then report it). ``url`` is where Redis is, without any
    password; ``method`` is the Redis operation that failed (``"PING"``, ``"EVALSHA"``...).
    The redis-py exception is the ``__cause__``.
    """

    def __init__(self, message: str, *, where: str, operation: str) -> None:
        super().__init__(message, method=operation, url=where, sent=False)


class JournalError(TwilioNumbersError, ValueError):
    """The journal file can't be used: in use by another run, not a journal, a record in it
    that can't be read, or written by a newer version of the library."""


def _rebuild(
    cls: type[TwilioNumbersError], state: dict[str, Any], args: tuple[Any, ...]
) -> TwilioNumbersError:
    error = cls.__new__(cls)
    error.__dict__.update(state)
    error.args = args
    return error
