"""``twilio-numbers sandbox``: a fake Twilio served for other programs until stopped."""

from __future__ import annotations

import asyncio
import signal
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest

from tests.cli._run import clean_env, cli_argv, read_until, run_cli
from twilio_numbers_async import TwilioNumbersClient
from twilio_numbers_async.cli import ExitCode


@asynccontextmanager
async def serving(*args: str) -> AsyncIterator[tuple[asyncio.subprocess.Process, list[str]]]:
    """``twilio-numbers sandbox ARGS`` in a subprocess, and its banner once it serves; killed
    on the way out if the test has not stopped it."""
    process = await asyncio.create_subprocess_exec(
        *cli_argv("sandbox", "--port", "0", *args),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=clean_env(),
    )
    try:
        assert process.stdout is not None
        yield process, await read_until(process.stdout, "export TWILIO_BASE_URL=")
    finally:  # a failed assertion must not leave a sandbox serving for ever
        if process.returncode is None:
            process.kill()
            await process.communicate()


def exported(banner: list[str]) -> dict[str, str]:
    """The variables the banner tells the user to export."""
    lines = (line.strip() for line in banner)
    return dict(
        line.removeprefix("export ").split("=", 1) for line in lines if line.startswith("export ")
    )


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT])
async def test_sandbox_command_serves_until_stopped(stop: signal.Signals) -> None:
    async with serving("--seed", "5") as (process, banner):
        settings = exported(banner)
        assert "test values it made up" in "".join(banner)

        async with TwilioNumbersClient(
            settings["TWILIO_ACCOUNT_SID"],
            settings["TWILIO_AUTH_TOKEN"],
            base_url=settings["TWILIO_BASE_URL"],
        ) as client:
            number = await client.create_incoming_phone_number(area_code="415")
        assert number.phone_number is not None
        assert number.phone_number.startswith("+1415")

        process.send_signal(stop)
        stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=30)

    assert process.returncode == 0, stderr
    assert b"Sandbox stopped." in stdout


@pytest.mark.parametrize(
    ("given", "said"),
    [
        (("--account-sid", "AC" + "1" * 32), "the account SID you gave, and an auth token it made"),
        (("--auth-token", "token-of-mine"), "the auth token you gave, and an account SID it made"),
        (
            ("--account-sid", "AC" + "1" * 32, "--auth-token", "token-of-mine"),
            "the account SID and auth token you gave",
        ),
    ],
    ids=["account SID", "auth token", "both"],
)
async def test_credentials_given_are_not_called_made_up(given: tuple[str, ...], said: str) -> None:
    async with serving(*given) as (process, banner):
        process.send_signal(signal.SIGTERM)
        await asyncio.wait_for(process.communicate(), timeout=30)

    text = "".join(banner)
    assert said in text
    assert "test values it made up" not in text
    for value in given[1::2]:
        assert f"={value}\n" in text


def test_a_busy_port_is_named() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]

        run = run_cli("sandbox", "--port", str(port))

    assert run.code == ExitCode.BAD_INPUT
    assert f"can't listen on '127.0.0.1' port {port}: another program is using it" in run.stderr
    assert "Errno" not in run.stderr
    assert "Traceback" not in run.stderr


def test_a_host_with_a_line_break_is_shown_on_one_line() -> None:
    run = run_cli("sandbox", "--host", "127.0.0.1\n", "--port", "0")

    assert run.code == ExitCode.BAD_INPUT
    [line] = run.stderr.splitlines()
    assert "'127.0.0.1\\n'" in line
    assert "error: " in line
