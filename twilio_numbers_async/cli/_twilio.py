"""The client that ``buy`` and ``bulk`` talk to Twilio through: credentials from the
environment, and where the requests go."""

from __future__ import annotations

import os
from argparse import Namespace
from typing import Any

from twilio_numbers_async.client import TwilioNumbersClient

from ._errors import CREDENTIAL_VARIABLES, UsageError

__all__ = ["connect"]


def connect(args: Namespace, **settings: Any) -> TwilioNumbersClient:
    """A client from the ``TWILIO_*`` environment variables and ``--base-url``; ``settings``
    go to the client."""
    env = os.environ
    key_pair = env.get("TWILIO_API_KEY") and env.get("TWILIO_API_SECRET")
    if not env.get("TWILIO_ACCOUNT_SID") or not (env.get("TWILIO_AUTH_TOKEN") or key_pair):
        raise UsageError(f"no Twilio credentials: set {CREDENTIAL_VARIABLES} in the environment")
    try:
        return TwilioNumbersClient.from_env(base_url=args.base_url, **settings)
    except ValueError as exc:  # a malformed SID or base URL: messages that name no secret
        raise UsageError(f"can't use these settings: {exc}") from exc
