"""An in-memory Twilio for unit tests: a ``Transport`` that answers from a script.

A test scripts the answers per method and URL, in the order they are to be given, and reads
back every :class:`Request` the client sent::

    twilio.post(NUMBERS_URL, 201, resource())
    twilio.post(NUMBERS_URL, 400, twilio_error(21452))
    twilio.get(FIND_URL, 200, page(), repeat=True)
    twilio.post(NUMBERS_URL, Lost(sent=True))    # the connection dropped: Twilio may have it
    twilio.post(NUMBERS_URL, Hang())             # no answer, ever: for cancellation tests
    twilio.post(NUMBERS_URL, answer_later)       # a callable, for an answer made on the spot
    ...
    (request,) = twilio.sent("POST", NUMBERS_URL)
    assert form(request)["AreaCode"] == "415"

A URL matches with its query string, whose parameters may come in any order (Twilio reads them
by name). A request nobody scripted fails the test, and so does an answer scripted once and
never asked for (the scenario the test describes did not happen): the ``twilio`` fixture
checks at teardown, since the library may turn the error raised here into an outcome. It opens
no socket and never calls aiohttp, whose transport has tests of its own
(tests/test_aiohttp_transport.py).
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import json
from collections import defaultdict, deque
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeAlias
from urllib.parse import parse_qsl, urlencode

import attrs

from twilio_numbers_async._transport import Request, Response
from twilio_numbers_async.errors import TransportError

__all__ = ["Hang", "Lost", "MemoryTwilio", "form", "reply"]

#: A body as a test writes it: a JSON document, or the raw text of a page that is not JSON.
Body: TypeAlias = Mapping[str, Any] | list[Any] | str | bytes


def reply(status: int, body: Body = b"", *, headers: Mapping[str, str] | None = None) -> Response:
    """A response as Twilio sends it: ``body`` is JSON unless it is text or bytes already."""
    if isinstance(body, str | bytes):
        raw = body.encode() if isinstance(body, str) else body
        kind = "text/plain"
    else:
        raw, kind = json.dumps(body).encode(), "application/json"
    return Response(status, {"Content-Type": kind, **(headers or {})}, raw)


@attrs.frozen
class Lost:
    """No answer came: the transport raises ``TransportError`` with this ``sent``.

    ``sent=False`` is a failure to connect (the request never left); ``sent=True`` a dropped
    connection or a read timeout (Twilio may have processed it).
    """

    sent: bool
    reason: str = "no answer came"


class Hang:
    """An answer that never comes: the request stays in flight until its task is cancelled.

    ``started`` and ``cancelled`` count the requests it held; ``await hang.reached()`` waits
    for the first one.
    """

    def __init__(self) -> None:
        self.started = 0
        self.cancelled = 0
        self._reached = asyncio.Event()

    async def reached(self) -> None:
        await self._reached.wait()

    async def hold(self) -> Response:
        self.started += 1
        self._reached.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        raise AssertionError("unreachable")  # pragma: no cover


Answer: TypeAlias = Response | Lost | Hang
#: What a test scripts: an answer, or a callable that makes one (it may await first).
Script: TypeAlias = Answer | Callable[[Request], Answer | Awaitable[Answer]]
_Key: TypeAlias = tuple[str, str, tuple[tuple[str, str], ...]]


def _key(method: str, url: str) -> _Key:
    base, _, query = url.partition("?")
    # Decoded as Twilio decodes a query ("+" is a space): a test writes "%2B1500...", and a
    # client that sent "+1500..." would not match it.
    return method.upper(), base, tuple(sorted(parse_qsl(query, keep_blank_values=True)))


def _show(key: _Key) -> str:
    method, base, query = key
    return f"{method} {base}?{urlencode(query)}" if query else f"{method} {base}"


def form(request: Request) -> dict[str, str]:
    """The form a request carried, decoded (for a purchase, its fields by Twilio's names)."""
    return dict(parse_qsl((request.body or b"").decode(), keep_blank_values=True))


@attrs.define
class _Entry:
    script: Script
    repeat: bool


class MemoryTwilio:
    """A :class:`~twilio_numbers_async._transport.Transport` that answers from a script."""

    def __init__(self) -> None:
        #: Every request sent, in order, scripted or not.
        self.requests: list[Request] = []
        #: The requests nobody scripted an answer for: :meth:`check` fails on them.
        self.unscripted: list[Request] = []
        self.closed = False
        self._scripts: defaultdict[_Key, deque[_Entry]] = defaultdict(deque)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(sent={len(self.requests)}, closed={self.closed!r})"

    def on(
        self,
        method: str,
        url: str,
        answer: int | Script,
        body: Body = b"",
        *,
        headers: Mapping[str, str] | None = None,
        repeat: bool = False,
    ) -> None:
        """Script the answer to the next ``method url`` not yet answered.

        ``answer`` is a status (with ``body`` and ``headers``, as :func:`reply` takes them),
        or a :class:`Lost`, a :class:`Hang`, a ``Response``, or a callable given the
        ``Request`` that returns (or awaits) one of those. Answers to one URL are given in the
        order they were scripted; one with ``repeat=True`` answers every request from then on.
        """
        if isinstance(answer, int):
            script: Script = reply(answer, body, headers=headers)
        elif body or headers:
            raise TypeError("a body and headers go with a status, not with a scripted answer")
        else:
            script = answer
        self._scripts[_key(method, url)].append(_Entry(script, repeat))

    #: ``twilio.get(url, ...)`` is ``twilio.on("GET", url, ...)``; the same for POST and DELETE.
    get = functools.partialmethod(on, "GET")
    post = functools.partialmethod(on, "POST")
    delete = functools.partialmethod(on, "DELETE")

    def sent(self, method: str, url: str) -> list[Request]:
        """The requests sent to ``method url`` (query included, in any order), in order."""
        key = _key(method, url)
        return [r for r in self.requests if _key(r.method, r.url) == key]

    def clear(self) -> None:
        """Forget every script and every request recorded: the next run starts afresh."""
        self.check()
        self.requests.clear()
        self._scripts.clear()

    def check(self) -> None:
        """Fail if a request came that nobody scripted (the library may have swallowed the
        error :meth:`send` raised), or if an answer scripted once was never asked for."""
        if self.unscripted:
            seen = ", ".join(f"{r.method} {r.url}" for r in self.unscripted)
            raise AssertionError(f"requests nobody scripted an answer for: {seen}")
        unused = [_show(key) for key, queue in self._scripts.items() for e in queue if not e.repeat]
        if unused:
            raise AssertionError(f"answers scripted but never asked for: {', '.join(unused)}")

    async def send(self, request: Request) -> Response:
        self.requests.append(request)
        queue = self._scripts.get(_key(request.method, request.url))
        if not queue:
            self.unscripted.append(request)
            scripted = ", ".join(_show(key) for key, left in self._scripts.items() if left)
            raise AssertionError(
                f"nobody scripted an answer to {request.method} {request.url}; "
                f"answers are scripted for: {scripted or 'nothing'}"
            )
        entry = queue[0] if queue[0].repeat else queue.popleft()
        # One turn of the loop, as any answer from a network takes: requests sent together are
        # in flight together, and each is answered in the order it was sent.
        await asyncio.sleep(0)
        answer = entry.script
        if not isinstance(answer, Response | Lost | Hang):
            made = answer(request)
            answer = await made if inspect.isawaitable(made) else made
        if isinstance(answer, Hang):
            return await answer.hold()
        if isinstance(answer, Lost):
            raise TransportError(
                answer.reason, method=request.method, url=request.url, sent=answer.sent
            )
        return answer

    async def aclose(self) -> None:
        # Several clients may share one script in turn (a run, then its rerun): closing one
        # leaves the script to the next.
        self.closed = True
