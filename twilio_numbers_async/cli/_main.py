"""Running ``twilio-numbers``: parse the command line, run one command, and turn what it
raises into a message and an exit code (:mod:`._errors`), in this one place.

Each command is a module of its own (``_demo``, ``_buy``, ``_bulk``, ``_sandbox``) with a
``run`` function, imported only when it is the one asked for: ``buy`` and ``bulk`` never load
the sandbox, nor aiohttp's server code.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import logging
import sys
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, Final, TypeAlias

from twilio_numbers_async._journal import JournalError
from twilio_numbers_async.errors import TwilioNumbersError

from ._csv import CsvError
from ._errors import PROG, ExitCode, UsageError, describe, say
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
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        check(parser, args)
    except SystemExit as stop:  # --help, --version, or a usage error argparse reported
        return stop.code if isinstance(stop.code, int) else ExitCode.BAD_INPUT
    if _EXTRA_MISSING:
        say(f"the command line needs rich; install it with: {_INSTALL}")
        return ExitCode.BAD_INPUT
    _configure_logging(verbose=args.verbose)
    return _run(args)


def _run(args: argparse.Namespace) -> int:
    out = Output(json_mode=args.json)
    try:
        ok = asyncio.run(_command(args.command)(args, out))
    except KeyboardInterrupt:
        resume = "; run the same command again to resume" if args.command == "bulk" else ""
        return _fail(out, ExitCode.INTERRUPTED, f"interrupted{resume}")
    except (TwilioNumbersError, CsvError, JournalError, OSError, UsageError) as exc:
        code, message = describe(exc)
        return _fail(out, code, message)
    return ExitCode.OK if ok else ExitCode.FAILED


def _command(name: str) -> Command:
    module = importlib.import_module(f"{__package__}._{name}")
    command: Command = module.run
    return command


def _fail(out: Output, code: ExitCode, message: str) -> int:
    for line in message.splitlines():
        say(f"error: {line}")
    if out.json_mode:  # stdout still holds exactly one JSON document
        out.json({"error": message, "exit_code": int(code)})
    return code


def _configure_logging(*, verbose: bool) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        stream=sys.stderr,
        format=f"{PROG}: %(levelname)s: %(message)s",
    )
