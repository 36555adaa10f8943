"""Running the CLI as a user runs it (a subprocess, with an environment the test chose), and
the files it reads.

Commands that need a Twilio get a :class:`Sandbox` served from the test's own event loop, and
the CLI runs through ``asyncio.create_subprocess_exec`` so that the sandbox keeps serving.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
from asyncio.subprocess import Process
from collections.abc import Awaitable, Callable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from twilio_numbers_async.sandbox import Fault, Sandbox

if TYPE_CHECKING:
    from twilio_numbers_async.sandbox._faults import Endpoint

__all__ = [
    "FAKE_CREDENTIALS",
    "MIXED_CSV",
    "OFFLINE",
    "Run",
    "clean_env",
    "cli_argv",
    "documented",
    "interrupt_cli",
    "kill_mid_run",
    "read_until",
    "run_cli",
    "run_cli_async",
    "sandbox_env",
    "until",
    "workdir",
    "write",
]


#: Credentials of the right shape, for commands that must stop before using them.
FAKE_CREDENTIALS = {"TWILIO_ACCOUNT_SID": "AC" + "0" * 32, "TWILIO_AUTH_TOKEN": "not-a-real-token"}


@attrs.frozen
class Run:
    code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)


def clean_env(**extra: str) -> dict[str, str]:
    """The test's environment without any Twilio credentials, plus ``extra``."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("TWILIO_")}
    return {**env, **extra}


def sandbox_env(sandbox: Sandbox) -> dict[str, str]:
    return clean_env(TWILIO_ACCOUNT_SID=sandbox.account_sid, TWILIO_AUTH_TOKEN=sandbox.auth_token)


#: The CLI with the network cut off beyond this machine: a host name other than loopback
#: looked up, or a connection to another machine, fails (the client reports it as a connection
#: failure). A test that expects the CLI to stop before sending anything to Twilio runs it so:
#: were the CLI wrong, the test would see it fail rather than reach the internet.
OFFLINE = """\
import ipaddress, socket, sys

def loopback(host):
    try:
        return host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False

def guard(real, host_of):
    def guarded(*args, **kwargs):
        if not loopback(host_of(args)):
            raise OSError("no network beyond loopback in this test")
        return real(*args, **kwargs)
    return guarded

socket.getaddrinfo = guard(socket.getaddrinfo, lambda args: args[0])
socket.socket.connect = guard(socket.socket.connect, lambda args: args[1][0])
socket.socket.connect_ex = guard(socket.socket.connect_ex, lambda args: args[1][0])
from twilio_numbers_async.cli import main
sys.exit(main(sys.argv[1:]))
"""


def cli_argv(*args: str, offline: bool = False) -> list[str]:
    """The command that runs the CLI with ``args``, with the network cut off if ``offline``."""
    if offline:
        return [sys.executable, "-c", OFFLINE, *args]
    return [sys.executable, "-m", "twilio_numbers_async", *args]


@contextlib.contextmanager
def workdir(cwd: Path | None) -> Iterator[Path]:
    """Where the CLI runs: ``cwd`` (a test's ``tmp_path``, for a test that looks at what was
    written there), else a new empty folder that must stay empty: a file the CLI leaves in
    its working directory fails the test, and never lands in the repository."""
    if cwd is not None:
        yield cwd
        return
    with tempfile.TemporaryDirectory(prefix="twilio-numbers-cwd-") as scratch:
        yield Path(scratch)
        left = sorted(os.listdir(scratch))
        assert not left, f"the CLI left files in its working directory: {left}"


def run_cli(
    *args: str,
    env: Mapping[str, str] | None = None,
    offline: bool = False,
    cwd: Path | None = None,
) -> Run:
    """The CLI in a subprocess, in ``cwd`` (see :func:`workdir`), for commands that need no
    server from this test. Its stdin is not a terminal (nor is anything else)."""
    with workdir(cwd) as folder:
        done = subprocess.run(  # noqa: S603 - our own module, with arguments the test chose
            cli_argv(*args, offline=offline),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            env=clean_env() if env is None else dict(env),
            cwd=folder,
            timeout=60,
            check=False,
        )
    return Run(done.returncode, done.stdout, done.stderr)


