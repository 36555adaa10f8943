"""A client's settings: the account and its credentials, the host, the timeout, the environment.

:func:`resolve` checks what a caller passed (or what ``TWILIO_*`` variables say) once, at
construction, and returns :class:`Settings`: everything after that trusts them. The credentials
leave this module only inside the ``Authorization`` header value, which no repr shows.
"""

from __future__ import annotations

import base64
import os
import platform
from collections.abc import Collection, Mapping
from datetime import timedelta
from typing import Final
from urllib.parse import SplitResult, urlsplit

import aiohttp
import attrs

from ._checks import check_sid, check_text, is_loopback_host, redact_url
from ._version import VERSION
from .errors import RequestValidationError

__all__ = ["API_VERSION", "ENVIRONMENT", "Settings", "from_environment", "resolve"]

API_VERSION: Final = "2010-04-01"
_DEFAULT_HOST: Final = "https://api.twilio.com"

#: The variables :func:`from_environment` reads, and the argument each one stands for.
ENVIRONMENT: Final = {
    "TWILIO_ACCOUNT_SID": "account_sid",
    "TWILIO_AUTH_TOKEN": "auth_token",
    "TWILIO_API_KEY": "api_key",
    "TWILIO_API_SECRET": "api_secret",
    "TWILIO_BASE_URL": "base_url",
    "TWILIO_EDGE": "edge",
    "TWILIO_REGION": "region",
}


@attrs.frozen
class Settings:
    """What a client was configured with, checked."""

    account_sid: str
    #: The scheme and host requests go to (and a path prefix, for a proxy), no trailing slash.
    base_url: str
    #: The ``Authorization`` header's value: the credentials, so never in a repr.
    authorization: str = attrs.field(repr=False)
    #: How the requests are signed, for a repr: "auth token" or "API key SK...".
    auth_kind: str
    #: Seconds one attempt may take.
    timeout: float

    def url(self, account_sid: str, endpoint: str) -> str:
        """The URL of ``endpoint`` (a path under the account, such as
        ``IncomingPhoneNumbers.json``) on ``account_sid``."""
        return f"{self.base_url}/{API_VERSION}/Accounts/{account_sid}/{endpoint}"

    def headers(self) -> dict[str, dict[str, str]]:
        """The headers of each HTTP method this library sends, credentials included."""
        common = {
            "Authorization": self.authorization,
            "Accept": "application/json",
            "User-Agent": user_agent(),
        }
        return {
            "GET": common,
            "DELETE": common,
            "POST": {**common, "Content-Type": "application/x-www-form-urlencoded"},
        }


def resolve(
    *,
    account_sid: str | None,
    auth_token: str | None,
    api_key: str | None,
    api_secret: str | None,
    base_url: str | None,
    edge: str | None,
    region: str | None,
    timeout: float | timedelta,
) -> Settings:
    """Check a client's arguments and turn them into :class:`Settings`.

    :raises RequestValidationError: an argument is missing or malformed; the error names it.
    """
    if account_sid is None:
        raise RequestValidationError(
            "account_sid",
            "is missing: pass it (it starts with AC), or export TWILIO_ACCOUNT_SID with "
            "TWILIO_AUTH_TOKEN (or TWILIO_API_KEY and TWILIO_API_SECRET) and call "
            "TwilioNumbersClient() with no credentials",
        )
    account_sid = check_sid("account_sid", account_sid, "AC")
    username, password = _credentials(auth_token, api_key, api_secret, account_sid)
    token = base64.b64encode(f"{username}:{password}".encode()).decode("ascii")
    return Settings(
        account_sid=account_sid,
        base_url=_base_url(base_url, edge, region),
        authorization=f"Basic {token}",
        auth_kind="auth token" if auth_token is not None else f"API key {username}",
        timeout=_timeout(timeout),
    )


