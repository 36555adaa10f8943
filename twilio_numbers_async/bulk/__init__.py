"""Buying many numbers: a streaming ``purchase_many`` that loses no result, and its outcomes.

``TwilioNumbersClient.purchase_many`` pulls requests lazily from any iterable or async iterable,
buys each through the client's purchase engine, and yields one :data:`PurchaseOutcome` per
request as each completes (``_run``). With a journal (``_journal``) a run that dies half way can
be run again with the same input: what is done is not sent again, and what was in flight is
reconciled rather than repeated.
"""

from __future__ import annotations

from ._outcomes import Bought, BulkProgress, NotBought, OutcomeStatus, PurchaseOutcome

__all__ = ["Bought", "BulkProgress", "NotBought", "OutcomeStatus", "PurchaseOutcome"]
