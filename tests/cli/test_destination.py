"""Where ``buy`` and ``bulk`` send requests: ``--base-url``, else ``TWILIO_BASE_URL``, else
Twilio; said on stderr before anything is sent, and anywhere but this machine only with the
user's go-ahead (a question on a terminal, or ``--yes``).

The tests that point the CLI at Twilio run it with the network cut off (``offline``): they
prove that nothing is sent, and can never reach the internet themselves.
"""

from __future__ import annotations

import os
import pty
import select
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.cli._run import (
    FAKE_CREDENTIALS,
    Run,
    clean_env,
    cli_argv,
    run_cli,
    run_cli_async,
    sandbox_env,
    workdir,
    write,
)
from twilio_numbers_async.cli import ExitCode
from twilio_numbers_async.cli._twilio import Destination
from twilio_numbers_async.sandbox import Sandbox

FAKE = FAKE_CREDENTIALS
TWILIO = "requests go to Twilio (https://api.twilio.com): real purchases"
#: What the client says when the cut network refuses its first request: the command went ahead.
WENT_AHEAD = "could not connect, the request was not sent"


@pytest.mark.parametrize(
    ("base_url", "local", "said"),
    [
        ("http://127.0.0.1:8080", True, "http://127.0.0.1:8080, on this machine"),
        ("http://localhost:8080", True, "on this machine"),
        ("http://[::1]:8080", True, "on this machine"),
        ("https://api.twilio.com", False, "Twilio (https://api.twilio.com): real purchases"),
        ("https://api.sydney.au1.twilio.com", False, "Twilio (https://api.sydney.au1.twilio.com)"),
        ("https://proxy.example.com", False, "on another machine: purchases there may be real"),
        # Only Twilio's own domain is named Twilio.
        ("https://api.twilio.com.example.net", False, "on another machine"),
        ("https://nottwilio.com", False, "on another machine"),
    ],
)
def test_a_destination_says_whether_a_purchase_there_may_be_real(
    base_url: str, local: bool, said: str
) -> None:
    destination = Destination.of(base_url)

    assert destination.may_be_real is not local
    assert said in str(destination)


async def test_twilio_base_url_is_read_and_the_option_wins(tmp_path: Path) -> None:
    async with Sandbox() as sandbox:
        from_env = await run_cli_async(
            "buy",
            "--area-code",
            "415",
            env={**sandbox_env(sandbox), "TWILIO_BASE_URL": sandbox.url},
        )
        # The variable names a host that is not this machine: the option must win over it,
        # or the command would stop to ask (stdin is not a terminal).
        overridden = await run_cli_async(
            "buy",
            "+14155550100",
            "--base-url",
            sandbox.url,
            env={**sandbox_env(sandbox), "TWILIO_BASE_URL": "https://proxy.example.com"},
            offline=True,
        )

        assert from_env.code == overridden.code == ExitCode.OK, from_env.stderr + overridden.stderr
        assert len(sandbox.purchases) == 2
        for run in (from_env, overridden):
            assert f"requests go to {sandbox.url}, on this machine" in run.stderr


@pytest.mark.parametrize(
    ("env", "said"),
    [
        ({}, TWILIO),
        (
            {"TWILIO_EDGE": "sydney", "TWILIO_REGION": "au1"},
            "requests go to Twilio (https://api.sydney.au1.twilio.com): real purchases",
        ),
        (
            {"TWILIO_BASE_URL": "https://proxy.example.com"},
            "requests go to https://proxy.example.com, on another machine",
        ),
    ],
    ids=["twilio", "edge and region", "another host"],
)
@pytest.mark.parametrize("command", ["buy", "bulk"])
def test_without_a_terminal_buying_for_real_needs_yes(
    command: str, env: dict[str, str], said: str, tmp_path: Path
) -> None:
    if command == "buy":
        args = ["buy", "--area-code", "415"]
    else:
        csv_file = write(tmp_path, "area_code\n415\n212\n")
        args = ["bulk", str(csv_file), "--journal", str(tmp_path / "j.jsonl")]

    run = run_cli(*args, env=clean_env(**FAKE, **env), offline=True)

    assert run.code == ExitCode.BAD_INPUT
    assert said in run.stderr
    assert "stdin is not a terminal" in run.stderr
    assert "add --yes" in run.stderr
    assert WENT_AHEAD not in run.stderr  # nothing was even tried
    assert not (tmp_path / "j.jsonl").exists()


async def test_a_bulk_rerun_asks_saying_how_many_rows_the_journal_has_done(
    tmp_path: Path,
) -> None:
    csv_file, journal = write(tmp_path, "area_code\n415\n212\n"), tmp_path / "j.jsonl"
    async with Sandbox() as sandbox:
        first = await run_cli_async(
            "bulk", str(csv_file), "--journal", str(journal), "--base-url", sandbox.url,
            env=sandbox_env(sandbox),
        )  # fmt: skip
        assert first.code == ExitCode.OK, first.stderr

    run = run_cli(
        "bulk", str(csv_file), "--journal", str(journal), env=clean_env(**FAKE), offline=True
    )

    assert run.code == ExitCode.BAD_INPUT
    assert (
        f"buy up to 2 numbers, one per row of {csv_file} (2 already done in {journal}) on "
        f"account {FAKE['TWILIO_ACCOUNT_SID']}"
    ) in run.stderr
    assert WENT_AHEAD not in run.stderr


