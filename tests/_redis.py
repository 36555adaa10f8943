"""A throw-away ``redis-server`` for tests, a record of what it ran, and the worker process of
the multi-process tests.

:class:`RedisServer` starts the real server on a free loopback port, without persistence, in a
temporary directory, and stops it (no zombie left behind). :class:`ServerLog` watches it with
``MONITOR`` and reads back what the limiter's scripts decided, each at the server's own time:
the bucket's guarantees are stated on that clock, so a test can check them exactly, however
late a busy machine delivers the answers. Nothing here imports pytest, so the worker
(``python -m tests._redis worker ...``) starts quickly.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from redis.asyncio import Redis

from twilio_numbers_async.redis_limiter import DEFAULT_PREFIX, _scripts

if TYPE_CHECKING:
    from redis.asyncio.client import MonitorCommandInfo

#: Set by .ci/run once it has installed redis-server: a missing server then fails the tests
#: instead of skipping them.
REQUIRE_ENV: Final = "TWILIO_NUMBERS_REQUIRE_REDIS"
ROOT: Final = Path(__file__).resolve().parent.parent
_START_TIMEOUT: Final = 10.0
_STOP_TIMEOUT: Final = 5.0


def redis_server_binary() -> str | None:
    """The path of ``redis-server``, if it is installed."""
    return shutil.which("redis-server")


def required_binary() -> str:
    """The path of ``redis-server``; without it, the calling test skips (fails under
    :data:`REQUIRE_ENV`)."""
    import pytest

    binary = redis_server_binary()
    if binary is None:
        reason = "redis-server is not installed (bash .ci/install-redis installs it)"
        if os.environ.get(REQUIRE_ENV) == "1":
            pytest.fail(f"{reason}, and {REQUIRE_ENV}=1 requires it")
        pytest.skip(reason)
    return binary


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _answers_ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            # A server with a password answers NOAUTH: up, all the same.
            return sock.recv(64).startswith((b"+PONG", b"-NOAUTH"))
    except OSError:
        return False


class RedisServer:
    """One ``redis-server`` process on ``127.0.0.1:port``; :meth:`stop` ends it."""

    def __init__(self, binary: str, *extra_args: str) -> None:
        self._binary = binary
        self._extra_args = extra_args
        self._dir = tempfile.TemporaryDirectory(prefix="tna-redis-")
        self._process: subprocess.Popen[bytes] | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> None:
        """Start on a free port and wait until it answers PING; retried if the port was taken."""
        last_error = "not started"
        for _ in range(3):
            self.port = _free_port()
            log = Path(self._dir.name, f"redis-{self.port}.log")
            self._process = subprocess.Popen(  # noqa: S603 - our own arguments
                [
                    self._binary,
                    "--port",
                    str(self.port),
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--dir",
                    self._dir.name,
                    "--logfile",
                    str(log),
                    *self._extra_args,
                ],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            deadline = time.monotonic() + _START_TIMEOUT
            while time.monotonic() < deadline and self._process.poll() is None:
                if _answers_ping(self.port):
                    return
                time.sleep(0.02)
            last_error = log.read_text(errors="replace")[-2000:] if log.exists() else "no log"
            self._reap()
        self.cleanup()
        raise RuntimeError(f"redis-server did not start: {last_error}")

    def stop(self) -> None:
        """Stop the server (it can be started again on a new port)."""
        self._reap()

    def cleanup(self) -> None:
        """Stop the server and remove its directory."""
        self._reap()
        self._dir.cleanup()

    def _reap(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=_STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


# --- what the server ran ---------------------------------------------------------------------

_SCRIPTS: Final = {
    hashlib.sha1(source.encode()).hexdigest(): name  # noqa: S324 - how Redis names a script
    for name, source in (
        ("take", _scripts._TAKE),
        ("pause", _scripts._PAUSE),
        ("acquire_slot", _scripts._ACQUIRE_SLOT),
        ("renew_slots", _scripts._RENEW_SLOTS),
        ("count_slots", _scripts._COUNT_SLOTS),
    )
}


@dataclasses.dataclass(frozen=True)
class Take:
    """One run of the bucket's script: an acquire asking for ``tokens``."""

    ticket: str
    tokens: int
    #: The server's clock when the script ran: for a grant, the moment the tokens were taken.
    at: float
    granted: bool
    #: When refused: the seconds the acquire was told to sleep before asking again.
    wait: float | None


@dataclasses.dataclass(frozen=True)
class Pause:
    """One pause published to the bucket."""

    seconds: float
    #: The server time the pause (or a longer one already in force) ends.
    until: float


@dataclasses.dataclass(frozen=True)
class SlotTake:
    """One run of the slot script: an acquire asking for a slot."""

    holder: str
    ticket: str
    at: float
    granted: bool


