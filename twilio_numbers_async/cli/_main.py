"""Running ``twilio-numbers``: parse the command line, run one command, and turn what it
raises into a message and an exit code (:mod:`._errors`), in this one place.

Each command is a module of its own (``_demo``, ``_buy``, ``_bulk``, ``_search``,
``_release``, ``_sandbox``) with a ``run`` function, imported only when it is the one asked
for: only ``demo`` and ``sandbox`` load the sandbox, and aiohttp's server code.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import logging
import shlex
import signal
import sys
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, Final, TypeAlias

from twilio_numbers_async.errors import JournalError, TwilioNumbersError

from ._csv import CsvError
from ._errors import PROG, CheckFailed, ExitCode, Interrupted, UsageError, describe, say
from ._parser import build_parser, check

try:
    from ._console import Output
except ModuleNotFoundError as exc:  # rich, the [cli] extra, is not installed
    if (exc.name or "").partition(".")[0] != "rich":
        raise
    _EXTRA_MISSING = True
else:
    _EXTRA_MISSING = False

__all__ = ["Command", "main"]

_INSTALL: Final = "pip install 'twilio-numbers-async[cli]'"

#: A command: takes the parsed arguments and the output, and returns (a coroutine that returns)
#: whether everything succeeded (every number bought, the demo's audit passed). It is called
#: before the event loop starts: what a command does before it returns its coroutine (checking
#: its input, asking the user to confirm) runs outside the loop, where Ctrl-C stops a prompt.
Command: TypeAlias = Callable[[argparse.Namespace, "Output"], Coroutine[Any, Any, bool]]


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``twilio-numbers`` with ``argv`` (default: ``sys.argv[1:]``); return the exit code.

    Never raises ``SystemExit``: the console script that installs it passes the return value
    to ``sys.exit()``, and ``python -m twilio_numbers_async`` does the same.
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        check(args)
    except SystemExit as stop:  # --help, --version, or a usage error argparse reported
        return stop.code if isinstance(stop.code, int) else ExitCode.BAD_INPUT
    if _EXTRA_MISSING:
        say(f"the command line needs rich; install it with: {_INSTALL}")
        return ExitCode.BAD_INPUT
    _configure_logging(verbose=args.verbose)
    return _run(args, argv)


def _run(args: argparse.Namespace, argv: Sequence[str]) -> int:
    out = Output(json_mode=args.json)
    try:
        ok = asyncio.run(_until_stopped(_command(args.command)(args, out)))
    except (Interrupted, KeyboardInterrupt) as exc:
        # KeyboardInterrupt: Ctrl-C before the loop ran, or where signals can't be handled.
        stop = exc if isinstance(exc, Interrupted) else Interrupted(signal.SIGINT)
        if args.command == "sandbox":
            return ExitCode.OK  # the way a sandbox is stopped
        return _fail(out, ExitCode.INTERRUPTED, _after(stop, args.command, argv))
    except (TwilioNumbersError, CsvError, JournalError, OSError, UsageError, CheckFailed) as exc:
        code, message = describe(exc)
        return _fail(out, code, message)
    return ExitCode.OK if ok else ExitCode.FAILED


async def _until_stopped(command: Coroutine[Any, Any, bool]) -> bool:
    """Run ``command``; Ctrl-C (SIGINT) or SIGTERM cancels it, ending in :class:`Interrupted`.

    The cancellation reaches the command first, so that it can stop cleanly and say what it
    did (bulk shows its summary); SIGTERM, which a process manager sends, is Ctrl-C's twin.
    """
    task = asyncio.current_task()
    assert task is not None  # noqa: S101 - asyncio.run runs this as its task
    loop = asyncio.get_running_loop()
    received: list[signal.Signals] = []

    def stop(signum: signal.Signals) -> None:
        received.append(signum)
        task.cancel()

    handled: list[signal.Signals] = []
    for signum in (signal.SIGINT, signal.SIGTERM):
        # Not on Windows, nor off the main thread: there Ctrl-C raises KeyboardInterrupt.
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signum, stop, signum)
            handled.append(signum)
    try:
        return await command
    except asyncio.CancelledError:
        if not received:
            raise
        while task.cancelling():  # every cancellation of this task was a signal's
            task.uncancel()
        raise Interrupted(received[0]) from None
    finally:
        for signum in handled:
            loop.remove_signal_handler(signum)


def _after(stop: Interrupted, command: str, argv: Sequence[str]) -> str:
    """What the user needs to know after ``command`` was interrupted."""
    if command == "bulk":
        resume = shlex.join([PROG, *argv])
        return f"{stop}; what was done is in the journal. To resume, run the same command: {resume}"
    if command == "release":
        return (
            f"{stop}; a number it released is released for good. To release the rest, run the "
            f"same command: {shlex.join([PROG, *argv])}"
        )
    if command == "buy":
        return (
            f"{stop}; if the purchase had been sent, the number may have been bought: check "
            "the account before buying it again"
        )
    return str(stop)


def _command(name: str) -> Command:
    module = importlib.import_module(f"{__package__}._{name}")
    command: Command = module.run
    return command


def _fail(out: Output, code: ExitCode, message: str) -> int:
    for line in message.splitlines():
        say(f"error: {line}")
    if out.json_mode and not out.printed_json:  # stdout holds exactly one JSON document
        out.json({"error": message, "exit_code": int(code)})
    return code


def _configure_logging(*, verbose: bool) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        stream=sys.stderr,
        format=f"{PROG}: %(levelname)s: %(message)s",
    )