def from_environment(
    environ: Mapping[str, str] | None = None, *, given: Collection[str] = ()
) -> dict[str, str | None]:
    """The client arguments that ``TWILIO_*`` variables set (:data:`ENVIRONMENT`), but for
    those the caller ``given`` itself.

    An API key in the environment means key auth: an auth token beside it is left unused. The
    SIDs read are checked here, so that an error names the variable to fix.
    """
    env = os.environ if environ is None else environ
    values = {
        argument: env.get(name) or None
        for name, argument in ENVIRONMENT.items()
        if argument not in given
    }
    if values.get("api_key") is not None:
        values["auth_token"] = None
    for name, argument, prefix in (
        ("TWILIO_ACCOUNT_SID", "account_sid", "AC"),
        ("TWILIO_API_KEY", "api_key", "SK"),
    ):
        if (value := values.get(argument)) is not None:
            check_sid(name, value, prefix)
    return values


def user_agent() -> str:
    return (
        f"twilio-numbers-async/{VERSION} Python/{platform.python_version()} "
        f"aiohttp/{aiohttp.__version__}"
    )


def _credentials(
    auth_token: str | None, api_key: str | None, api_secret: str | None, account_sid: str
) -> tuple[str, str]:
    if api_key is not None or api_secret is not None:
        if auth_token is not None:
            raise RequestValidationError(
                "auth_token",
                "pass either auth_token or api_key with api_secret, not both: the two are "
                "different ways to sign the same requests",
            )
        if api_key is None or api_secret is None:
            missing = "api_key" if api_key is None else "api_secret"
            raise RequestValidationError(missing, "api_key and api_secret go together: pass both")
        check_sid("api_key", api_key, "SK")
        check_text("api_secret", api_secret)
        return api_key, api_secret
    if auth_token is None:
        raise RequestValidationError(
            "auth_token",
            "no credentials: pass auth_token, or api_key and api_secret "
            "(TwilioNumbersClient() with none reads them from TWILIO_* variables)",
        )
    check_text("auth_token", auth_token)
    if not auth_token:
        raise RequestValidationError("auth_token", "is empty")
    return account_sid, auth_token


def _timeout(value: object) -> float:
    seconds = value.total_seconds() if isinstance(value, timedelta) else value
    if isinstance(seconds, bool) or not isinstance(seconds, int | float) or not seconds > 0:
        raise RequestValidationError(
            "timeout", f"must be a positive number of seconds or a timedelta, not {value!r}"
        )
    if seconds == float("inf"):
        raise RequestValidationError("timeout", "must be finite: an attempt must end")
    return float(seconds)


def _base_url(base_url: str | None, edge: str | None, region: str | None) -> str:
    if base_url is None:
        if edge is None and region is None:
            return _DEFAULT_HOST
        labels = [_host_label("edge", edge), _host_label("region", region or "us1")]
        return f"https://api.{'.'.join(label for label in labels if label)}.twilio.com"
    check_text("base_url", base_url)
    parts = urlsplit(base_url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        shown = redact_url(base_url)
        raise RequestValidationError("base_url", f"must be an absolute http(s) URL, not {shown!r}")
    # An "@" anywhere may be user information, and a password that breaks the URL (an
    # unencoded "/" in it) moves the rest into the path: refused without being shown.
    if "@" in base_url or parts.query or parts.fragment:
        raise RequestValidationError(
            "base_url", "takes a scheme, a host and a path: no credentials, query or fragment"
        )
    if not _valid_port(parts):
        raise RequestValidationError("base_url", "has an invalid port")
    if parts.scheme == "http" and not is_loopback_host(parts.hostname):
        raise RequestValidationError(
            "base_url",
            f"{redact_url(base_url)!r} is plain http to a host that is not loopback: "
            "credentials would cross the network unencrypted; use https (http is for a local "
            "sandbox)",
        )
    return base_url.rstrip("/")


def _valid_port(parts: SplitResult) -> bool:
    # Not raised from the except clause: urlsplit's error quotes the port, which may be a
    # password that broke the URL, and would stay reachable as the __context__.
    try:
        parts.port  # noqa: B018 - urlsplit checks the port only when asked for it
    except ValueError:
        return False
    return True


def _host_label(name: str, value: str | None) -> str:
    if value is None:
        return ""
    text = check_text(name, value)
    if not text or not all(c.isascii() and (c.isalnum() or c == "-") for c in text):
        raise RequestValidationError(
            name, f"must be a host label such as 'sydney' or 'au1', not {value!r}"
        )
    return text.lower()
