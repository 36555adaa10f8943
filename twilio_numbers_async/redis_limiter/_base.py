"""What the bucket and the semaphore share: the Redis client and its checks, keys, tasks.

The ``_RedisBacked`` base class (client, key prefix, script calls,
background tasks, closing), and the helpers around them: key checks, jitter, a client from a
URL, where a client connects without its password, and draining tasks on close.
"""

from __future__ import annotations

import asyncio
import random
from typing import TYPE_CHECKING, Any, Final, TypeVar
from urllib.parse import urlsplit

try:
    from redis.asyncio import Redis
    from redis.asyncio.connection import SSLConnection, UnixDomainSocketConnection
    from redis.exceptions import RedisError
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "twilio_numbers_async.redis_limiter needs redis-py: "
        "pip install 'twilio-numbers-async[redis]'"
    ) from exc

from twilio_numbers_async.errors import RedisLimiterError

if TYPE_CHECKING:
    from collections.abc import Coroutine, Mapping, Sequence

    from redis.commands.core import AsyncScript

__all__ = [
    "DEFAULT_PREFIX",
    "_TICKET_GRACE",
    "_Call",
    "_RedisBacked",
    "_client_from_url",
    "_describe_error",
    "_drain",
    "_jitter",
]

_T = TypeVar("_T")
#: A script running in a task of its own (see ``_RedisBacked._start``).
_Call = asyncio.Task[Any]

#: The first part of every key, before the bucket's name.
DEFAULT_PREFIX: Final = "twilio-numbers"

#: How long past the moment a waiter was told to come back its place in the queue is kept. It
#: covers a busy event loop and a slow round trip (a waiter later than that queues again, at the
#: back); a waiter that dies gives up its place after it, so it also bounds how long a dead
#: waiter can hold up those behind it.
_TICKET_GRACE: Final = 0.5
#: The most a waiter adds to its sleep at random, so that waiters told the same time spread out.
_MAX_JITTER: Final = 0.002
#: How long aclose() waits for pauses and releases still being sent to Redis.
_CLOSE_TIMEOUT: Final = 5.0
#: Applied by from_url() unless given: never wait forever on a Redis that does not answer.
_SOCKET_TIMEOUT: Final = 5.0


class _RedisBacked:
    """What both shared primitives share: the client, the key prefix, background tasks."""

    _redis: Redis
    _owns_client: bool
    _where: str
    _name: str
    _prefix: str
    _base: str
    _scripts: tuple[tuple[str, AsyncScript], ...]
    #: Every task this object started (script calls, publications, clean-ups) until it ends.
    _background: set[asyncio.Task[Any]]
    _closed: bool

    def __init__(self, redis: Redis, *, name: str, prefix: str) -> None:
        if not isinstance(redis, Redis):
            raise TypeError(
                f"expected a redis.asyncio.Redis client, got {type(redis).__name__}; "
                "or use from_url()"
            )
        self._redis = redis
        self._owns_client = False
        self._where = _describe(redis)
        self._name = _check_key_part("name", name)
        self._prefix = _check_key_part("prefix", prefix)
        # The name in braces is a Redis Cluster hash tag: all of a bucket's keys on one node.
        self._base = f"{self._prefix}:{{{self._name}}}"
        self._scripts = ()
        self._background = set()
        self._closed = False

    @property
    def name(self) -> str:
        """What the keys are named after: usually the account SID."""
        return self._name

    @property
    def prefix(self) -> str:
        """The first part of every key."""
        return self._prefix

    @property
    def redis(self) -> Redis:
        """The Redis client in use."""
        return self._redis

    async def check(self) -> None:
        """PING Redis and load the scripts: fail now, clearly, rather than at the first request.

        :raises RedisLimiterError: Redis can't be reached, refuses the credentials, or does
            not run Lua scripts.
        """
        operation = "PING"
        try:
            await self._redis.ping()
            operation = "SCRIPT LOAD"
            for source, _ in self._scripts:
                await self._redis.script_load(source)
        except RedisError as exc:
            raise RedisLimiterError(
                f"the shared limiter can't use Redis at {self._where} "
                f"({_describe_error(exc)}); check the URL, the password and that the server "
                "is up",
                where=self._where,
                operation=operation,
            ) from exc

    async def aclose(self) -> None:
        """Let pending background work finish (briefly), then close the client if it is ours.

        The Redis client is closed only when this object made it (:meth:`from_url`). Idempotent.
        """
        if self._closed:
            return
        self._closed = True
        await self._stop()
        await _drain(self._background)
        if self._owns_client:
            await self._redis.aclose()

    async def _stop(self) -> None:
        """Stop this object's own background loops; overridden where there are some."""

    async def _eval(self, script: AsyncScript, keys: Sequence[str], args: Sequence[Any]) -> Any:
        """Run ``script``; a Redis failure becomes :class:`RedisLimiterError`."""
        try:
            return await script(keys=keys, args=args)
        except RedisError as exc:
            raise RedisLimiterError(
                f"the shared limiter could not use Redis ({_describe_error(exc)}); nothing was "
                "sent to Twilio",
                where=self._where,
                operation="EVALSHA",
            ) from exc

    def _start(self, script: AsyncScript, keys: Sequence[str], args: Sequence[Any]) -> _Call:
        """Run ``script`` in a task of its own; the caller awaits it through ``asyncio.shield``.

        Two reasons. Cancelling the caller must always work, and awaiting redis-py directly
        does not guarantee it: on Python 3.11 its ``asyncio.wait_for`` around a socket write
        can swallow a cancellation that lands as the write completes (CPython gh-86296, fixed in
        3.12), and the cancelled acquire would carry on, even to a token. And a command is
        never cut in half: the script's outcome is known even after the caller is gone, so
        cleaning up after it (giving back a slot it granted) happens after it, not before.
        """
        return self._spawn(self._eval(script, keys, args))

    def _spawn(self, coro: Coroutine[Any, Any, _T]) -> asyncio.Task[_T]:
        """Run ``coro`` in the background, holding a reference until it is done."""
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._settle)
        return task

    def _settle(self, task: asyncio.Task[Any]) -> None:
        self._background.discard(task)
        # Marks a failure as seen: whoever awaited the task has it; one whose caller was
        # cancelled is cleaned up after (or expires), so there is nothing more to report.
        if not task.cancelled():
            task.exception()

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError(
                f"{self!r} is closed; create a new one (aclose() ends its use of Redis)"
            )

    def _register(self, *sources: str) -> tuple[AsyncScript, ...]:
        scripts = tuple(self._redis.register_script(source) for source in sources)
        self._scripts += tuple(zip(sources, scripts, strict=True))
        return scripts


