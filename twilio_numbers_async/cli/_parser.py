"""The ``twilio-numbers`` argument parser: its commands, their options, and the checks of
what argparse can't say alone. Every error here is a usage error (exit 2, nothing done)."""

from __future__ import annotations

import argparse
import math
import sys
import textwrap
from collections.abc import Callable
from typing import TYPE_CHECKING, Final, NoReturn, TypeAlias

import attrs

from twilio_numbers_async._checks import check_sid, is_loopback_host
from twilio_numbers_async._version import VERSION
from twilio_numbers_async.errors import RequestValidationError

from ._audit import MAX_COUNT
from ._csv import columns
from ._errors import PROG, ExitCode
from ._fields import RequestField, optional_fields
from ._results import COLUMNS

if TYPE_CHECKING:
    from twilio_numbers_async.sandbox import Faults

__all__ = ["build_parser", "check"]

_Commands: TypeAlias = "argparse._SubParsersAction[_Parser]"

#: TwilioNumbersClient's ``area_codes``, and ``search_available_phone_numbers``'s ``kind``:
#: spelled here so that ``--help`` loads no more of the library than it needs.
_AREA_CODES: Final = ("search", "direct")
#: The demo sandbox's concurrency limit: a real account's is not published; the client finds it.
_DEMO_ACCOUNT_LIMIT: Final = 20
_KINDS: Final = ("local", "mobile", "toll_free")


_EXIT_CODES: Final = """\
exit codes:
  0    everything bought (demo: the audit passed; search: it ran; release: every number
       given or in the journal released or already gone, the journal's unknown outcomes
       listed to check on the account; sandbox: stopped)
  1    some purchase failed or its outcome is unknown (demo: the audit failed; release: some
       release failed, a SID given was not found on the account, or the journal holds
       requests in flight: rerun bulk, then release), or a bulk run stopped part way after
       buying: rerun the same command to resume; or the credentials could not be checked
       (a 429, a 5xx, no answer) before anything was sent
  2    bad input, nothing bought: an option, a request field, the CSV file, the journal,
       missing credentials, credentials Twilio refused (HTTP 401) or an account it does
       not know (HTTP 404) before any purchase, or no go-ahead to buy away from this
       machine (see --yes)
  130  interrupted (Ctrl-C or SIGTERM); bulk shows what it did, and the same command
       resumes from its journal
"""

_CREDENTIALS: Final = """\
credentials come from the environment: TWILIO_ACCOUNT_SID with TWILIO_AUTH_TOKEN (or
TWILIO_API_KEY and TWILIO_API_SECRET), and TWILIO_EDGE / TWILIO_REGION if you use them.
Requests go to --base-url, else TWILIO_BASE_URL, else Twilio; stderr says where. Before
buying or releasing anywhere but on this machine, the command asks (or wants --yes).
"""


# --- the parser ------------------------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    """An argument parser whose usage errors take one line: ``buy``'s usage alone is 20."""

    def error(self, message: str) -> NoReturn:
        _usage_error(self.prog, message)


def _usage_error(prog: str, message: str) -> NoReturn:
    sys.stderr.write(f"{prog}: error: {message} (see {prog} --help)\n")
    raise SystemExit(ExitCode.BAD_INPUT)


