"""Raw HTTP against a sandbox, as any client would send it: the helpers its tests share."""

from __future__ import annotations

import json
import re
from typing import Any, Final

import aiohttp
import attrs

from twilio_numbers_async.sandbox import Sandbox

__all__ = [
    "PN_SID",
    "REQUEST_ID",
    "Answer",
    "Api",
    "assert_error",
]

REQUEST_ID: Final = re.compile(r"RQ[0-9a-f]{32}")
PN_SID: Final = re.compile(r"PN[0-9a-f]{32}")


@attrs.frozen
class Answer:
    status: int
    headers: dict[str, str]
    body: Any
    text: str


class Api:
    """Raw HTTP against a sandbox: what any client would send, to the sandbox or to ``url``
    (a proxy in front of it)."""

    def __init__(
        self, sandbox: Sandbox, session: aiohttp.ClientSession, *, url: str | None = None
    ) -> None:
        self.sandbox = sandbox
        self.session = session
        self.root = url or sandbox.url
        self.auth = aiohttp.encode_basic_auth(sandbox.account_sid, sandbox.auth_token)

    def base(self, account: str | None = None) -> str:
        return f"{self.root}/2010-04-01/Accounts/{account or self.sandbox.account_sid}"

    def url(self, account: str | None = None, *, mobile: bool = False) -> str:
        endpoint = "IncomingPhoneNumbers/Mobile.json" if mobile else "IncomingPhoneNumbers.json"
        return f"{self.base(account)}/{endpoint}"

    async def request(
        self, method: str, url: str, *, auth: str | None = "default", **kwargs: Any
    ) -> Answer:
        headers = dict(kwargs.pop("headers", {}))
        if auth is not None:
            headers["Authorization"] = self.auth if auth == "default" else auth
        async with self.session.request(method, url, headers=headers, **kwargs) as response:
            text = await response.text()
            is_json = response.content_type == "application/json"
            body = json.loads(text) if is_json else None
            return Answer(response.status, dict(response.headers), body, text)

    async def buy(
        self, form: dict[str, str], *, mobile: bool = False, account: str | None = None, **kw: Any
    ) -> Answer:
        return await self.request("POST", self.url(account, mobile=mobile), data=form, **kw)

    async def list(self, params: dict[str, str] | None = None, **kw: Any) -> Answer:
        return await self.request("GET", self.url(kw.pop("account", None)), params=params, **kw)

    async def search(
        self,
        params: dict[str, str] | None = None,
        *,
        country: str = "US",
        kind: str = "Local",
        account: str | None = None,
        **kw: Any,
    ) -> Answer:
        url = f"{self.base(account)}/AvailablePhoneNumbers/{country}/{kind}.json"
        return await self.request("GET", url, params=params, **kw)

    async def fetch(self, sid: str, *, account: str | None = None, **kw: Any) -> Answer:
        return await self.request("GET", self.number_url(sid, account), **kw)

    async def release(self, sid: str, *, account: str | None = None, **kw: Any) -> Answer:
        return await self.request("DELETE", self.number_url(sid, account), **kw)

    def number_url(self, sid: str, account: str | None = None) -> str:
        return f"{self.base(account)}/IncomingPhoneNumbers/{sid}.json"


def assert_error(answer: Answer, status: int, code: int) -> None:
    """``answer`` is Twilio's JSON error body for ``status`` and ``code``."""
    assert answer.status == status, answer.text
    assert answer.headers["Content-Type"].startswith("application/json")
    assert answer.body == {
        "code": code,
        "message": answer.body["message"],
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status,
    }
    assert answer.body["message"]