@dataclasses.dataclass
class _Call:
    script: str
    keys: list[str]
    args: list[str]
    #: What the script did, in order: each command as its words.
    commands: list[list[str]] = dataclasses.field(default_factory=list)

    def first(self, command: str, key: str) -> list[str]:
        return next(c for c in self.commands if c[0] == command and c[1] == key)


class ServerLog:
    """Every script the limiter runs on a Redis server, as the server ran them (``MONITOR``).

    ``async with ServerLog(url) as log:`` records from then on; each reading (:meth:`takes`...)
    first waits until everything sent to the server before it has been recorded.
    """

    def __init__(self, url: str) -> None:
        self._url = url
        self._entries: list[MonitorCommandInfo] = []
        self._arrived = asyncio.Event()
        self._stack = contextlib.AsyncExitStack()

    async def __aenter__(self) -> ServerLog:
        # No timeout (redis-py's default is 5 s): the server may be quiet longer than that, and
        # the timeouts run on the loop's clock, which a test may move.
        client = Redis.from_url(self._url, socket_timeout=None, socket_connect_timeout=None)
        self._redis = await self._stack.enter_async_context(client)
        self._monitor = await self._stack.enter_async_context(self._redis.monitor())
        self._reader = asyncio.create_task(self._read())
        self._call_first = await self._call_shown_first()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader
        await self._stack.aclose()

    async def _read(self) -> None:
        while True:
            self._entries.append(await self._monitor.next_command())
            self._arrived.set()

    async def sync(self) -> None:
        """Wait until the server has reported everything it ran before this call."""
        marker = f"sync-{uuid.uuid4().hex}"
        await self._redis.echo(marker)
        seen = 0
        while True:
            for entry in self._entries[seen:]:
                if entry["command"] == f"ECHO {marker}":
                    return
            seen = len(self._entries)
            if self._reader.done():
                self._reader.result()  # raises what stopped it
                raise RuntimeError("MONITOR ended")
            self._arrived.clear()
            await self._arrived.wait()

    async def _call_shown_first(self) -> bool:
        """Whether the server shows a script's call before the commands it runs (Redis 7.0
        does): that order is the server's, so ask it rather than assume it."""
        marker = f"order-{uuid.uuid4().hex}"
        await self._redis.eval("return redis.call('EXISTS', KEYS[1])", 1, marker)
        await self.sync()
        shown = [entry for entry in self._entries if marker in entry["command"]]
        return shown[0]["client_type"] != "lua"

    async def calls(self) -> list[_Call]:
        """Every script run so far, in the order the server ran them."""
        await self.sync()
        calls: list[_Call] = []
        current: _Call | None = None
        #: Commands of a script the server shows before its call, or of no script we know.
        loose: list[list[str]] = []
        for entry in self._entries:
            words = entry["command"].split(" ")
            if entry["client_type"] == "lua":
                command = [words[0].upper(), *words[1:]]
                (current.commands if current is not None else loose).append(command)
                continue
            current = None
            if words[0].upper() == "EVALSHA" and words[1] in _SCRIPTS:
                count = int(words[2])
                call = _Call(_SCRIPTS[words[1]], words[3 : 3 + count], words[3 + count :])
                calls.append(call)
                if self._call_first:
                    current = call
                else:
                    call.commands = loose
            loose = []
        return calls

    async def bucket_events(self, name: str, prefix: str = DEFAULT_PREFIX) -> list[Take | Pause]:
        """What the bucket ``name`` was asked and answered, in the server's order."""
        state = f"{prefix}:{{{name}}}:bucket"
        deadlines = f"{state}:deadlines"
        events: list[Take | Pause] = []
        for call in await self.calls():
            if not call.keys or call.keys[0] != state:
                continue
            if call.script == "pause":
                until = float(call.first("HSET", state)[5])
                events.append(Pause(seconds=float(call.args[2]), until=until))
            elif call.script == "take":
                tokens, ticket, grace = call.args[2:5]
                at = float(call.first("ZRANGEBYSCORE", deadlines)[3])
                granted = any(c[0] == "HSET" for c in call.commands)
                wait = None
                if not granted:
                    deadline = float(call.first("ZADD", deadlines)[2])
                    wait = deadline - at - float(grace)
                events.append(Take(ticket, int(tokens), at, granted, wait))
        return events

    async def takes(self, name: str, prefix: str = DEFAULT_PREFIX) -> list[Take]:
        """Only the acquires of :meth:`bucket_events`."""
        return [e for e in await self.bucket_events(name, prefix) if isinstance(e, Take)]

    async def grants(self, name: str, prefix: str = DEFAULT_PREFIX) -> list[float]:
        """The server times at which the bucket ``name`` granted tokens, one per grant."""
        return [take.at for take in await self.takes(name, prefix) if take.granted]

    async def slot_takes(self, name: str, prefix: str = DEFAULT_PREFIX) -> list[SlotTake]:
        """What the slots ``name`` were asked and answered, in the server's order."""
        holders = f"{prefix}:{{{name}}}:slots"
        takes: list[SlotTake] = []
        for call in await self.calls():
            if call.script != "acquire_slot" or call.keys[0] != holders:
                continue
            holder, ticket = call.args[2:4]
            at = float(call.first("ZREMRANGEBYSCORE", holders)[3])
            granted = any(c[0] == "ZADD" and c[1] == holders for c in call.commands)
            takes.append(SlotTake(holder, ticket, at, granted))
        return takes