def build_parser() -> argparse.ArgumentParser:
    """The ``twilio-numbers`` argument parser."""
    parser = _Parser(
        prog=PROG,
        description=("Buy Twilio phone numbers, without ever buying one twice."),
        epilog=_EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {VERSION}")
    verbose = "log retries and look-ups to stderr"
    parser.add_argument("-v", "--verbose", action="store_true", help=verbose)
    # Also after the command. SUPPRESS: a command's default would undo a -v given before it.
    common = _Parser(add_help=False)
    common.add_argument(
        "-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help=verbose
    )
    commands = parser.add_subparsers(title="commands", dest="command", required=True)
    for add in (_add_demo, _add_buy, _add_bulk, _add_search, _add_release, _add_sandbox):
        add(commands, common)
    return parser


def _subparser(
    commands: _Commands,
    common: _Parser,
    name: str,
    *,
    summary: str,
    description: str,
    epilog: str = _EXIT_CODES,
) -> argparse.ArgumentParser:
    return commands.add_parser(
        name,
        help=summary,
        description=description,
        epilog=epilog,
        parents=[common],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def _add_json(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--json",
        action="store_true",
        help="print one JSON object on stdout instead of tables (errors go to stderr too)",
    )


def _add_demo(
    commands: _Commands,
    common: _Parser,
) -> None:
    parser = _subparser(
        commands,
        common,
        "demo",
        summary="buy numbers from a local sandbox with faults on, and prove none was bought twice",
        description=(
            "Start a sandbox (a fake Twilio) in this process, buy --count numbers from it in "
            "bulk while it injects faults (429s, 5xx, dropped connections, answers lost after "
            "the purchase), then audit its records: no number bought twice, none bought without "
            "the client knowing, none reported bought that was not. Some purchases fail by "
            "design (area code 533 has no numbers, +15005550000 is never available). No "
            "credentials needed, nothing leaves this machine."
        ),
    )
    parser.add_argument(
        "--count",
        type=_int_between(1, MAX_COUNT),
        default=300,
        help="numbers to buy (default: %(default)s)",
    )
    parser.add_argument(
        "--faults",
        type=_faults,
        default="demo",
        metavar="SPEC",
        help="'demo' (a few percent of each fault), 'none', or a list such as "
        "'rate_limited=0.05,drop_after_commit=0.02,latency=0.001:0.005' (default: demo)",
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="seed of the faults and numbers (default: 0)"
    )
    _add_concurrency(parser, None, "purchases")
    parser.add_argument(
        "--account-limit",
        type=_int_between(1, 1000),
        default=_DEMO_ACCOUNT_LIMIT,
        metavar="K",
        help="requests the sandbox's account takes at once, beyond which it answers 429 "
        "(20429): the client finds K by itself (default: %(default)s)",
    )
    parser.add_argument(
        "--rate",
        type=_rate,
        default=None,
        metavar="R",
        help="at most R requests per second, retries included (default: no limit)",
    )
    _add_area_codes(parser)
    _add_json(parser)


def _add_buy(
    commands: _Commands,
    common: _Parser,
) -> None:
    parser = _subparser(
        commands,
        common,
        "buy",
        summary="buy one number",
        description=(
            "Buy one number: a given PHONE_NUMBER, or any number in --area-code. A lost answer "
            "is checked on the account before any retry, so the number is never bought twice."
        ),
        epilog=f"{_CREDENTIALS}\nexamples:\n  {PROG} buy +14155550100 --sms-url "
        f"https://example.com/sms\n  {PROG} buy --area-code 415 --friendly-name support\n"
        f"  {PROG} buy --mobile +447700900123\n\n{_EXIT_CODES}",
    )
    parser.add_argument(
        "phone_number",
        nargs="?",
        metavar="PHONE_NUMBER",
        help="the E.164 number to buy, such as +14155550100",
    )
    parser.add_argument(
        "--area-code", metavar="CODE", help="buy any number in this US or Canada area code"
    )
    parser.add_argument(
        "--mobile",
        action="store_true",
        help="buy PHONE_NUMBER on Twilio's Mobile endpoint (needed for mobile numbers)",
    )
    _add_area_codes(parser)
    _add_twilio_options(parser)
    _add_json(parser)
    fields = parser.add_argument_group(
        "request fields", "optional; Twilio's defaults apply to the ones not given"
    )
    for field in optional_fields():
        _add_field_option(fields, field)


def _add_field_option(group: argparse._ArgumentGroup, field: RequestField) -> None:
    if field.kind == "bool":
        group.add_argument(
            field.option, action=argparse.BooleanOptionalAction, default=None, help=field.help
        )
    else:
        group.add_argument(
            field.option,
            metavar=field.metavar,
            type=_one_of(field.choices) if field.choices else str,
            help=field.help,
        )


def _add_concurrency(parser: argparse.ArgumentParser, default: int | None, what: str) -> None:
    shown = (
        "%(default)s"
        if default is not None
        else "as many as the account allows: the client finds its limit"
    )
    parser.add_argument(
        "--concurrency",
        type=_int_between(1, 1000),
        default=default,
        help=f"{what} in flight at once, at most (default: {shown})",
    )


def _add_area_codes(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--area-codes",
        type=_one_of(_AREA_CODES),
        default="search",
        metavar="|".join(_AREA_CODES),
        help="how an area code is bought: 'search' finds a number for sale and buys it as a "
        "given number, so that a lost answer is looked up (the default); 'direct' POSTs the "
        "area code, and a lost answer stays unknown",
    )


def _add_account_and_base_url(
    parser: argparse.ArgumentParser,
    *,
    account: str = "act on this subaccount (AC...) of the credentials' account",
) -> None:
    parser.add_argument("--account-sid", metavar="SID", help=account)
    parser.add_argument(
        "--base-url",
        metavar="URL",
        help="send requests here instead of Twilio, such as to a sandbox or a proxy (plain "
        "http only to loopback; default: $TWILIO_BASE_URL, else https://api.twilio.com)",
    )


def _add_twilio_options(parser: argparse.ArgumentParser) -> None:
    _add_account_and_base_url(
        parser, account="buy on this subaccount (AC...) of the credentials' account"
    )
    parser.add_argument(
        "-y",
        "--yes",
        action="store_true",
        help="buy without asking first; needed to buy anywhere but on this machine when "
        "stdin is not a terminal",
    )


def _add_bulk(
    commands: _Commands,
    common: _Parser,
) -> None:
    parser = _subparser(
        commands,
        common,
        "bulk",
        summary="buy every row of a CSV file, resumably",
        description=(
            "Buy one number per row of FILE. Every row is checked before anything is bought. "
            "Each outcome is written to the --journal before it is shown, so running the same "
            "command again resumes: what is done is reported from the journal and never sent "
            "again. Rows whose outcome is unknown are listed: check the account before buying "
            "them some other way."
        ),
        epilog=f"CSV columns (header row first; an empty cell is 'not set'):\n"
        f"{textwrap.fill(', '.join(columns()), 80, initial_indent='  ', subsequent_indent='  ')}"
        "\n  phone_number or area_code in each row; mobile and voice_caller_id_lookup take "
        f"true/false.\n\n{_CREDENTIALS}\n{_EXIT_CODES}",
    )
    parser.add_argument("file", metavar="FILE.csv", help="the requests, one per row")
    parser.add_argument(
        "--journal",
        metavar="FILE.jsonl",
        required=True,
        help="the journal to write and to resume from (created if missing)",
    )
    parser.add_argument(
        "--output",
        metavar="RESULTS.csv",
        help="write one line per row as it completes: "
        + ",".join(COLUMNS)
        + " (a run stopped part way leaves the rows it finished)",
    )
    parser.add_argument(
        "--rate",
        type=_rate,
        default=None,
        metavar="R",
        help="at most R requests per second, retries included (default: no limit, the "
        "account's concurrency limit, found by the client, sets the pace)",
    )
    _add_concurrency(parser, None, "purchases")
    _add_area_codes(parser)
    _add_twilio_options(parser)
    _add_json(parser)


def _add_search(
    commands: _Commands,
    common: _Parser,
) -> None:
    parser = _subparser(
        commands,
        common,
        "search",
        summary="list numbers for sale",
        description=(
            "List numbers for sale: Twilio's AvailablePhoneNumbers search, filtered as Twilio "
            "filters it. It buys nothing; buy one with `buy PHONE_NUMBER`, or any number in an "
            "area code with `buy --area-code`, which searches by itself."
        ),
        epilog=f"{_CREDENTIALS}\nexamples:\n  {PROG} search --area-code 415\n"
        f"  {PROG} search --area-code 604 --contains 555 --sms --json\n"
        f"  {PROG} search --country GB --kind mobile --limit 5\n\n{_EXIT_CODES}",
    )
    parser.add_argument(
        "--area-code",
        metavar="CODE",
        help="only numbers in this area code (US and Canada); its country is the default",
    )
    parser.add_argument(
        "--country",
        metavar="CC",
        help="the ISO country code, such as US, CA or GB (default: the area code's, else US)",
    )
    parser.add_argument(
        "--kind",
        type=_one_of(_KINDS),
        default="local",
        metavar="|".join(_KINDS),
        help="which list to search (default: %(default)s)",
    )
    parser.add_argument(
        "--contains",
        metavar="PATTERN",
        help="only numbers that match Twilio's pattern: digits or letters, '*' for any one",
    )
    for capability in ("sms", "mms", "voice"):
        parser.add_argument(
            f"--{capability}",
            action="store_true",
            help=f"only numbers that can take {capability.upper()}"
            if capability != "voice"
            else "only numbers that can take calls",
        )
    parser.add_argument(
        "--limit",
        type=_int_between(1, 1000),
        default=None,
        metavar="N",
        help="at most N numbers (default: Twilio's page, 50)",
    )
    _add_account_and_base_url(
        parser, account="search as this subaccount (AC...) of the credentials' account"
    )
    _add_json(parser)


def _add_release(
    commands: _Commands,
    common: _Parser,
) -> None:
    parser = _subparser(
        commands,
        common,
        "release",
        summary="release numbers: given SIDs, or every number a bulk journal bought",
        description=(
            "Release numbers from the account: Twilio stops billing them and may sell them "
            "again, so this can't be undone. Give their SIDs (PN...), or --journal to release "
            "every number that a bulk run with that journal bought. With --journal, each "
            "release is recorded in a file beside it (FILE.releases.jsonl), so running the "
            "same command again releases nothing twice and finishes what a stopped run left."
        ),
        epilog=f"{_CREDENTIALS}\nexamples:\n  {PROG} release PN0123456789abcdef0123456789abcdef\n"
        f"  {PROG} release --journal numbers.jsonl --yes\n\n{_EXIT_CODES}",
    )
    parser.add_argument(
        "sids", nargs="*", metavar="SID", help="the SIDs (PN...) of the numbers to release"
    )
    parser.add_argument(
        "--journal",
        metavar="FILE.jsonl",
        help="release every number that this bulk journal bought",
    )
    _add_concurrency(parser, 8, "releases")
    _add_account_and_base_url(
        parser,
        account="release on this subaccount (AC...) of the "
        "credentials' account (with --journal: each number's own)",
    )
    parser.add_argument(
        "-y",
        "--yes",
        action="store_true",
        help="release without asking first; needed to release anywhere but on this machine "
        "when stdin is not a terminal",
    )
    _add_json(parser)


def _add_sandbox(
    commands: _Commands,
    common: _Parser,
) -> None:
    parser = _subparser(
        commands,
        common,
        "sandbox",
        summary="serve a fake Twilio on loopback for other programs",
        description=(
            "Serve a sandbox, a fake Twilio that sells numbers the way Twilio does, until "
            "Ctrl-C or SIGTERM. It prints its URL and the account SID and auth token to use: "
            "these are test values the sandbox made up (or that you gave it), not Twilio "
            "secrets."
        ),
    )
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default: %(default)s)"
    )
    parser.add_argument(
        "--port",
        type=_int_between(0, 65535),
        default=8080,
        help="port to listen on; 0 picks a free one (default: %(default)s)",
    )
    parser.add_argument(
        "--allow-remote",
        action="store_true",
        help="allow a --host other machines can reach. The sandbox speaks plain http and "
        "sells to anyone holding the credentials it prints, so by default it only listens "
        "on loopback",
    )
    parser.add_argument(
        "--faults",
        type=_faults,
        default="none",
        metavar="SPEC",
        help="faults to inject: 'none', 'demo', or a list as for demo (default: none)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of everything random")
    parser.add_argument(
        "--max-concurrency",
        type=_int_between(1, 1_000_000),
        default=None,
        metavar="N",
        help="answer 429 to requests beyond N in flight (default: no limit)",
    )
    parser.add_argument("--account-sid", metavar="SID", help="the account SID to accept")
    parser.add_argument("--auth-token", metavar="TOKEN", help="the auth token to accept")
    parser.set_defaults(json=False)