async def _start(argv: list[str], env: Mapping[str, str], folder: Path) -> Process:
    return await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=dict(env),
        cwd=folder,
    )


async def run_cli_async(
    *args: str, env: Mapping[str, str], offline: bool = False, cwd: Path | None = None
) -> Run:
    """The CLI in a subprocess, in ``cwd`` (see :func:`workdir`), while this test's event
    loop keeps a sandbox serving."""
    with workdir(cwd) as folder:
        process = await _start(cli_argv(*args, offline=offline), env, folder)
        stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode is not None
    return Run(process.returncode, stdout.decode(), stderr.decode())


async def until(condition: Callable[[], bool]) -> None:
    """Return once ``condition()`` holds. The sandbox records what it serves but signals
    nothing: a test looks at its records, from the loop that serves it, so that nothing it
    serves can slip between the look and what the test does next."""
    async with asyncio.timeout(30):
        while not condition():  # noqa: ASYNC110
            await asyncio.sleep(0.01)


async def interrupt_cli(
    *args: str,
    env: Mapping[str, str],
    when: Callable[[], Awaitable[None]],
    stop: signal.Signals = signal.SIGINT,
    cwd: Path | None = None,
) -> Run:
    """Run the CLI with ``args``, and send it ``stop`` once ``when()`` returns (the run has
    reached the point the test wants it stopped at)."""
    with workdir(cwd) as folder:
        process = await _start(cli_argv(*args), env, folder)
        try:
            await when()
            process.send_signal(stop)
            stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=60)
        finally:
            if process.returncode is None:
                process.kill()
                await process.communicate()
    assert process.returncode is not None
    return Run(process.returncode, stdout.decode(), stderr.decode())


async def kill_mid_run(
    sandbox: Sandbox,
    *args: str,
    done: Callable[[], int],
    held: Callable[[], int],
    on: Endpoint = "purchase",
    stop: signal.Signals = signal.SIGKILL,
    cwd: Path | None = None,
) -> Run:
    """Run the CLI with ``args`` (two requests at a time) and stop it mid-way with ``stop``:
    once ``done()`` counts three requests to ``on`` served, the answers of the next two are
    held, and once ``held()`` counts both, the run can go no further and gets the signal. A
    SIGKILL leaves no record of how those two ended, as a crash would. The sandbox needs a
    latency (50 ms is plenty): without one, the run can finish before the faults are queued."""

    async def stuck() -> None:
        await until(lambda: done() >= 3)
        sandbox.script(*[Fault.slow_after_commit(600)] * 2, on=on)
        await until(lambda: held() == 2)

    return await interrupt_cli(
        *args, "--concurrency", "2", env=sandbox_env(sandbox), when=stuck, stop=stop, cwd=cwd
    )


async def read_until(stream: asyncio.StreamReader, marker: str) -> list[str]:
    lines: list[str] = []
    while not lines or marker not in lines[-1]:
        line = await asyncio.wait_for(stream.readline(), timeout=30)
        assert line, f"the sandbox exited early; it printed {lines}"
        lines.append(line.decode())
    return lines


def documented(info: str, *, under: str | None = None) -> str:
    """The first code block of docs/cli.md marked ``info`` (such as ``json``), after the
    heading ``under`` if given (such as ``"## search"``)."""
    text = (Path(__file__).parents[2] / "docs" / "cli.md").read_text(encoding="utf-8")
    if under is not None:
        assert f"\n{under}" in text, f"docs/cli.md has no heading {under!r}"
        text = text.split(f"\n{under}", 1)[1]
    match = re.search(rf"^```{info}\n(.*?)^```$", text, flags=re.MULTILINE | re.DOTALL)
    assert match is not None, f"docs/cli.md has no ```{info} block after {under or 'its start'}"
    return match.group(1)


MIXED_CSV = """\
phone_number,area_code,friendly_name,sms_url,voice_caller_id_lookup,mobile
+14156000001,,row-2,https://example.com/sms,true,
,415,row-3,,,

+447700900001,,row-5,,,yes
+15005550000,,row-6,,,
,533,row-7,,,
"""


def write(tmp_path: Path, text: str, name: str = "numbers.csv") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path
