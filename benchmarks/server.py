"""The benchmarks' servers, each run in a process of its own (``python -m benchmarks.server``).

``canned`` (the default) answers CreateIncomingPhoneNumber with a canned 201: the spec's example
resource (~1.5 KB of JSON, RFC 2822 dates), with its own ``PN`` SID and phone number for each
request and the current second as its dates, behind a realistic set of Twilio's headers. It is a
bare :class:`asyncio.Protocol` that slices HTTP/1.1 requests out of the byte stream with a
couple of ``find`` calls, so that it costs a small fraction of what a client spends per request
and is never the bottleneck of a CPU comparison. It still checks what matters for a fair
comparison: the method, the path, the Basic credentials and that the form names a
``PhoneNumber``; anything else gets Twilio's 401 or 404, which every client turns into an error.
``GET /_stats`` reports how many purchases it answered and the CPU time it used, so the harness
can check that every request really reached it, and what the server cost.

``sandbox`` serves the library's :class:`~twilio_numbers_async.sandbox.Sandbox` (faults off):
Twilio's behaviour, inventory and validation, for the bulk benchmark.

Either prints ``READY <base url>`` on stdout once it listens, and runs until stdin closes (so a
harness that dies takes its server with it) or it is terminated.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import re
import subprocess
import sys
import time
from typing import Any, Final

ACCOUNT_SID: Final = "AC" + "0123456789abcdef" * 2
AUTH_TOKEN: Final = "fedcba9876543210" * 2
CREATE_PATH: Final = f"/2010-04-01/Accounts/{ACCOUNT_SID}/IncomingPhoneNumbers.json"

# The spec's example 201 body (CreateIncomingPhoneNumber, "create"), in its order. The SID,
# number and dates are stamped per request (see _Canned.body).
EXAMPLE: Final[dict[str, Any]] = {
    "account_sid": ACCOUNT_SID,
    "address_requirements": "none",
    "address_sid": "ADaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
    "api_version": "2010-04-01",
    "beta": False,
    "capabilities": {"voice": True, "sms": False, "mms": True, "fax": False},
    "date_created": "@DATE@",
    "date_updated": "@DATE@",
    "emergency_status": "Active",
    "emergency_address_sid": "ADaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
    "emergency_address_status": "registered",
    "friendly_name": "friendly_name",
    "identity_sid": "RIaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
    "origin": "origin",
    "phone_number": "@NUMBER@",
    "sid": "@SID@",
    "sms_application_sid": "APaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
    "sms_fallback_method": "GET",
    "sms_fallback_url": "https://example.com",
    "sms_method": "GET",
    "sms_url": "https://example.com",
    "status_callback": "https://example.com",
    "status_callback_method": "GET",
    "trunk_sid": None,
    "uri": f"/2010-04-01/Accounts/{ACCOUNT_SID}/IncomingPhoneNumbers/@SID@.json",
    "voice_application_sid": "APaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
    "voice_caller_id_lookup": False,
    "voice_fallback_method": "GET",
    "voice_fallback_url": "https://example.com",
    "voice_method": "GET",
    "voice_url": "https://example.com",
    "bundle_sid": "BUaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
    "voice_receive_mode": "voice",
    "status": "in-use",
    "type": "local",
}

_DAYS: Final = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS: Final = (
    *("Jan", "Feb", "Mar", "Apr", "May", "Jun"),
    *("Jul", "Aug", "Sep", "Oct", "Nov", "Dec"),
)
_CONTENT_LENGTH: Final = re.compile(rb"\r\ncontent-length:[ \t]*(\d+)", re.IGNORECASE)
_SEPARATOR: Final = b"\r\n\r\n"


def rfc2822(second: int) -> str:
    """Twilio's date layout, ``Thu, 30 Jul 2015 23:19:04 +0000``, locale-independent."""
    t = time.gmtime(second)
    return (
        f"{_DAYS[t.tm_wday]}, {t.tm_mday:02d} {_MONTHS[t.tm_mon - 1]} {t.tm_year:04d} "
        f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} +0000"
    )


def example_body(sid: str = "PN" + "a" * 32, number: str = "+18089255327", date: str = "") -> bytes:
    """The example resource as Twilio would send it, for the micro-benchmarks too."""
    date = date or rfc2822(int(time.time()))
    text = json.dumps(EXAMPLE, separators=(", ", ": "))
    text = text.replace("@DATE@", date).replace("@NUMBER@", number).replace("@SID@", sid)
    return text.encode()