def check(args: argparse.Namespace) -> None:
    """What argparse can't say alone; a usage error (``SystemExit``, exit 2) as argparse's."""
    prog = f"{PROG} {args.command}"
    if args.command == "buy":
        if args.phone_number is not None and args.area_code is not None:
            _usage_error(prog, "give a PHONE_NUMBER or --area-code, not both")
        if args.phone_number is None and args.area_code is None:
            _usage_error(prog, "give a PHONE_NUMBER, or --area-code for any number in one")
        if args.mobile and args.area_code is not None:
            _usage_error(prog, "--mobile buys a given PHONE_NUMBER; it takes no --area-code")
    if args.command == "release":
        if bool(args.sids) == (args.journal is not None):
            _usage_error(prog, "give the SIDs of the numbers to release, or --journal, not both")
        for sid in args.sids:
            try:
                check_sid("SID", sid, "PN")
            except RequestValidationError as exc:
                _usage_error(prog, exc.reason)
    if args.command == "sandbox" and not args.allow_remote and not is_loopback_host(args.host):
        _usage_error(
            prog,
            f"--host {args.host!r} is reachable from other machines, and the sandbox speaks "
            "plain http with credentials it prints; add --allow-remote if you mean it",
        )


# --- option types: each raises ArgumentTypeError, which argparse reports with the option ----


def _int_between(low: int, high: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{value} is not between {low} and {high}")
        return value

    return parse


def _one_of(choices: tuple[str, ...]) -> Callable[[str], str]:
    # Not argparse's choices=, which would print the whole usage and quote every choice.
    def parse(text: str) -> str:
        if text not in choices:
            raise argparse.ArgumentTypeError(f"{text!r} is not one of {' or '.join(choices)}")
        return text

    return parse


def _rate(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a rate: give 0 or more per second")
    return value or None


def _faults(text: str) -> tuple[str, Faults]:
    # Imported here, where demo and sandbox parse --faults: the other commands never load the
    # sandbox (aiohttp's server code).
    from twilio_numbers_async.sandbox import Faults  # noqa: PLC0415

    try:
        return text, Faults.parse(text)
    except ValueError as exc:
        names = [field.name for field in attrs.fields(Faults)]
        message = str(exc)
        if not all(name in message for name in names):
            message += f"; give demo, none, or name=value pairs, the names: {', '.join(names)}"
        raise argparse.ArgumentTypeError(message) from None
