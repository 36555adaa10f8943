"""Running the CLI as a user runs it (a subprocess, with an environment the test chose), and
the files it reads.

Commands that need a Twilio get a :class:`Sandbox` served from the test's own event loop, and
the CLI runs through ``asyncio.create_subprocess_exec`` so that the sandbox keeps serving.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs

from twilio_numbers_async.sandbox import Sandbox

__all__ = [
    "MIXED_CSV",
    "Run",
    "clean_env",
    "read_until",
    "run_cli",
    "run_cli_async",
    "sandbox_env",
    "write",
]


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


def run_cli(*args: str, env: Mapping[str, str] | None = None) -> Run:
    """The CLI in a subprocess, for commands that need no server from this test."""
    done = subprocess.run(  # noqa: S603 - our own module, with arguments the test chose
        [sys.executable, "-m", "twilio_numbers_async", *args],
        capture_output=True,
        text=True,
        env=clean_env() if env is None else dict(env),
        timeout=60,
        check=False,
    )
    return Run(done.returncode, done.stdout, done.stderr)


async def run_cli_async(*args: str, env: Mapping[str, str]) -> Run:
    """The CLI in a subprocess, while this test's event loop keeps a sandbox serving."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "twilio_numbers_async",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=dict(env),
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode is not None
    return Run(process.returncode, stdout.decode(), stderr.decode())


async def read_until(stream: asyncio.StreamReader, marker: str) -> list[str]:
    lines: list[str] = []
    while not lines or marker not in lines[-1]:
        line = await asyncio.wait_for(stream.readline(), timeout=30)
        assert line, f"the sandbox exited early; it printed {lines}"
        lines.append(line.decode())
    return lines


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
