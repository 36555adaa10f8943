"""Contract tests: the client and the sandbox against Twilio's official OpenAPI spec.

A real Stoplight Prism (``@stoplight/prism-cli``, installed by ``bash .ci/install-prism``)
serves the spec: ``prism mock`` checks every request the client sends and answers with the
spec's example, and ``prism proxy --errors`` checks the sandbox's answers on their way to the
client. What Prism does not check (unknown form keys, Twilio's own formats, the conditional
``PhoneNumber``/``AreaCode``) is checked in Python, from the same file (``test_spec_gaps``).

This module holds the Prism helpers: finding the ``prism`` command, running it as a process
that is always stopped, and :class:`PrismWatch`, which reads Prism's verdict on every exchange.
Where Node/Prism or the spec is missing the tests skip, saying how to enable them; with
``TWILIO_NUMBERS_REQUIRE_CONTRACT=1`` (set by CI) they fail instead.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final, NoReturn

import aiohttp
import attrs
import pytest

__all__ = [
    "PRISM_BIN_ENV",
    "REQUIRE_ENV",
    "Exchange",
    "PrismError",
    "PrismProcess",
    "PrismProxy",
    "PrismWatch",
    "contract_required",
    "find_prism",
    "free_port",
    "unavailable",
]

REQUIRE_ENV: Final = "TWILIO_NUMBERS_REQUIRE_CONTRACT"
PRISM_BIN_ENV: Final = "PRISM_BIN"
_REPO_ROOT: Final = Path(__file__).resolve().parents[2]
_LOCAL_PRISM: Final = _REPO_ROOT / ".ci" / "node" / "node_modules" / ".bin" / "prism"
_HOST: Final = "127.0.0.1"
_START_TIMEOUT: Final = 30.0
_STOP_TIMEOUT: Final = 5.0
_POLL_INTERVAL: Final = 0.05
_LOG_TAIL: Final = 4000
#: Prism's warning for a status the spec does not declare: every error status, since the spec
#: declares only 201 (and 200 for the list). Errors are not part of the spec, so not a breach.
_UNDECLARED_STATUS: Final = "Unable to match the returned status code"


def contract_required() -> bool:
    """Whether CI asked for the contract tests to run, never to skip."""
    return os.environ.get(REQUIRE_ENV, "") == "1"


def unavailable(reason: str) -> NoReturn:
    """Skip for ``reason``, or fail when :func:`contract_required`."""
    if contract_required():
        pytest.fail(f"{reason} ({REQUIRE_ENV}=1: the contract tests must run)", pytrace=False)
    pytest.skip(reason)


def find_prism() -> list[str]:
    """The command that runs Prism: ``$PRISM_BIN``, else ``.ci/node``'s, else ``prism`` on
    PATH. Skips (or fails, see :func:`unavailable`) saying how to install it."""
    how = "run `bash .ci/install-prism` (needs Node.js 18+ and npm), or set PRISM_BIN"
    given = os.environ.get(PRISM_BIN_ENV)
    if given:
        if not os.access(given, os.X_OK):
            unavailable(f"PRISM_BIN={given!r} is not an executable file; {how}")
        return [given]
    if _LOCAL_PRISM.is_file():
        # The npm bin is a script run by `node` from PATH.
        if shutil.which("node") is None:
            unavailable("Prism is in .ci/node but `node` is not on PATH; install Node.js 18+")
        return [str(_LOCAL_PRISM)]
    on_path = shutil.which("prism")
    if on_path is not None:
        return [on_path]
    unavailable(f"Stoplight Prism is not installed: {how}")


def free_port() -> int:
    """A TCP port free on loopback right now (the usual small race: nothing else binds here)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((_HOST, 0))
        port: int = probe.getsockname()[1]
        return port


class PrismError(RuntimeError):
    """Prism did not start: its output is in the message."""


