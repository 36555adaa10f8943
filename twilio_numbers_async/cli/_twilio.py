"""The client that the commands which talk to Twilio use, and the go-ahead before anything is
sent.

Credentials come from the ``TWILIO_*`` environment, the host from ``--base-url``, else
``TWILIO_BASE_URL``, else Twilio (``TWILIO_EDGE``/``TWILIO_REGION`` pick its host). Before any
request, :func:`connect` says on stderr where requests go; before a purchase or a release
anywhere but this machine (there it may be real) it asks first, or wants ``--yes``.

It runs before the event loop starts (see ``_main``), so that Ctrl-C stops a prompt at once.
"""

from __future__ import annotations

import enum
import os
import sys
from argparse import Namespace
from collections.abc import Callable
from typing import Any, Final
from urllib.parse import urlsplit

import attrs

from twilio_numbers_async._checks import is_loopback_host
from twilio_numbers_async.client import TwilioNumbersClient
from twilio_numbers_async.errors import AuthenticationError, TwilioApiError, TwilioNumbersError

from ._errors import CREDENTIAL_VARIABLES, PROG, CheckFailed, UsageError, say
from ._tally import one_line

__all__ = ["BASE_URL_VARIABLE", "Destination", "GoAhead", "check_credentials", "connect"]

#: The environment variable read as ``--base-url`` is (the option wins).
BASE_URL_VARIABLE: Final = "TWILIO_BASE_URL"
_YES: Final = frozenset({"y", "yes"})
# Any valid number will do for a look-up that only checks the credentials: this is the magic
# number of Twilio's test credentials, which a live account does not hold.
_PROBE_NUMBER: Final = "+15005550006"
#: What Twilio answers for an account the credentials can't see (20404): bad input, as a 401 is.
_NOT_FOUND: Final = 404


class _Host(enum.Enum):
    LOOPBACK = "loopback"
    TWILIO = "twilio"
    ELSEWHERE = "elsewhere"


@attrs.frozen
class Destination:
    """Where a client's requests go, as the user should hear it."""

    url: str
    host: _Host

    @classmethod
    def of(cls, base_url: str) -> Destination:
        """The destination of a client whose base URL is ``base_url``."""
        hostname = (urlsplit(base_url).hostname or "").lower()
        if is_loopback_host(hostname):
            return cls(base_url, _Host.LOOPBACK)
        if hostname == "twilio.com" or hostname.endswith(".twilio.com"):
            return cls(base_url, _Host.TWILIO)
        return cls(base_url, _Host.ELSEWHERE)

    @property
    def may_be_real(self) -> bool:
        """Whether a purchase there may spend money: anywhere but this machine."""
        return self.host is not _Host.LOOPBACK

    def __str__(self) -> str:
        return self.said("purchases")

    def said(self, stakes: str | None) -> str:
        """Where requests go, and that ``stakes`` (``"purchases"``...) there may be real;
        ``None`` for requests that change nothing."""
        if self.host is _Host.LOOPBACK:
            return f"{self.url}, on this machine (a sandbox, or a proxy you run)"
        if self.host is _Host.TWILIO:
            return f"Twilio ({self.url})" + (f": real {stakes}" if stakes else "")
        return f"{self.url}, on another machine" + (
            f": {stakes} there may be real" if stakes else ""
        )


@attrs.frozen
class GoAhead:
    """What a command that changes the account asks the user to confirm."""

    #: What it will do, such as ``"buy +14155550100"``; or a function that says it, called only
    #: when the question is asked.
    action: str | Callable[[], str]
    #: What it does for real, as the destination line says it: ``"purchases"``...
    stakes: str = "purchases"
    #: Why it needs a go-ahead, for the message when there is no terminal to ask on.
    risk: str = "may spend money"


def connect(args: Namespace, *, go_ahead: GoAhead | None, **settings: Any) -> TwilioNumbersClient:
    """The client for a command, from the environment and ``--base-url``; ``settings`` go to
    the client.

    Says on stderr where its requests go. For a command that changes the account
    (``go_ahead``), unless that is this machine, asks the user to confirm its action or needs
    ``--yes``, and raises :class:`UsageError` without it: nothing has been sent then.
    """
    env = os.environ
    key_pair = env.get("TWILIO_API_KEY") and env.get("TWILIO_API_SECRET")
    if not env.get("TWILIO_ACCOUNT_SID") or not (env.get("TWILIO_AUTH_TOKEN") or key_pair):
        raise UsageError(f"no Twilio credentials: set {CREDENTIAL_VARIABLES} in the environment")
    base_url = args.base_url or env.get(BASE_URL_VARIABLE) or None
    try:
        client = TwilioNumbersClient.from_env(base_url=base_url, **settings)
    except ValueError as exc:  # a malformed SID or base URL: messages that name no secret
        raise UsageError(f"can't use these settings: {exc}") from exc
    destination = Destination.of(client.base_url)
    say(f"requests go to {destination.said(go_ahead.stakes if go_ahead else None)}")
    if go_ahead is not None and destination.may_be_real and not args.yes:
        account = args.account_sid or client.account_sid
        action = go_ahead.action() if callable(go_ahead.action) else go_ahead.action
        _confirm(f"{action} on account {account}, at {destination.url}", go_ahead.risk)
    return client


async def check_credentials(client: TwilioNumbersClient, account_sid: str | None) -> None:
    """Check the credentials (and the account) with one read before a run of many requests,
    which a wrong token or account would otherwise fail one by one: refused (401, or 404 for
    the account), it is bad input, and nothing was changed. Any other failure (a 429, a 5xx,
    no answer) says nothing of the credentials: :class:`CheckFailed`, the failure exit code."""
    try:
        await client.find_incoming_phone_number(_PROBE_NUMBER, account_sid=account_sid)
    except AuthenticationError:
        raise  # mapped to bad input, with the credentials' variables named
    except TwilioApiError as exc:
        if exc.status != _NOT_FOUND:
            raise CheckFailed(f"could not check the credentials: {one_line(exc)}") from exc
        account = account_sid or client.account_sid
        raise UsageError(
            f"Twilio refused to list the numbers of {account}: {one_line(exc)}"
        ) from exc
    except TwilioNumbersError as exc:  # a 429 or a 5xx that outlasted the retries, no answer
        raise CheckFailed(f"could not check the credentials: {one_line(exc)}") from exc


def _confirm(question: str, risk: str) -> None:
    if sys.stdin is None or not sys.stdin.isatty():
        raise UsageError(
            f"not confirmed: {question} {risk}, and stdin is not a terminal to ask on; add "
            "--yes to go ahead. Nothing was sent"
        )
    if sys.stderr is None or not sys.stderr.isatty():
        # The question goes to stderr: redirected (2>file), it would wait for an answer to a
        # question nobody sees.
        raise UsageError(
            f"not confirmed: {question} {risk}, and stderr, where the question goes, is not a "
            "terminal; add --yes to go ahead. Nothing was sent"
        )
    try:
        # On stderr, as the answer comes from the terminal: stdout may be a file of --json.
        sys.stderr.write(f"{PROG}: {question}? [y/N] ")
        sys.stderr.flush()
        answer = sys.stdin.readline()
    except KeyboardInterrupt:  # Ctrl-C at the question is a "no"
        answer = ""
        sys.stderr.write("\n")
    if answer.strip().lower() not in _YES:
        raise UsageError("not confirmed: nothing was sent")
