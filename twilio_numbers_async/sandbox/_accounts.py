"""Who may call the sandbox, and on which accounts: Twilio's HTTP Basic authentication.

Twilio accepts the account SID with its auth token, or an API key (``SK...``) with its secret;
either may act on the account and on its subaccounts, whose SIDs go in the path. This module
holds those credentials and answers two questions per request: are these credentials good,
and may they act on the account the path names?
"""

from __future__ import annotations

import base64
import binascii
import hmac

from twilio_numbers_async._checks import check_sid, check_text

from ._ids import IdSource

__all__ = ["Accounts"]

# Checked headers are remembered so that a bulk run decodes its one header once; only
# accepted ones are kept, so a caller can't grow the set with garbage.
_REMEMBERED_MAX = 64


class Accounts:
    """The main account, its subaccounts and API keys, and the check of a request's credentials.

    The auth token and API secrets never appear in a repr.
    """

    def __init__(self, *, account_sid: str, auth_token: str, ids: IdSource) -> None:
        self.main = check_sid("account_sid", account_sid, "AC")
        check_text("auth_token", auth_token)
        if not auth_token:
            raise ValueError("auth_token must not be empty")
        self._ids = ids
        self._subaccounts: list[str] = []
        self._actors = {self.main}
        self._secrets = {self.main: auth_token}
        self._accepted: set[str] = set()

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(main={self.main!r}, subaccounts={len(self._subaccounts)}, "
            f"api_keys={len(self._secrets) - 1})"
        )

    @property
    def subaccounts(self) -> list[str]:
        """The subaccounts' SIDs, in the order they were added."""
        return list(self._subaccounts)

    def add_subaccount(self) -> str:
        """A new subaccount of the main account; returns its ``AC...`` SID."""
        sid = self._ids.sid("AC")
        self._subaccounts.append(sid)
        self._actors.add(sid)
        return sid

    def add_api_key(self) -> tuple[str, str]:
        """A new API key of the main account; returns its ``SK...`` SID and its secret."""
        sid, secret = self._ids.sid("SK"), self._ids.hex32()
        self._secrets[sid] = secret
        return sid, secret

    def rotate_auth_token(self) -> str:
        """Replace the main account's auth token, as Twilio's console does: the old one stops
        working at once. Returns the new one."""
        token = self._ids.hex32()
        self._secrets[self.main] = token
        self._accepted.clear()  # headers holding the old token must be checked again, and fail
        return token

    def secret(self, sid: str) -> str:
        """The auth token of the main account, or the secret of an API key."""
        return self._secrets[sid]

    def may_act_on(self, account_sid: str) -> bool:
        """Whether the accepted credentials may act on ``account_sid`` (from the path)."""
        return account_sid in self._actors

    def authenticate(self, authorization: str | None) -> bool:
        """Whether an ``Authorization`` header holds credentials the sandbox accepts."""
        if authorization is None:
            return False
        if authorization in self._accepted:
            return True
        ok = self._check(authorization)
        if ok and len(self._accepted) < _REMEMBERED_MAX:
            self._accepted.add(authorization)
        return ok

    def _check(self, authorization: str) -> bool:
        scheme, _, encoded = authorization.strip().partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return False
        username, colon, password = decoded.partition(":")
        expected = self._secrets.get(username)
        if not colon or expected is None:
            return False
        return hmac.compare_digest(password.encode(), expected.encode())