def test_a_search_says_where_it_goes_and_needs_no_go_ahead() -> None:
    # A search changes nothing on the account: nothing to confirm, even without a terminal.
    run = run_cli("search", "--area-code", "415", env=clean_env(**FAKE), offline=True)

    assert "requests go to Twilio (https://api.twilio.com)\n" in run.stderr
    assert "real purchases" not in run.stderr
    assert "[y/N]" not in run.stderr
    assert WENT_AHEAD in run.stderr


def test_yes_goes_ahead_without_asking(tmp_path: Path) -> None:
    csv_file = write(tmp_path, "area_code\n415\n")

    run = run_cli(
        "bulk",
        str(csv_file),
        "--journal",
        str(tmp_path / "j.jsonl"),
        "--yes",
        env=clean_env(**FAKE),
        offline=True,
    )

    assert TWILIO in run.stderr
    assert "[y/N]" not in run.stderr
    assert WENT_AHEAD in run.stderr


def answer_in_a_terminal(answer: str | signal.Signals, *args: str, env: dict[str, str]) -> Run:
    """Run the CLI offline with a terminal (a pty) as its stdin and stderr: wait for its
    question on stderr, then type ``answer`` and Enter (or send it the signal ``answer``)."""
    terminal, its_end = pty.openpty()
    with workdir(None) as folder:
        process = subprocess.Popen(  # noqa: S603 - our own module, with arguments the test chose
            cli_argv(*args, offline=True),
            stdin=its_end,
            stdout=subprocess.PIPE,
            stderr=its_end,
            env=env,
            cwd=folder,
        )
        os.close(its_end)
        try:
            asked = read_until(terminal, b"[y/N] ")
            if isinstance(answer, signal.Signals):
                process.send_signal(answer)
            else:
                os.write(terminal, f"{answer}\n".encode())
            stdout, _ = process.communicate(timeout=60)
            said = read_to_the_end(terminal)
        finally:
            os.close(terminal)
            if process.poll() is None:
                process.kill()
                process.communicate()
    # The terminal ends its lines with CR LF, and echoes what is typed.
    stderr = (asked + said).decode().replace("\r\n", "\n")
    return Run(process.returncode, stdout.decode(), stderr)


def read_to_the_end(fd: int) -> bytes:
    """What a pty's other end gives until the process on it has exited and all is read."""
    seen = b""
    while select.select([fd], [], [], 30)[0]:
        try:
            chunk = os.read(fd, 4096)
        except OSError:  # EIO: every end of the terminal is closed, and all was read
            break
        if not chunk:
            break
        seen += chunk
    return seen


def read_until(fd: int, marker: bytes, timeout: float = 30.0) -> bytes:
    """What ``fd`` gives until ``marker`` (a prompt ends without a newline)."""
    seen = b""
    deadline = time.monotonic() + timeout
    while marker not in seen:
        left = deadline - time.monotonic()
        assert left > 0, f"no {marker!r} after {timeout} s; got {seen!r}"
        readable, _, _ = select.select([fd], [], [], left)
        if readable:
            chunk = os.read(fd, 4096)
            assert chunk, f"the command ended before asking; it said {seen!r}"
            seen += chunk
    return seen


@pytest.mark.parametrize("answer", ["", "n", "yeah", signal.SIGINT], ids=repr)
def test_in_a_terminal_no_answer_but_yes_buys_nothing(answer: str | signal.Signals) -> None:
    run = answer_in_a_terminal(answer, "buy", "+14155550100", env=clean_env(**FAKE))

    assert TWILIO in run.stderr
    assert f"buy +14155550100 on account {FAKE['TWILIO_ACCOUNT_SID']}" in run.stderr
    assert run.code == ExitCode.BAD_INPUT
    assert "not confirmed: nothing was sent" in run.stderr
    assert WENT_AHEAD not in run.stderr


def test_with_stderr_not_a_terminal_it_refuses_rather_than_ask_unseen(tmp_path: Path) -> None:
    """``2>file``: the question would go to the file, and the command would wait for an answer
    to a question nobody sees. It refuses, and says to add --yes."""
    terminal, its_end = pty.openpty()
    os.write(terminal, b"y\n")  # typed ahead: asked anyway, it would go ahead
    try:
        process = subprocess.run(  # noqa: S603 - our own module, with arguments the test chose
            cli_argv("buy", "+14155550100", offline=True),
            stdin=its_end,
            capture_output=True,
            env=clean_env(**FAKE),
            cwd=tmp_path,
            timeout=60,
            check=False,
        )
    finally:
        os.close(its_end)
        os.close(terminal)
    stderr = process.stderr.decode()

    assert process.returncode == ExitCode.BAD_INPUT, stderr
    assert "[y/N]" not in stderr
    assert "stderr, where the question goes, is not a terminal; add --yes" in stderr
    assert WENT_AHEAD not in stderr


def test_in_a_terminal_yes_buys() -> None:
    run = answer_in_a_terminal("y", "buy", "--area-code", "415", env=clean_env(**FAKE))

    assert "buy a number in area code 415 on account" in run.stderr
    assert WENT_AHEAD in run.stderr
    assert run.code == ExitCode.FAILED
