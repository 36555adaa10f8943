"""The bulk purchase's journal: an append-only JSON Lines file that survives a crash.

Two kinds of record, one per line::

    {"v": 1, "kind": "intent",  "key": "...#0", "index": 3, "account": "AC...",
     "endpoint": "IncomingPhoneNumbers.json", "form": "AreaCode=415"}
    {"v": 1, "kind": "outcome", "key": "...#0", "index": 3, "status": "bought",
     "attempts": 1, "reconciled": false, "number": {...}, "error": null}

An intent is on disk before a request's first POST; an outcome is on disk before the caller
sees it. So after a crash, a key with an outcome is done (whatever the outcome, "unknown"
included: it is never sent again), and a key with only an intent was in flight and must be
reconciled, not repeated. The one exception is an outcome marked ``"resend": true``: a failure
Twilio certainly never processed (bad credentials, a 429 or a refused connection that outlasted
the retries, a given number looked up and not found), which a later run may try again: as new,
or, marked ``"in_doubt": true`` too (an attempt's outcome was unknown), as if still in flight.

A request's key is a hash of its account, endpoint and form, plus how many identical requests came
before it in the input: two identical ``area_code`` requests are two purchases, and reordering
the input does not change which requests are done.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import sys
from collections import Counter
from pathlib import Path
from typing import IO, Any, Final, Literal

import attrs

if sys.platform != "win32":
    import fcntl

from .errors import (
    AuthenticationError,
    JournalError,
    PurchaseOutcomeUnknownError,
    RateLimitedError,
    ResponseParseError,
    TransportError,
    TwilioApiError,
    TwilioNumbersError,
)

__all__ = ["Journal", "error_from_json", "error_to_json"]

logger = logging.getLogger("twilio_numbers_async")

_VERSION: Final = 1


@attrs.define
class _Entry:
    """What the index keeps per key: little, so that a long journal costs little memory."""

    #: Byte offset of the outcome record, or None while only the intent is known.
    outcome_at: int | None = None


class Journal:
    """An open journal; use :meth:`open`, and :meth:`close` when done.

    ``durable=True`` (the default) makes every record wait for ``fsync`` before the purchase
    goes on, so that a power cut loses no record either. Concurrent records share one
    ``fsync`` (group commit), run in a thread so the event loop never blocks on the disk.
    """

    def __init__(self, path: Path, file: IO[bytes], entries: dict[str, _Entry], *, durable: bool):
        self.path = path
        self._file = file
        self._entries = entries
        self._durable = durable
        self._seen: Counter[str] = Counter()
        self._written = 0
        self._synced = 0
        self._sync: asyncio.Task[None] | None = None
        #: Whether a torn last line (a crash mid-write) was found and cut off when opening.
        self.repaired = False

    @classmethod
    def open(cls, path: str | os.PathLike[str], *, durable: bool = True) -> Journal:
        """Open ``path`` for appending, reading what an earlier run recorded in it."""
        path = Path(path)
        file = path.open("a+b")
        try:
            _lock(file, path)
            entries, good_end, torn = _read_index(file, path)
            if torn:
                # Only the last line can be torn: the process died while writing it, so the
                # record never counted. Cut it off so the next record starts on its own line.
                logger.warning("journal %s: cut off a torn last line (%d bytes)", path, torn)
                file.truncate(good_end)
            file.seek(0, os.SEEK_END)
        except BaseException:
            file.close()
            raise
        journal = cls(path, file, entries, durable=durable)
        journal.repaired = bool(torn)
        return journal

    def key(self, account_sid: str, endpoint: str, form: bytes) -> str:
        """The key of the next request with this account, endpoint and form."""
        digest = hashlib.sha256(
            b"\n".join((account_sid.encode(), endpoint.encode(), form))
        ).hexdigest()[:32]
        occurrence = self._seen[digest]
        self._seen[digest] = occurrence + 1
        return f"{digest}#{occurrence}"

    def state(self, key: str) -> Literal["new", "in_flight", "done"]:
        """``done``: an outcome is recorded; ``in_flight``: only an intent; ``new``: nothing."""
        entry = self._entries.get(key)
        if entry is None:
            return "new"
        return "in_flight" if entry.outcome_at is None else "done"

    def recorded_outcome(self, key: str) -> dict[str, Any]:
        """The outcome record written for ``key`` (whose state is ``done``)."""
        entry = self._entries[key]
        assert entry.outcome_at is not None  # noqa: S101 - callers check state() first
        position = self._file.tell()
        try:
            self._file.seek(entry.outcome_at)
            record: dict[str, Any] = json.loads(self._file.readline())
        finally:
            self._file.seek(position)
        return record

    async def record_intent(
        self, key: str, *, index: int, account_sid: str, endpoint: str, form: bytes
    ) -> None:
        """Record, durably, that ``key`` is about to be sent for the first time."""
        self._entries.setdefault(key, _Entry())
        await self._append(
            {
                "kind": "intent",
                "key": key,
                "index": index,
                "account": account_sid,
                "endpoint": endpoint,
                "form": form.decode("ascii"),
            }
        )

    async def record_outcome(self, key: str, record: dict[str, Any]) -> None:
        """Record, durably, how ``key`` ended; ``record`` holds status, number, error... and
        ``resend``, true when a later run may send the request again."""
        offset = self._file.seek(0, os.SEEK_END)
        await self._append({"kind": "outcome", "key": key, **record})
        _settle(self._entries, key, record, offset)

    async def close(self) -> None:
        """Wait for any pending ``fsync`` and close the file. Idempotent."""
        if self._file.closed:
            return
        if self._sync is not None:
            await asyncio.shield(self._sync)
        self._file.close()

    async def _append(self, record: dict[str, Any]) -> None:
        line = json.dumps({"v": _VERSION, **record}, separators=(",", ":"), ensure_ascii=True)
        # One write of one whole line, flushed to the OS at once: a killed process loses at most
        # the line being written, and the next open cuts that off.
        self._file.write(line.encode("ascii") + b"\n")
        self._file.flush()
        self._written += 1
        if self._durable:
            await self._wait_synced(self._written)

    async def _wait_synced(self, generation: int) -> None:
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


def _settle(entries: dict[str, _Entry], key: str, record: dict[str, Any], offset: int) -> None:
    """Index an outcome record found at ``offset``."""
    if record.get("in_doubt"):
        # Sent again by the next run, but looked up first, as if it were still in flight.
        entries[key] = _Entry()
    elif record.get("resend"):
        # Never processed by Twilio: for the next run, as if it had never been tried.
        entries.pop(key, None)
    else:
        entries.setdefault(key, _Entry()).outcome_at = offset


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


def _read_index(file: IO[bytes], path: Path) -> tuple[dict[str, _Entry], int, int]:
    """Every key's state, the end of the last whole line, and the length of a torn tail."""
    entries: dict[str, _Entry] = {}
    file.seek(0)
    offset = 0
    for line_number, raw in enumerate(file, 1):
        try:
            if not raw.endswith(b"\n"):
                raise ValueError("no newline at the end")
            record = json.loads(raw)
            kind, key = record["kind"], record["key"]
            if record.get("v") != _VERSION or kind not in ("intent", "outcome"):
                raise ValueError(f"not a version-{_VERSION} journal record")
        except (ValueError, KeyError, TypeError) as exc:
            if file.read(1) == b"":  # the last line: a crash mid-write
                return entries, offset, len(raw)
            raise JournalError(
                f"{path}:{line_number} is not a journal record ({exc}); the journal is corrupt "
                "before its end, so it can't be trusted to say what was bought"
            ) from exc
        entries.setdefault(key, _Entry())
        if kind == "outcome":
            _settle(entries, key, record, offset)
        offset += len(raw)
    return entries, offset, 0