class PrismProcess:
    """One ``prism`` process on loopback: started, polled until it listens, always stopped.

    ``arguments`` follow the command (``["mock", SPEC]``, ``["proxy", SPEC, UPSTREAM,
    "--errors"]``); ``-h`` and ``-p`` are added. Its output goes to ``log_path`` (a file, not a
    pipe: Prism logs every request, and a pipe nobody reads would stall it). It runs in a
    session of its own so that stopping it stops anything it started.
    """

    def __init__(self, command: Sequence[str], arguments: Sequence[str], log_path: Path) -> None:
        self.port = free_port()
        self.url = f"http://{_HOST}:{self.port}"
        self.log_path = log_path
        self._argv = [*command, *arguments, "-h", _HOST, "-p", str(self.port)]
        self._process: subprocess.Popen[bytes] | None = None
        #: The process id (and process group id), once started.
        self.pid: int | None = None
        #: How the process ended, once :meth:`stop` has reaped it.
        self.returncode: int | None = None

    def __repr__(self) -> str:
        return f"PrismProcess({' '.join(self._argv[1:])!r})"

    def start(self, timeout: float = _START_TIMEOUT) -> None:
        """Start Prism and return once it accepts connections; :class:`PrismError` if it
        exits first or is not listening within ``timeout`` seconds."""
        env = {**os.environ, "NO_COLOR": "1", "FORCE_COLOR": "0"}
        with self.log_path.open("wb") as log:
            self._process = subprocess.Popen(  # noqa: S603 - our own argv, no shell
                self._argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )
        self.pid = self._process.pid
        deadline = time.monotonic() + timeout
        while not self._accepts_connections():
            code = self._process.poll()
            if code is not None:
                self.stop()
                raise PrismError(f"{self!r} exited with {code} before listening:\n{self.log()}")
            if time.monotonic() > deadline:
                self.stop()
                raise PrismError(
                    f"{self!r} was not listening on {self.url} after {timeout:.0f} s:\n{self.log()}"
                )
            time.sleep(_POLL_INTERVAL)

    def _accepts_connections(self) -> bool:
        try:
            with socket.create_connection((_HOST, self.port), timeout=0.5):
                return True
        except OSError:
            return False

    def stop(self) -> None:
        """Stop Prism (SIGTERM, then SIGKILL after a while) and reap it. Safe to call twice."""
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None:
            _signal(process, signal.SIGTERM)
            try:
                process.wait(timeout=_STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                _signal(process, signal.SIGKILL)
                process.wait(timeout=_STOP_TIMEOUT)
        self.returncode = process.wait()

    def log(self) -> str:
        """The end of Prism's output."""
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError as exc:
            return f"(no log: {exc})"
        return text[-_LOG_TAIL:] if len(text) > _LOG_TAIL else text


@attrs.frozen
class PrismProxy:
    """``prism proxy --errors`` in front of whatever listens on ``upstream_port`` (a sandbox
    that each test starts there: ``Sandbox(port=proxy.upstream_port)``)."""

    process: PrismProcess
    upstream_port: int

    @property
    def url(self) -> str:
        """Prism's base URL, for the client."""
        return self.process.url


def _signal(process: subprocess.Popen[bytes], signum: signal.Signals) -> None:
    # The process leads its own session (start_new_session): signal its whole group.
    with contextlib.suppress(ProcessLookupError):
        if hasattr(os, "killpg"):
            os.killpg(process.pid, signum)
        elif signum == signal.SIGTERM:
            process.terminate()
        else:
            process.kill()


@attrs.frozen
class Exchange:
    """One response that came through Prism, and what Prism said about it."""

    method: str
    url: str
    status: int
    content_type: str
    violations: list[dict[str, Any]]
    #: The body, parsed, when it is JSON (``application/json`` or ``application/problem+json``).
    body: Any

    @property
    def problem(self) -> dict[str, Any] | None:
        """Prism's own error body, if this is one."""
        if self.content_type == "application/problem+json" and isinstance(self.body, dict):
            return self.body
        return None

    def complaints(self, *, responses: bool = True) -> list[str]:
        """Prism's objections to this exchange, one line each; none when it kept the spec.

        ``responses=False`` leaves out those about the response (the mock's answers are the
        spec's own examples: their breaches are the spec's, not ours).
        """
        where = f"{self.method} {self.url} -> {self.status}"
        found = [
            f"{where}: {violation.get('severity')} at "
            f"{'.'.join(map(str, violation.get('location', [])))}: {violation.get('message')}"
            for violation in self.violations
            if not (
                self.status >= 400
                and violation.get("severity") == "Warning"
                and str(violation.get("message", "")).startswith(_UNDECLARED_STATUS)
            )
            and (responses or violation.get("location", [None])[0] != "response")
        ]
        problem = self.problem
        if problem is not None and not self.violations:
            # Prism's own answer (422 for a request, 500 for a response or a failed upstream).
            details = [
                f"{'.'.join(map(str, item.get('location', [])))}: {item.get('message')}"
                for item in problem.get("validation", [])
            ]
            found.append(
                f"{where}: Prism says {problem.get('title')!r}"
                + (f" {problem.get('detail')!r}" if problem.get("detail") else "")
                + "".join(f"\n    {detail}" for detail in details)
            )
        return found


class PrismWatch:
    """Records Prism's verdict on every response an aiohttp session gets through Prism.

    Prism reports a breach of the spec in the ``sl-violations`` header (JSON), and answers a
    request it refuses, a response it refuses (``--errors``) or an upstream it can't reach with
    an ``application/problem+json`` body of its own. :meth:`session` makes a session that
    records both; :meth:`check` fails, quoting Prism, if anything broke the spec. Error
    statuses are not breaches: the spec declares none (see ``_UNDECLARED_STATUS``).
    ``responses=False`` judges only the requests (for the mock, see :meth:`Exchange.complaints`).
    """

    def __init__(self, *, responses: bool = True) -> None:
        self.exchanges: list[Exchange] = []
        self._responses = responses

    def session(self) -> aiohttp.ClientSession:
        """A new session (the caller closes it) whose responses are recorded."""
        trace = aiohttp.TraceConfig()
        trace.on_request_end.append(self._record)
        return aiohttp.ClientSession(trace_configs=[trace])

    async def _record(
        self,
        _session: aiohttp.ClientSession,
        _context: object,
        params: aiohttp.TraceRequestEndParams,
    ) -> None:
        response = params.response
        violations = json.loads(response.headers.get("sl-violations", "[]"))
        body = None
        if response.content_type in ("application/json", "application/problem+json"):
            # read() keeps the body: the client reads the same bytes after this.
            raw = await response.read()
            try:
                body = json.loads(raw)
            except ValueError:
                body = raw.decode("utf-8", "replace")
        self.exchanges.append(
            Exchange(
                method=params.method,
                url=str(params.url),
                status=response.status,
                content_type=response.content_type,
                violations=violations,
                body=body,
            )
        )

    def complaints(self) -> list[str]:
        """Every objection Prism made so far."""
        return [
            line
            for exchange in self.exchanges
            for line in exchange.complaints(responses=self._responses)
        ]

    def check(self) -> None:
        """``AssertionError`` quoting Prism if any exchange broke the spec."""
        complaints = self.complaints()
        if complaints:
            raise AssertionError("Prism says the spec was broken:\n" + "\n".join(complaints))