# What a key part may hold: nothing that breaks a key's shape (spaces, braces of hash tags).
_KEY_CHARS: Final = frozenset(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.:@/"
)


def _check_key_part(what: str, value: object) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{what} must be a str, got {type(value).__name__}")
    if not value or len(value) > 200 or not set(value) <= _KEY_CHARS:
        raise ValueError(
            f"{what} must be 1 to 200 letters, digits or '-_.:@/' (the account SID is a good "
            f"name), got {value!r}"
        )
    return value


def _jitter(wait: float) -> float:
    # Not a secret: only spreads waiters told the same time.
    return random.uniform(0.0, min(_MAX_JITTER, 0.05 * wait))  # noqa: S311


def _client_from_url(url: str, options: Mapping[str, Any] | None) -> Redis:
    if not isinstance(url, str):
        raise TypeError(f"url must be a str, got {type(url).__name__}")
    settings: dict[str, Any] = {
        "socket_timeout": _SOCKET_TIMEOUT,
        "socket_connect_timeout": _SOCKET_TIMEOUT,
        **(options or {}),
    }
    if _password_cut_short(url):
        # Read as written, "redis://:pa/ss@host" names the host "pa": a piece of the password
        # would be looked up in DNS and shown as where Redis is.
        raise ValueError(
            "the Redis URL has an '@' after its host: percent-encode any '/', '?', '#' or '@' "
            "in the password (urllib.parse.quote(password, safe=''))"
        )
    client: Redis | None
    try:
        client = Redis.from_url(url, **settings)
    except ValueError:
        # redis-py's message can quote the URL, password and all; raised below, outside this
        # block, so that it is not kept as our error's __context__ either.
        client = None
    if client is None:
        raise ValueError(
            "not a Redis URL: expected redis://[[user]:password@]host[:port][/db], "
            "rediss://... or unix:///path/to/socket"
        )
    return client


def _password_cut_short(url: str) -> bool:
    """Whether an ``@`` follows an authority that is not ``host[:port]``: a ``/``, ``?`` or
    ``#`` left unencoded in the password ends the authority early."""
    if "@" not in url:
        return False
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - urlsplit checks the port only when asked for it
    except ValueError:
        return True
    return "@" not in parts.netloc and bool(parts.netloc) and not parts.hostname


def _describe(redis: Redis) -> str:
    """Where ``redis`` connects, as a URL without credentials."""
    pool = getattr(redis, "connection_pool", None)
    kwargs: Mapping[str, Any] = getattr(pool, "connection_kwargs", {})
    db = kwargs.get("db", 0)
    connection_class = getattr(pool, "connection_class", None)
    if kwargs.get("path") or (
        isinstance(connection_class, type)
        and issubclass(connection_class, UnixDomainSocketConnection)
    ):
        return f"unix://{kwargs.get('path', '')}?db={db}"
    ssl = isinstance(connection_class, type) and issubclass(connection_class, SSLConnection)
    host = str(kwargs.get("host", "localhost"))
    if ":" in host:
        host = f"[{host}]"
    return f"{'rediss' if ssl else 'redis'}://{host}:{kwargs.get('port', 6379)}/{db}"


def _describe_error(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


async def _drain(tasks: set[asyncio.Task[Any]]) -> None:
    """Wait a little for ``tasks`` to finish, then cancel what is left."""
    pending = set(tasks)
    if not pending:
        return
    _, late = await asyncio.wait(pending, timeout=_CLOSE_TIMEOUT)
    for task in late:
        task.cancel()
    if late:
        await asyncio.wait(late)
