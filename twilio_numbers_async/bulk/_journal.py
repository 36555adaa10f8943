"""The bulk purchase's journal: an append-only JSON Lines file that survives a crash.

Two kinds of record, one per line (their fields are ``_serde``'s ``IntentRecord`` and
``OutcomeRecord``)::

    {"v":1,"kind":"intent","key":"...#0","index":3,"account":"AC...",
     "endpoint":"IncomingPhoneNumbers.json","form":"AreaCode=415"}
    {"v":1,"kind":"outcome","key":"...#0","index":3,"status":"bought","attempts":1,
     "reconciled":false,"resend":false,"in_doubt":false,"number":{...},"error":null}

An intent is on disk before a request's first POST; an outcome is on disk before the caller
sees it. So after a crash, a key with an outcome is done (whatever the outcome, "unknown"
included: it is never sent again), and a key with only an intent was in flight and must be
reconciled, not repeated. The one exception is an outcome marked ``"resend": true``: a failure
Twilio certainly never processed (bad credentials, a 429 or a refused connection that outlasted
the retries, a given number looked up and not found, a request stopped before it was sent),
which a later run may try again: as new, or, marked ``"in_doubt": true`` too (an attempt's
outcome was unknown), as if still in flight.

Every record is read and checked when the journal opens, so that a journal that can't be
trusted stops a run before its first request, never in the middle of it.

A request's key is a hash of its account, endpoint and form, plus how many identical requests came
before it in the input: two identical ``area_code`` requests are two purchases, and reordering
the input does not change which requests are done.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Final, Literal

if sys.platform != "win32":
    import fcntl

from twilio_numbers_async._serde import (
    JOURNAL_LINE_START,
    ErrorRecord,
    IntentRecord,
    NewerRecordError,
    NotARecordError,
    OutcomeRecord,
    journal_line,
    read_journal_line,
)
from twilio_numbers_async.errors import JournalError

__all__ = ["Journal"]

logger = logging.getLogger("twilio_numbers_async")

#: In the index: a key whose intent is recorded and whose outcome is not (yet).
_IN_FLIGHT: Final = -1


class Journal:
    """An open journal; use :meth:`open`, and :meth:`close` when done.

    ``durable=True`` (the default) makes every record wait for ``fsync`` before the purchase
    goes on, so that a power cut loses no record either. Concurrent records share one
    ``fsync`` (group commit), run in a thread so the event loop never blocks on the disk.
    """

    def __init__(
        self,
        path: Path,
        file: IO[bytes],
        index: dict[str, int],
        intents: dict[str, int],
        *,
        durable: bool,
    ):
        self.path = path
        self._file = file
        #: Per key: the byte offset of its outcome record, or _IN_FLIGHT. Offsets rather than
        #: records, so that a long journal costs little memory.
        self._index = index
        #: Per key in flight: the byte offset of its last intent, which names what was being
        #: bought (for an area code, the candidate) when the run that wrote it stopped.
        self._intents = intents
        self._durable = durable
        self._occurrences: Counter[str] = Counter()
        #: Keys whose intent this run recorded over no earlier record, and that have no
        #: outcome yet: the ones that were sent by no one if this run did not send them.
        self._fresh: set[str] = set()
        self._written = 0
        self._synced = 0
        self._sync: asyncio.Task[None] | None = None
        #: Whether a torn last line (a crash mid-write) was found and cut off when opening.
        self.repaired = False

    @classmethod
    def open(cls, path: str | os.PathLike[str], *, durable: bool = True) -> Journal:
        """Open ``path`` for appending, reading and checking every record an earlier run wrote.

        Raises :class:`JournalError`, with nothing in the file changed, when a line is not
        one of our records, or is one that can't be read; a new or empty file starts a journal.
        """
        path = Path(path)
        file = path.open("a+b")
        try:
            _lock(file, path)
            index, intents, good_end, torn = _read_index(file, path)
            if torn:
                # Only the last line can be torn: the process died while writing it, so the
                # record never counted. Cut it off so the next record starts on its own line.
                logger.warning("journal %s: cut off a torn last line (%d bytes)", path, torn)
                file.truncate(good_end)
            file.seek(0, os.SEEK_END)
        except BaseException:
            file.close()
            raise
        journal = cls(path, file, index, intents, durable=durable)
        journal.repaired = bool(torn)
        return journal

    @staticmethod
    def key(account_sid: str, endpoint: str, form: bytes, occurrence: int) -> str:
        """The key of a request: ``occurrence`` is how many identical requests (same account,
        endpoint and form) came before it in the input."""
        return f"{_digest(account_sid, endpoint, form)}#{occurrence}"

    def next_occurrence(self, account_sid: str, endpoint: str, form: bytes) -> int:
        """Count one more request with this account, endpoint and form in this run's input,
        and say how many came before it: its ``occurrence`` for :meth:`key`."""
        digest = _digest(account_sid, endpoint, form)
        occurrence = self._occurrences[digest]
        self._occurrences[digest] = occurrence + 1
        return occurrence

    def state(self, key: str) -> Literal["new", "in_flight", "done"]:
        """``done``: an outcome is recorded; ``in_flight``: only an intent; ``new``: nothing."""
        offset = self._index.get(key)
        if offset is None:
            return "new"
        return "in_flight" if offset == _IN_FLIGHT else "done"

    def recorded_outcome(self, key: str) -> OutcomeRecord:
        """The outcome record written for ``key`` (whose state is ``done``)."""
        record = self._read_at(self._index[key])
        if not isinstance(record, OutcomeRecord):
            raise JournalError(f"{self.path}: the record for {key} is not an outcome")
        return record

    def recorded_intent(self, key: str) -> IntentRecord | None:
        """The last intent written for ``key``, if it is in flight: what it was sending."""
        offset = self._intents.get(key)
        if offset is None:
            return None
        record = self._read_at(offset)
        if not isinstance(record, IntentRecord):
            raise JournalError(f"{self.path}: the record for {key} is not an intent")
        return record

    def _read_at(self, offset: int) -> IntentRecord | OutcomeRecord:
        position = self._file.tell()
        try:
            self._file.seek(offset)
            line = self._file.readline()
        finally:
            self._file.seek(position)
        try:
            _, record = read_journal_line(line)
        except ValueError as exc:
            # It was read and checked when the journal opened: something else wrote to it.
            raise JournalError(
                f"{self.path}: the record at byte {offset} changed after the journal was "
                f"opened ({exc}); only one run at a time may use a journal"
            ) from exc
        return record

    async def record_intent(
        self, key: str, *, index: int, account_sid: str, endpoint: str, form: bytes
    ) -> None:
        """Record, durably, that ``key`` is about to be sent: for the first time, or for an
        area code, with a new candidate (the last intent is the one that counts).

        The line is written before the wait for its ``fsync``: a task cancelled while waiting
        leaves it recorded, for :meth:`record_not_sent` to settle.
        """
        if key not in self._index:
            self._fresh.add(key)
        self._index.setdefault(key, _IN_FLIGHT)
        record = IntentRecord(
            index=index, account=account_sid, endpoint=endpoint, form=form.decode("ascii")
        )
        self._intents[key] = self._file.seek(0, os.SEEK_END)
        await self._wait_synced(self._append(key, record))

    async def record_outcome(self, key: str, record: OutcomeRecord) -> None:
        """Record, durably, how ``key`` ended; ``record.resend`` is true when a later run may
        send the request again."""
        offset = self._file.seek(0, os.SEEK_END)
        generation = self._append(key, record)
        self._fresh.discard(key)
        _index_outcome(self._index, self._intents, key, record, offset)
        await self._wait_synced(generation)

    def record_not_sent(self, key: str, *, index: int, cause: BaseException) -> None:
        """Record that ``key``'s request was stopped before any byte of it was sent (``cause``
        says why), so that the next run sends it as new; synchronous, so that it completes
        in a task that is being cancelled.

        A key whose intent this run did not record (it was in flight when an earlier run
        died) is left as it is: in doubt, to be reconciled by the next run.

        Written and flushed to the OS, not fsynced: if a power cut loses it, the intent
        stands and the next run reconciles the request rather than sending it blindly, which
        is safe; :meth:`close` fsyncs it with whatever else is pending.
        """
        if key not in self._fresh:
            return
        self._fresh.discard(key)
        record = OutcomeRecord(
            index=index,
            status="failed",
            attempts=0,
            reconciled=False,
            resend=True,
            in_doubt=False,
            number=None,
            error=_not_sent(cause),
        )
        offset = self._file.seek(0, os.SEEK_END)
        self._append(key, record)
        _index_outcome(self._index, self._intents, key, record, offset)

    async def close(self) -> None:
        """Fsync what is not yet on disk (when durable) and close the file. Idempotent."""
        if self._file.closed:
            return
        if self._durable:
            await self._wait_synced(self._written)
        self._file.close()

    def _append(self, key: str, record: IntentRecord | OutcomeRecord) -> int:
        """Write one record and flush it to the OS; its generation, for :meth:`_wait_synced`."""
        # One write of one whole line, flushed at once: a killed process loses at most the
        # line being written, and the next open cuts that off.
        self._file.write(journal_line(key, record))
        self._file.flush()
        self._written += 1
        return self._written

    async def _wait_synced(self, generation: int) -> None:
        if not self._durable:
            return
        while self._synced < generation:
            if self._sync is None:
                self._sync = asyncio.ensure_future(self._fsync(self._written))
            # Shielded: a cancelled purchase must not cancel the fsync others are waiting on.
            await asyncio.shield(self._sync)

    async def _fsync(self, generation: int) -> None:
        try:
            await asyncio.to_thread(os.fsync, self._file.fileno())
            self._synced = max(self._synced, generation)
        finally:
            self._sync = None

    def outcomes(self) -> Iterator[OutcomeRecord | None]:
        """Read-only: the outcome recorded for each request of the journal, in the order the
        requests first appear in it, or ``None`` for one that is not settled (in flight when
        its run stopped, or to be looked up before it is sent again). A bought outcome's
        ``number`` is what that request bought."""
        for key, offset in list(self._index.items()):
            yield None if offset == _IN_FLIGHT else self.recorded_outcome(key)


def _digest(account_sid: str, endpoint: str, form: bytes) -> str:
    request = b"\n".join((account_sid.encode(), endpoint.encode(), form))
    return hashlib.sha256(request).hexdigest()[:32]


def _not_sent(cause: BaseException) -> ErrorRecord:
    detail = f" ({cause})" if str(cause) else ""
    return ErrorRecord(type=type(cause).__name__, message=f"stopped before it was sent{detail}")


def _index_outcome(
    index: dict[str, int], intents: dict[str, int], key: str, record: OutcomeRecord, offset: int
) -> None:
    """Index an outcome record found at ``offset``."""
    if record.in_doubt:
        # Sent again by the next run, but looked up first, as if it were still in flight: its
        # last intent still says what to look up.
        index[key] = _IN_FLIGHT
        return
    intents.pop(key, None)
    if record.resend:
        # Never processed by Twilio: for the next run, as if it had never been tried.
        index.pop(key, None)
    else:
        index[key] = offset


def _lock(file: IO[bytes], path: Path) -> None:
    """Hold an exclusive lock on the journal while it is open: two runs appending to one
    journal would each think the other's requests are new, and buy them again."""
    if sys.platform == "win32":  # pragma: no cover - no fcntl; the lock is advisory anyway
        return
    try:
        fcntl.flock(file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise JournalError(
            f"{path} is in use by another run; wait for it to finish (or stop it) before "
            "running again with the same journal"
        ) from None


def _read_index(file: IO[bytes], path: Path) -> tuple[dict[str, int], dict[str, int], int, int]:
    """Every key's state, the last intent of every key in flight, the end of the last whole
    line, and the length of a torn tail.

    Every line is read and checked; the file is not changed here.
    """
    index: dict[str, int] = {}
    intents: dict[str, int] = {}
    file.seek(0)
    offset = 0
    for number, line in enumerate(file, 1):
        if not line.endswith(b"\n") and _torn(line):  # only the last line lacks its newline
            return index, intents, offset, len(line)
        try:
            key, record = read_journal_line(line)
        except NewerRecordError as exc:
            raise JournalError(
                f"{path}:{number} was written by a newer twilio_numbers_async ({exc}): upgrade "
                "twilio_numbers_async to run with this journal"
            ) from exc
        except NotARecordError as exc:
            raise JournalError(
                f"{path}:{number} is not a journal record ({exc}); nothing in {path.name} was "
                "changed: if it is not a journal, pass a new path to start one"
            ) from exc
        except ValueError as exc:
            raise JournalError(
                f"{path}:{number} is a journal record that can't be read ({exc}); the journal "
                "can't be trusted to say what was bought, so nothing was sent: mend that line, "
                "or check the account before running with a new journal"
            ) from exc
        if isinstance(record, OutcomeRecord):
            _index_outcome(index, intents, key, record, offset)
        else:
            index.setdefault(key, _IN_FLIGHT)
            intents[key] = offset
        offset += len(line)
    return index, intents, offset, 0


def _torn(line: bytes) -> bool:
    """Whether a last line without its newline is a write cut short by a crash: the start of
    a record as we write them, or a filesystem's zero fill after a power cut."""
    return (
        line.startswith(JOURNAL_LINE_START)
        or JOURNAL_LINE_START.startswith(line)
        or not line.strip(b"\0")
    )
