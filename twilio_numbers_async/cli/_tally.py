"""Counting a bulk run's outcomes and retries, for its progress bar and its summary."""

from __future__ import annotations

from collections import Counter

import attrs

from twilio_numbers_async.bulk import BulkProgress, OutcomeStatus, PurchaseOutcome
from twilio_numbers_async.errors import RateLimitedError, TwilioApiError, TwilioNumbersError
from twilio_numbers_async.retry import RetryEvent

__all__ = ["Tally", "brief", "failure_reason", "one_line", "summary_rows"]


def failure_reason(error: TwilioNumbersError | None) -> str:
    """How failures are grouped: Twilio's error code where there is one, else the error type."""
    if isinstance(error, TwilioApiError):
        return str(error.code) if error.code is not None else f"HTTP {error.status}"
    return type(error).__name__


def one_line(error: BaseException) -> str:
    """The error's message on one line (a server's message may hold line breaks)."""
    return " ".join(str(error).split()) or type(error).__name__


def brief(error: TwilioNumbersError) -> str:
    """What went wrong, short enough for a table cell: Twilio's code and message, without the
    URL and request id that the full message carries."""
    if isinstance(error, TwilioApiError):
        return (
            f"{failure_reason(error)}: {error.message}" if error.message else failure_reason(error)
        )
    return one_line(error)


@attrs.define
class Tally:
    """What a run has done so far: outcomes by status, failures by reason, retries and 429s.

    Give :attr:`progress` to ``purchase_many(progress=...)``, which keeps it, feed every outcome
    to :meth:`add`, and give :meth:`on_retry` to the client as its ``on_retry`` hook.
    """

    #: Taken, bought, failed, unknown, and how many came from a journal: kept by purchase_many.
    progress: BulkProgress = attrs.Factory(BulkProgress)
    #: Failed outcomes by :func:`failure_reason`.
    failed_by_reason: Counter[str] = attrs.Factory(Counter)
    #: Per reason, what the first failure of that reason said (its hint where it has one).
    explanations: dict[str, str] = attrs.Factory(dict)
    #: Outcomes bought by finding the number on the account after an unknown outcome.
    reconciled: int = 0
    #: Waits before another attempt, of purchases and look-ups alike.
    retries: int = 0
    #: Of those, the ones after a 429 (each honoured: the whole client paused).
    rate_limited: int = 0

    def add(self, outcome: PurchaseOutcome) -> None:
        """Count one outcome (``progress`` has counted it already)."""
        self.reconciled += outcome.reconciled
        if outcome.status is OutcomeStatus.FAILED:
            reason = failure_reason(outcome.error)
            self.failed_by_reason[reason] += 1
            if reason not in self.explanations and outcome.error is not None:
                self.explanations[reason] = _explain(outcome.error)

    def on_retry(self, event: RetryEvent) -> None:
        """The client's ``on_retry`` hook."""
        self.retries += 1
        self.rate_limited += isinstance(event.error, RateLimitedError)


def _explain(error: TwilioNumbersError) -> str:
    if isinstance(error, TwilioApiError):
        return error.hint or error.message or f"HTTP {error.status}"
    return one_line(error)


def summary_rows(tally: Tally, *, unknown: str) -> list[tuple[str, str, str]]:
    """The rows of a summary table that demo and bulk share: outcomes, failures by reason,
    retries; ``unknown`` explains the unknown outcomes, when there are some."""
    progress = tally.progress
    reconciled = f"{tally.reconciled} reconciled: found on the account after a lost answer"
    return [
        ("bought", str(progress.bought), reconciled if tally.reconciled else ""),
        ("failed", str(progress.failed), "by reason:" if progress.failed else ""),
        *(
            (f"  {reason}", str(count), tally.explanations.get(reason, ""))
            for reason, count in tally.failed_by_reason.most_common()
        ),
        ("unknown", str(progress.unknown), unknown if progress.unknown else ""),
        ("retries", str(tally.retries), "of purchases and look-ups"),
        (
            "429s",
            str(tally.rate_limited),
            "answered by the concurrency limit (with a Retry-After: the whole client paused)",
        ),
        ("concurrency", str(progress.concurrency), "in flight at most at the end: the limit found"),
    ]
