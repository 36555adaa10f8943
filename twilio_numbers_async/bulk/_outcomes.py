"""How each request of a bulk purchase ended, and the counters a progress display reads."""

from __future__ import annotations

import enum
from typing import Literal, TypeAlias

import attrs

from twilio_numbers_async.errors import PurchaseOutcomeUnknownError, TwilioNumbersError
from twilio_numbers_async.models import IncomingPhoneNumber, PurchaseRequest

__all__ = ["Bought", "BulkProgress", "NotBought", "OutcomeStatus", "PurchaseOutcome"]


class OutcomeStatus(enum.StrEnum):
    """Whether a request's number was bought, as far as anyone can know."""

    #: Bought: the outcome's ``number`` is what Twilio sold.
    BOUGHT = "bought"
    #: Certainly not bought: ``error`` says why.
    FAILED = "failed"
    #: Maybe bought, and it could not be checked: look at the account before buying again.
    UNKNOWN = "unknown"


@attrs.frozen(kw_only=True)
class _Outcome:
    #: The request's position in the input, from 0.
    index: int
    request: PurchaseRequest
    #: POSTs sent for it (0 when it was settled by a look-up alone; from the journal, the
    #: count the earlier run recorded).
    attempts: int = 0
    #: Whether this outcome was read from the journal of an earlier run rather than bought now.
    from_journal: bool = False


@attrs.frozen(kw_only=True)
class Bought(_Outcome):
    """A request whose number was bought: ``number`` is what Twilio sold."""

    number: IncomingPhoneNumber
    #: Whether the number was found on the account after an attempt of unknown outcome.
    reconciled: bool = False

    @property
    def ok(self) -> Literal[True]:
        """Always true: ``if outcome.ok:`` tells a type checker ``number`` is there."""
        return True

    @property
    def status(self) -> Literal[OutcomeStatus.BOUGHT]:
        return OutcomeStatus.BOUGHT

    @property
    def error(self) -> None:
        return None


@attrs.frozen(kw_only=True)
class NotBought(_Outcome):
    """A request with no number to show: refused (``status`` failed: ``error`` says why), or
    of unknown outcome (``status`` unknown: check the account before buying again)."""

    error: TwilioNumbersError

    @property
    def ok(self) -> Literal[False]:
        return False

    @property
    def status(self) -> Literal[OutcomeStatus.FAILED, OutcomeStatus.UNKNOWN]:
        if isinstance(self.error, PurchaseOutcomeUnknownError):
            return OutcomeStatus.UNKNOWN
        return OutcomeStatus.FAILED

    @property
    def number(self) -> None:
        return None

    @property
    def reconciled(self) -> Literal[False]:
        return False


#: How one request of a bulk purchase ended. ``outcome.ok`` (or ``match``) narrows it::
#:
#:     if outcome.ok:
#:         print(outcome.number.phone_number)
#:     else:
#:         print(outcome.status, outcome.error)
PurchaseOutcome: TypeAlias = Bought | NotBought


@attrs.define
class BulkProgress:
    """Counters a progress display can poll while ``purchase_many`` runs."""

    #: Requests taken from the input so far.
    started: int = 0
    #: Outcomes yielded so far, by status.
    bought: int = 0
    failed: int = 0
    unknown: int = 0
    #: Of the outcomes yielded, how many came from the journal of an earlier run.
    from_journal: int = 0
    #: The requests the client allows in flight now: its adaptive limit, as of the last outcome.
    concurrency: int = 0

    @property
    def done(self) -> int:
        """Outcomes yielded so far."""
        return self.bought + self.failed + self.unknown

    @property
    def in_flight(self) -> int:
        """Requests taken but not yet finished."""
        return self.started - self.done

    def count(self, outcome: PurchaseOutcome) -> None:
        """Add one outcome to the counters."""
        status = outcome.status
        if status is OutcomeStatus.BOUGHT:
            self.bought += 1
        elif status is OutcomeStatus.FAILED:
            self.failed += 1
        else:
            self.unknown += 1
        self.from_journal += outcome.from_journal
