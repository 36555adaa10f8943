"""A throw-away ``redis-server`` for tests, and the worker process of the multi-process tests.

:class:`RedisServer` starts the real server on a free loopback port, without persistence, in a
temporary directory, and stops it (no zombie left behind). Nothing here imports pytest, so the
worker (``python -m tests._redis worker ...``) starts quickly.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Final

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