def pin(cpu: int | None) -> str:
    """Pin this process to ``cpu`` where the OS allows it; says what was done."""
    if cpu is None:
        return "not pinned"
    try:
        available = os.sched_getaffinity(0)
        if cpu not in available or len(available) < 2:
            return f"not pinned (CPUs {sorted(available)})"
        os.sched_setaffinity(0, {cpu})
    except (AttributeError, OSError) as exc:
        return f"not pinned ({exc})"
    return f"CPU {cpu}"


class _Canned:
    """The canned server's state, shared by its connections."""

    def __init__(self) -> None:
        token = base64.b64encode(f"{ACCOUNT_SID}:{AUTH_TOKEN}".encode()).decode()
        self.credentials = f"Basic {token}".encode()
        template = example_body(sid="@SID@", number="@NUMBER@", date="@DATE@").decode()
        # %-formatting of bytes: one cheap call per response.
        self.template = (
            template.replace("%", "%%")
            .replace("@SID@", "%(sid)s")
            .replace("@NUMBER@", "%(number)s")
            .replace("@DATE@", "%(date)s")
            .encode()
        )
        self.purchases = 0
        self.rejected = 0
        self._second = -1
        self._date = b""
        self._http_date = b""

    def dates(self) -> tuple[bytes, bytes]:
        second = int(time.time())
        if second != self._second:
            self._second = second
            self._date = rfc2822(second).encode()
            self._http_date = time.strftime(
                "%a, %d %b %Y %H:%M:%S GMT", time.gmtime(second)
            ).encode()
        return self._date, self._http_date

    def created(self) -> bytes:
        self.purchases += 1
        n = self.purchases
        date, http_date = self.dates()
        body = self.template % {
            b"sid": b"PN%032x" % n,
            b"number": b"+1415%07d" % (n % 10_000_000),
            b"date": date,
        }
        return _response(
            b"201 CREATED", body, http_date, b"RQ%032x" % n, b"application/json; charset=utf-8"
        )

    def error(self, status: bytes, code: int, message: str) -> bytes:
        self.rejected += 1
        body = json.dumps(
            {"code": code, "message": message, "more_info": "", "status": int(status[:3])}
        ).encode()
        return _response(status, body, self.dates()[1], b"RQ" + b"0" * 32, b"application/json")

    def stats(self) -> bytes:
        body = json.dumps(
            {
                "purchases": self.purchases,
                "rejected": self.rejected,
                "cpu_s": time.process_time(),
                "pid": os.getpid(),
            }
        ).encode()
        return _response(b"200 OK", body, self.dates()[1], b"RQ" + b"0" * 32, b"application/json")


def _response(status: bytes, body: bytes, date: bytes, request_id: bytes, kind: bytes) -> bytes:
    # The headers api.twilio.com sends with a 201, give or take.
    return b"".join(
        (
            b"HTTP/1.1 ",
            status,
            b"\r\nDate: ",
            date,
            b"\r\nContent-Type: ",
            kind,
            b"\r\nContent-Length: ",
            str(len(body)).encode(),
            b"\r\nConnection: keep-alive\r\nTwilio-Concurrent-Requests: 1\r\nTwilio-Request-Id: ",
            request_id,
            b"\r\nTwilio-Request-Duration: 0.091\r\nX-Powered-By: AT-5000\r\n"
            b"X-Shenanigans: none\r\nX-Home-Region: us1\r\nX-API-Domain: api.twilio.com\r\n"
            b"Strict-Transport-Security: max-age=31536000\r\n\r\n",
            body,
        )
    )