# --- the worker process ---------------------------------------------------------------------


def worker_command(*args: str) -> list[str]:
    """The argv that runs a worker (see :func:`main`)."""
    return [sys.executable, "-W", "error", "-m", "tests._redis", *args]


async def _buy(options: argparse.Namespace) -> dict[str, Any]:
    """Buy ``count`` numbers through one shared Redis limiter and slot cap; report outcomes."""
    from twilio_numbers_async import NumberPurchase, RetryPolicy, TwilioNumbersClient
    from twilio_numbers_async.redis_limiter import RedisTokenBucket

    bucket = await RedisTokenBucket.from_url(
        options.redis, name=options.name, rate=options.rate, capacity=options.capacity
    )
    try:
        slots = bucket.semaphore(options.slots, lease=options.lease, poll_interval=0.01)
        requests = [
            NumberPurchase(area_code="500", friendly_name=f"{options.tag}-{i}")
            for i in range(options.count)
        ]
        async with TwilioNumbersClient(
            options.account,
            options.token,
            base_url=options.sandbox,
            rate_limit=bucket,
            max_concurrency=slots,
            retry=RetryPolicy(max_attempts=5, initial_delay=0.05),
            # POSTed as they are, so that every request counted here is a purchase.
            area_codes="direct",
        ) as client:
            print(json.dumps({"event": "ready"}), flush=True)  # noqa: T201
            # Start when told, so that all workers contend from their first request.
            await asyncio.to_thread(sys.stdin.readline)
            outcomes = [
                outcome.status.value
                async for outcome in client.purchase_many(requests, concurrency=options.concurrency)
            ]
    finally:
        await bucket.aclose()
    return {"event": "done", "outcomes": outcomes}


async def _hold(options: argparse.Namespace) -> None:
    """Buy ``count`` numbers at once against a slow sandbox, holding their slots until killed."""
    from twilio_numbers_async import NumberPurchase, RetryPolicy, TwilioNumbersClient
    from twilio_numbers_async.redis_limiter import RedisSemaphore

    slots = await RedisSemaphore.from_url(
        options.redis, name=options.name, limit=options.slots, lease=options.lease
    )
    async with TwilioNumbersClient(
        options.account,
        options.token,
        base_url=options.sandbox,
        rate_limit=None,
        max_concurrency=slots,
        retry=RetryPolicy.no_retries(),
        area_codes="direct",  # a purchase holds its slot from its first request: the POST
    ) as client:
        purchases = [
            asyncio.create_task(client.purchase(NumberPurchase(area_code="500")))
            for _ in range(options.count)
        ]
        # The semaphore offers nothing to wait on for "all slots taken": poll, it is brief.
        while slots.held < options.slots:  # noqa: ASYNC110
            await asyncio.sleep(0.01)
        print(json.dumps({"event": "holding", "slots": slots.held}), flush=True)  # noqa: T201
        await asyncio.gather(*purchases)  # until SIGKILL: the sandbox answers far too late


def main(argv: list[str] | None = None) -> None:
    """``python -m tests._redis buy|hold --redis URL --sandbox URL --account AC.. --token ..
    --name NAME [options]``: ``buy`` prints ``ready``, waits for a line on stdin, buys
    ``count`` numbers and prints their outcomes; ``hold`` starts ``count`` purchases against a
    slow sandbox, prints ``holding`` once it holds all its slots, and waits to be killed."""
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=("buy", "hold"))
    parser.add_argument("--redis", required=True)
    parser.add_argument("--sandbox", required=True)
    parser.add_argument("--account", required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--name", required=True, help="the shared limiter's name in Redis")
    parser.add_argument("--tag", default="w")
    parser.add_argument("--rate", type=float, default=10.0)
    parser.add_argument("--capacity", type=float, default=None)
    parser.add_argument("--count", type=int, default=10)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--slots", type=int, default=8)
    parser.add_argument("--lease", type=float, default=5.0)
    options = parser.parse_args(argv)
    if options.mode == "buy":
        print(json.dumps(asyncio.run(_buy(options))), flush=True)  # noqa: T201
    else:
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(_hold(options))


if __name__ == "__main__":
    # A worker killed with SIGTERM by a failing test should go quietly.
    signal.signal(signal.SIGTERM, lambda *_: os._exit(143))
    main()
