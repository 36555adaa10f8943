"""``twilio-numbers release``: give numbers back to Twilio, given by SID or every number a bulk
journal bought.

With ``--journal``, each release is recorded in a file of its own beside the journal
(:class:`ReleaseRecords`), so that the command can be run again: what is recorded is not sent
again, and what a stopped run left is released. Not in the journal itself: the journal is the
library's record of purchases, read strictly by every ``bulk`` rerun and by other versions of
the library, and its lock belongs to the run that buys.
"""

from __future__ import annotations

import asyncio
import errno
import json
import os
import time
from argparse import Namespace
from collections.abc import Coroutine, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, Final, Literal

import attrs

from twilio_numbers_async.bulk._journal import Journal
from twilio_numbers_async.client import TwilioNumbersClient
from twilio_numbers_async.errors import AuthenticationError, TwilioNumbersError

from ._console import Output
from ._errors import UsageError
from ._tally import brief, one_line
from ._twilio import GoAhead, check_credentials, connect

__all__ = ["ReleaseRecords", "records_path", "run"]

# Failures listed in a human summary; --json lists them all.
_ROWS_SHOWN: Final = 50

Status = Literal["released", "gone", "not_found", "earlier", "failed"]


@attrs.frozen
class _Number:
    """A number to release: its SID, its number if known, and the account that holds it
    (``None``: the client's own, or ``--account-sid``)."""

    sid: str
    phone_number: str | None = None
    account_sid: str | None = None


@attrs.frozen
class _Result:
    number: _Number
    status: Status
    message: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "sid": self.number.sid,
            "phone_number": self.number.phone_number,
            "status": self.status,
            "message": self.message,
        }


def records_path(journal: str | os.PathLike[str]) -> Path:
    """Where the releases of the numbers ``journal`` bought are recorded: beside it,
    ``buy.jsonl`` → ``buy.releases.jsonl``."""
    path = Path(journal)
    stem = path.stem if path.suffix == ".jsonl" else path.name
    return path.with_name(f"{stem}.releases.jsonl")