class _Connection(asyncio.Protocol):
    """One keep-alive connection: answers each complete request as soon as it has arrived."""

    def __init__(self, state: _Canned) -> None:
        self.state = state
        self.buffer = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer + data if self.buffer else data
        answers: list[bytes] = []
        while True:
            end = buffer.find(_SEPARATOR)
            if end < 0:
                break
            match = _CONTENT_LENGTH.search(buffer, 0, end + 2)
            total = end + 4 + (int(match[1]) if match else 0)
            if len(buffer) < total:
                break
            head = buffer[:end]
            if head.startswith(b"GET /_stats "):
                # The harness's control request: answered, then the connection is closed.
                if self.transport is not None:
                    self.transport.write(b"".join(answers) + self.state.stats())
                    self.transport.close()
                self.buffer = b""
                return
            answers.append(self.answer(head, buffer[end + 4 : total]))
            buffer = buffer[total:]
        self.buffer = buffer
        if answers and self.transport is not None:
            self.transport.write(b"".join(answers))

    def answer(self, head: bytes, body: bytes) -> bytes:
        state = self.state
        line = head[: head.find(b"\r\n")]
        method, _, rest = line.partition(b" ")
        path = rest.rpartition(b" ")[0]
        if method != b"POST" or path != CREATE_PATH.encode():
            return state.error(b"404 NOT FOUND", 20404, "The requested resource was not found")
        if state.credentials not in head:
            return state.error(b"401 UNAUTHORIZED", 20003, "Authenticate")
        if b"PhoneNumber=" not in body and b"AreaCode=" not in body:
            return state.error(b"400 BAD REQUEST", 21605, "PhoneNumber or AreaCode is required")
        return state.created()


async def _until_stdin_closes() -> None:
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.buffer.read)


async def serve_canned(host: str, port: int) -> None:
    loop = asyncio.get_running_loop()
    state = _Canned()
    server = await loop.create_server(lambda: _Connection(state), host, port, backlog=1024)
    bound = server.sockets[0].getsockname()[1]
    print(f"READY http://{host}:{bound}", flush=True)
    async with server:
        await _until_stdin_closes()


async def serve_sandbox(host: str, port: int) -> None:
    from twilio_numbers_async.sandbox import Sandbox

    # Stock for area-code purchases is generous; the benchmarks buy given numbers anyway.
    sandbox = Sandbox(
        account_sid=ACCOUNT_SID,
        auth_token=AUTH_TOKEN,
        host=host,
        port=port,
        area_code_stock=1_000_000,
    )
    async with sandbox:
        print(f"READY {sandbox.url}", flush=True)
        await _until_stdin_closes()


class ServerProcess:
    """``with ServerProcess("canned", cpu=0) as server:``: a server in a child process.

    ``server.url`` is its base URL. Leaving the block closes the child's stdin, which stops it;
    one that does not stop within a few seconds is terminated.
    """

    def __init__(self, kind: str = "canned", *, cpu: int | None = None) -> None:
        self.kind = kind
        self.cpu = cpu
        self.url = ""
        self.pinned = ""
        self._process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> ServerProcess:
        command = [sys.executable, "-m", "benchmarks.server", self.kind]
        if self.cpu is not None:
            command += ["--cpu", str(self.cpu)]
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        self._process = subprocess.Popen(  # noqa: S603 - this interpreter, our own module
            command,
            cwd=root,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        assert self._process.stdout is not None
        assert self._process.stderr is not None
        self.pinned = self._process.stderr.readline().decode().strip()
        line = self._process.stdout.readline().decode().strip()
        if not line.startswith("READY "):
            self.__exit__(None, None, None)
            raise RuntimeError(f"the {self.kind} server did not start: {line!r}")
        self.url = line.split(" ", 1)[1]
        return self

    @property
    def pid(self) -> int:
        assert self._process is not None, "the server is not running"
        return self._process.pid

    def cpu_seconds(self) -> float | None:
        """The CPU time the server process has used so far (Linux), else ``None``."""
        try:
            with open(f"/proc/{self.pid}/stat", encoding="ascii") as stat:
                fields = stat.read().rpartition(")")[2].split()
        except OSError:
            return None
        # utime and stime, the 14th and 15th fields, in clock ticks.
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def __exit__(self, *exc: object) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        assert process.stdin is not None
        with contextlib.suppress(OSError):
            process.stdin.close()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.terminate()
            process.wait(timeout=5)
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                stream.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("kind", nargs="?", choices=("canned", "sandbox"), default="canned")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--cpu", type=int, default=None, help="pin to this CPU")
    args = parser.parse_args()
    print(f"server pinned: {pin(args.cpu)}", file=sys.stderr, flush=True)
    serve = serve_canned if args.kind == "canned" else serve_sandbox
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(args.host, args.port))


if __name__ == "__main__":
    main()