# --- errors as JSON ---------------------------------------------------------------------------

_API_ERRORS: Final[dict[str, type[TwilioApiError]]] = {
    cls.__name__: cls for cls in (TwilioApiError, AuthenticationError, RateLimitedError)
}


def error_to_json(error: BaseException) -> dict[str, Any]:
    """What an outcome's error says, as a JSON object that :func:`error_from_json` reads."""
    record: dict[str, Any] = {"type": type(error).__name__, "message": str(error)}
    if isinstance(error, TwilioApiError):
        record.update(
            status=error.status,
            code=error.code,
            twilio_message=error.message,
            more_info=error.more_info,
            request_id=error.request_id,
            method=error.method,
            url=error.url,
        )
        if isinstance(error, RateLimitedError):
            record["retry_after"] = error.retry_after
    elif isinstance(error, TransportError):
        record.update(method=error.method, url=error.url, sent=error.sent)
    elif isinstance(error, ResponseParseError):
        record.update(reason=error.reason, status=error.status, body=error.body, sid=error.sid)
    elif isinstance(error, PurchaseOutcomeUnknownError):
        record.update(account=error.account_sid, cause=error_to_json(error.cause))
    return record


def error_from_json(record: dict[str, Any], request: object) -> TwilioNumbersError:
    """The error an outcome record describes, rebuilt; ``request`` is the request it concerns."""
    kind = record.get("type")
    if kind in _API_ERRORS:
        extra = {"retry_after": record.get("retry_after")} if kind == "RateLimitedError" else {}
        return _API_ERRORS[kind](
            status=record["status"],
            code=record.get("code"),
            message=record.get("twilio_message") or "",
            more_info=record.get("more_info"),
            request_id=record.get("request_id"),
            method=record.get("method") or "",
            url=record.get("url") or "",
            **extra,
        )
    if kind == "TransportError":
        error = TransportError("", method=record["method"], url=record["url"], sent=record["sent"])
        error.args = (record["message"],)
        return error
    if kind == "ResponseParseError":
        return ResponseParseError(
            record["reason"], status=record["status"], body=record["body"], sid=record.get("sid")
        )
    if kind == "PurchaseOutcomeUnknownError":
        cause = error_from_json(record["cause"], request)
        return PurchaseOutcomeUnknownError(request, cause, account_sid=record["account"])
    return _RecordedError(f"{kind}: {record.get('message', '')}")


class _RecordedError(TwilioNumbersError):
    """An error of a kind this version can't rebuild, kept as its recorded message."""