class ReleaseRecords:
    """The file of releases done for one journal: one JSON line per number released (or found
    already gone), appended and flushed as each answer comes.

    Not fsynced: a record lost in a power cut only means that the next run sends that DELETE
    again, which finds the number gone. Releasing is safe to repeat; the file saves the
    requests and says what was done.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        #: SID → whether it was released (``False``: it was already gone), as recorded.
        self.done: dict[str, bool] = _read_records(path)
        self._file: IO[str] | None = None

    def add(self, number: _Number, *, released: bool) -> None:
        """Record that ``number`` is released (or was gone), before it is reported."""
        if self._file is None:
            self._file = self.path.open("a", encoding="utf-8")
        line = {
            "sid": number.sid,
            "phone_number": number.phone_number,
            "account": number.account_sid,
            "released": released,
            "at": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        self._file.write(json.dumps(line, separators=(",", ":")) + "\n")
        self._file.flush()
        self.done[number.sid] = released

    def close(self) -> None:
        if self._file is not None:
            self._file.close()


def _read_records(path: Path) -> dict[str, bool]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    if text and not text.endswith("\n"):
        # A run killed while writing its last line: that release is not recorded, and the next
        # DELETE of it will find it gone. Cut the line off so that the next record starts clean.
        kept = text[: text.rfind("\n") + 1]
        path.write_text(kept, encoding="utf-8")
        text = kept
    done: dict[str, bool] = {}
    for number, line in enumerate(text.splitlines(), 1):
        try:
            record = json.loads(line)
            sid, released = record["sid"], record["released"]
        except (ValueError, TypeError, KeyError):
            sid = released = None
        if not (isinstance(sid, str) and sid.startswith("PN") and isinstance(released, bool)):
            raise UsageError(
                f"{path}:{number} is not a record of a release; it is where `release "
                "--journal` records what it released: move the file away if it is something else"
            )
        done[sid] = released
    return done


@attrs.define
class _Release:
    """One run of ``release``: what it was asked, and what it did."""

    args: Namespace
    out: Output
    #: Every number to release, those released by an earlier run included.
    numbers: list[_Number]
    records: ReleaseRecords | None = None
    #: Requests of the journal sent when their run stopped, without an outcome: a bulk rerun
    #: looks them up and settles them.
    in_flight: int = 0
    #: Requests of the journal whose outcome is unknown (maybe bought, no number to name): final
    #: in the journal, so only a look at the account settles them.
    unknown: int = 0
    #: The account of the numbers given by SID: ``--account-sid``, else the credentials'.
    account: str = ""
    results: list[_Result] = attrs.Factory(list)
    stopped: str | None = None
    elapsed: float = 0.0

    @property
    def to_release(self) -> list[_Number]:
        done = self.records.done if self.records is not None else {}
        return [number for number in self.numbers if number.sid not in done]

    async def release(self, client: TwilioNumbersClient | None) -> bool:
        """Release what is left, then show what was done: also when Ctrl-C or SIGTERM stops
        it (see ``_main``), before the cancellation goes on."""
        started = time.perf_counter()
        try:
            if client is not None:
                async with client:
                    await check_credentials(client, self.args.account_sid)
                    await self._release_all(client, self.to_release)
        except asyncio.CancelledError:
            self.stopped = "interrupted; run the same command to release the rest"
            self._report(time.perf_counter() - started)
            raise
        finally:
            if self.records is not None:
                self.records.close()
        self._report(time.perf_counter() - started)
        # Unknown outcomes do not fail the run: no rerun of anything settles them (they are
        # listed, to check on the account), and every number the journal names is released.
        return not (
            self.stopped or self.in_flight or self._count("failed") or self._count("not_found")
        )

    async def _release_all(self, client: TwilioNumbersClient, numbers: Iterable[_Number]) -> None:
        self.account = self.args.account_sid or client.account_sid
        pending = iter(numbers)

        async def worker() -> None:
            # Every worker takes from the one iterator: each number is released once.
            for number in pending:
                if self.stopped is not None:
                    return
                await self._release_one(client, number)

        try:
            async with asyncio.TaskGroup() as workers:
                for _ in range(self.args.concurrency):
                    workers.create_task(worker())
        except ExceptionGroup as failed:
            # The record could not be written (a full disk...): the first says what to fix.
            raise failed.exceptions[0] from None

    async def _release_one(self, client: TwilioNumbersClient, number: _Number) -> None:
        try:
            released = await client.release_incoming_phone_number(
                number.sid, account_sid=number.account_sid or self.args.account_sid
            )
        except TwilioNumbersError as error:
            self.results.append(_Result(number, "failed", brief(error)))
            if isinstance(error, AuthenticationError) and self.stopped is None:
                # The credentials stopped working: every other release would fail the same way.
                self.stopped = f"{one_line(error)}; fix it and run the same command again"
            return
        if self.records is not None:
            self.records.add(number, released=released)
        elif not released:
            # A SID given by hand and not on the account: maybe released before, maybe mistyped
            # or another account's (a subaccount's, without --account-sid), and still billed
            # there. Only a journal, which knows each number's account, makes a 404 "gone".
            self.results.append(_Result(number, "not_found", _not_found(self.account)))
            return
        self.results.append(_Result(number, "released" if released else "gone"))

    def _count(self, status: Status) -> int:
        return sum(result.status == status for result in self.results)

    def _earlier(self) -> list[_Result]:
        if self.records is None:
            return []
        done = self.records.done
        fresh = {result.number.sid for result in self.results}
        return [
            _Result(number, "earlier", "released" if done[number.sid] else "already gone")
            for number in self.numbers
            if number.sid in done and number.sid not in fresh
        ]

    def _report(self, elapsed: float) -> None:
        self.elapsed = elapsed
        earlier = self._earlier()
        if self.out.json_mode:
            self.out.json(
                {
                    "numbers": len(self.numbers),
                    "released": self._count("released"),
                    "already_gone": self._count("gone"),
                    "released_earlier": len(earlier),
                    "not_found": self._count("not_found"),
                    "failed": self._count("failed"),
                    "in_flight": self.in_flight,
                    "unknown": self.unknown,
                    "results": [result.to_json() for result in [*earlier, *self.results]],
                    "journal": self.args.journal,
                    "records": os.fspath(self.records.path) if self.records else None,
                    "stopped": self.stopped,
                    "elapsed_s": round(self.elapsed, 3),
                }
            )
            return
        self._show(earlier)

    def _show(self, earlier: list[_Result]) -> None:
        out, args = self.out, self.args
        source = f"bought by {args.journal}" if args.journal else "given"
        rows = [
            ("numbers", str(len(self.numbers)), source),
            ("released", str(self._count("released")), "by this run"),
        ]
        if self.records is not None:
            gone = ("already gone", str(self._count("gone")), "released before, not by this run")
            rows.append(gone)
            rows.append(("released earlier", str(len(earlier)), f"recorded in {self.records.path}"))
        else:
            not_found = self._count("not_found")
            rows.append(
                ("not found", str(not_found), _not_found(self.account) if not_found else "")
            )
        rows.append(("failed", str(self._count("failed")), "not released: run again"))
        if args.journal:
            rows.append(("in flight", str(self.in_flight), _IN_FLIGHT if self.in_flight else ""))
            rows.append(("unknown", str(self.unknown), _UNKNOWN if self.unknown else ""))
        rows.append(("elapsed", f"{self.elapsed:.2f} s", ""))
        out.table("Release", rows)
        if self.stopped is not None:
            out.line(f"Stopped: {self.stopped}.")
        failed = [r for r in self.results if r.status in ("failed", "not_found")]
        if failed:
            out.table(
                "Not released",
                [
                    (r.number.sid, r.number.phone_number or "", r.message)
                    for r in failed[:_ROWS_SHOWN]
                ],
                headers=("sid", "phone_number", "why"),
            )
            if len(failed) > _ROWS_SHOWN:
                out.line(f"... and {len(failed) - _ROWS_SHOWN} more: --json lists them all.")


_IN_FLIGHT: Final = (
    "sent when the bulk run stopped, not settled: rerun the bulk command (it looks them up), "
    "then this"
)
_UNKNOWN: Final = (
    "maybe bought, the journal can't say which number: no rerun settles them; check the "
    "account (Twilio's Console, see docs/bulk.md) and release what you find by SID"
)


def _not_found(account: str) -> str:
    return (
        f"not found on account {account}: released earlier, or not this account's (pass "
        "--account-sid for a subaccount's number)"
    )


def run(args: Namespace, out: Output) -> Coroutine[Any, Any, bool]:
    """Read what to release and get the go-ahead, before the event loop starts; then release
    it."""
    if args.journal is None:
        job = _Release(args, out, [_Number(sid) for sid in dict.fromkeys(args.sids)])
        action = f"release {_some(args.sids)}"
    else:
        job = _from_journal(args, out)
        action = f"release {len(job.to_release)} numbers that {args.journal} bought"
    if not job.to_release:
        return job.release(None)  # nothing to send: no client, no question
    client = connect(
        args,
        go_ahead=GoAhead(action, stakes="releases", risk="can't be undone"),
    )
    return job.release(client)


def _from_journal(args: Namespace, out: Output) -> _Release:
    path = Path(args.journal)
    if not path.is_file():
        # Journal.open would start a new, empty journal there.
        raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), args.journal)
    journal = Journal.open(path, durable=False)
    numbers: list[_Number] = []
    in_flight = unknown = 0
    try:
        for outcome in journal.outcomes():
            if outcome is None:
                in_flight += 1  # an intent and no outcome: the bulk rerun looks it up
            elif outcome.number is not None:
                number = outcome.number
                numbers.append(_Number(number.sid, number.phone_number, number.account_sid))
            elif outcome.status != "failed":
                # Unknown (or bought and unreadable): final in the journal, and it can't say
                # which number.
                unknown += 1
    finally:
        # Nothing was written to it: closing waits for no fsync, only for a loop to run in.
        asyncio.run(journal.close())
    return _Release(
        args,
        out,
        numbers,
        records=ReleaseRecords(records_path(path)),
        in_flight=in_flight,
        unknown=unknown,
    )


def _some(sids: list[str]) -> str:
    shown = ", ".join(sids[:3])
    return shown + (f" and {len(sids) - 3} more" if len(sids) > 3 else "")
