"""``twilio-numbers sandbox``: a fake Twilio served for other programs until stopped."""

from __future__ import annotations

import asyncio
import signal
import sys

import pytest

from tests.cli._run import clean_env, read_until
from twilio_numbers_async import (
    TwilioNumbersClient,
)


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT])
async def test_sandbox_command_serves_until_stopped(stop: signal.Signals) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "twilio_numbers_async",
        "sandbox",
        "--port",
        "0",
        "--seed",
        "5",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=clean_env(),
    )
    try:
        assert process.stdout is not None
        banner = await read_until(process.stdout, "export TWILIO_AUTH_TOKEN=")
        settings = dict(
            line.strip().removeprefix("export ").split("=", 1)
            for line in banner
            if line.strip().startswith("export ")
        )
        url = banner[0].split()[3]

        async with TwilioNumbersClient(
            settings["TWILIO_ACCOUNT_SID"], settings["TWILIO_AUTH_TOKEN"], base_url=url
        ) as client:
            number = await client.create_incoming_phone_number(area_code="415")
        assert number.phone_number is not None
        assert number.phone_number.startswith("+1415")

        process.send_signal(stop)
        stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=30)
    finally:  # a failed assertion must not leave a sandbox serving for ever
        if process.returncode is None:
            process.kill()
            await process.communicate()
    assert process.returncode == 0, stderr
    assert b"Sandbox stopped." in stdout
