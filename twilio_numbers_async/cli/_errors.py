"""What ``twilio-numbers`` says on stderr and exits with: the one mapping of the errors a user
can meet to a message and an exit code."""

from __future__ import annotations

import enum
import errno
import signal
import sys
from typing import Final

from twilio_numbers_async.errors import (
    AuthenticationError,
    JournalError,
    RequestValidationError,
    TwilioNumbersError,
)

from ._csv import CsvError
from ._tally import one_line

__all__ = [
    "CREDENTIAL_VARIABLES",
    "PROG",
    "CheckFailed",
    "ExitCode",
    "Interrupted",
    "UsageError",
    "describe",
    "option",
    "os_error",
    "say",
]

PROG: Final = "twilio-numbers"
_IN_WORDS: Final = {
    errno.ENOENT: "no such file or folder",
    errno.EACCES: "permission denied",
    errno.EISDIR: "a folder, not a file",
    errno.ENOTDIR: "a part of the path is a file, not a folder",
    errno.ENOSPC: "the disk is full",
}

#: Where the credentials come from, for the messages about them.
CREDENTIAL_VARIABLES: Final = (
    "TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN (or TWILIO_API_KEY and TWILIO_API_SECRET)"
)


class ExitCode(enum.IntEnum):
    """What ``twilio-numbers`` exits with."""

    #: Everything bought; the demo's audit passed; the sandbox was stopped.
    OK = 0
    #: Some purchase failed or its outcome is unknown; or the demo's audit found a problem.
    FAILED = 1
    #: Bad input: an option, a request field, the CSV file, the credentials. Nothing was bought.
    BAD_INPUT = 2
    #: Interrupted by Ctrl-C or SIGTERM (128 + SIGINT, as shells report Ctrl-C).
    INTERRUPTED = 130


class Interrupted(Exception):  # noqa: N818 - no error: the user asked to stop
    """Ctrl-C (SIGINT) or SIGTERM stopped the command."""

    def __init__(self, signum: signal.Signals) -> None:
        self.signal = signum
        name = "Ctrl-C (SIGINT)" if signum is signal.SIGINT else signum.name
        super().__init__(f"interrupted by {name}")


class UsageError(Exception):
    """The command can't run as asked (missing credentials, a bad setting); nothing was done."""


class CheckFailed(Exception):  # noqa: N818 - named for what the user hears
    """A check before anything was sent could not be made (Twilio busy or unreachable): no bad
    input, and nothing was done; running again may succeed."""


def describe(exc: Exception) -> tuple[ExitCode, str]:
    """The exit code and message for an error a user can meet; anything else is a bug."""
    if isinstance(exc, AuthenticationError):
        return (
            ExitCode.BAD_INPUT,
            f"Twilio refused the credentials: {one_line(exc)}; check {CREDENTIAL_VARIABLES}",
        )
    if isinstance(exc, CheckFailed):
        return ExitCode.FAILED, f"{exc}; nothing was sent: run the same command again"
    if isinstance(exc, RequestValidationError):
        return ExitCode.BAD_INPUT, f"{option(exc.field)}: {exc.reason}"
    if isinstance(exc, CsvError):
        return ExitCode.BAD_INPUT, f"{exc}\nnothing was bought: fix the file and run again"
    if isinstance(exc, JournalError):  # before TwilioNumbersError: one raised before any purchase
        return ExitCode.BAD_INPUT, one_line(exc)
    if isinstance(exc, TwilioNumbersError):
        return ExitCode.FAILED, one_line(exc)
    if isinstance(exc, OSError):
        return ExitCode.BAD_INPUT, os_error(exc)
    return ExitCode.BAD_INPUT, one_line(exc)


def os_error(exc: OSError) -> str:
    """An operating system's error in words, naming the file: not ``[Errno 2] ...``."""
    what = _IN_WORDS.get(exc.errno or 0) or (exc.strerror or one_line(exc)).lower()
    return f"{exc.filename}: {what}" if exc.filename is not None else what


def option(field: str) -> str:
    """The command-line spelling of a request field, for error messages."""
    return "PHONE_NUMBER" if field == "phone_number" else "--" + field.replace("_", "-")


def say(line: str) -> None:
    """Tell the user ``line`` on stderr, where it never mixes with the output a script reads."""
    sys.stderr.write(f"{PROG}: {line}\n")
