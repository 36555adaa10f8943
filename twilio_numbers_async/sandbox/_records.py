"""What the sandbox saw and did: one record per request, one per committed purchase or release.

These are the evidence a test or the demo checks a client against: no number bought twice,
none bought without the caller knowing (a purchase whose ``fault`` hid the answer).
"""

from __future__ import annotations

import attrs

__all__ = ["PurchaseRecord", "ReleaseRecord", "RequestRecord"]


@attrs.frozen(kw_only=True)
class PurchaseRecord:
    """One committed purchase, in commit order.

    ``endpoint`` is ``"IncomingPhoneNumbers.json"`` or ``"IncomingPhoneNumbers/Mobile.json"``;
    ``form`` is the form as sent (unknown keys too); ``fault`` names the fault applied to the
    request (``"drop_after_commit"``...), ``None`` when its 201 went out normally.
    """

    sid: str
    phone_number: str
    account_sid: str
    endpoint: str
    form: dict[str, str] = attrs.field(hash=False)
    friendly_name: str
    request_id: str
    fault: str | None = None


@attrs.frozen(kw_only=True)
class ReleaseRecord:
    """One committed release (a ``DELETE`` of a number), in commit order.

    ``fault`` names the fault applied to the request (``"drop_after_commit"``...), ``None``
    when its 204 went out normally.
    """

    sid: str
    phone_number: str
    account_sid: str
    request_id: str
    fault: str | None = None


@attrs.frozen(kw_only=True)
class RequestRecord:
    """One request, in arrival order.

    ``account_sid`` is the account the path names (``None`` if it names none); ``form`` the
    POSTed form, ``query`` the query string (first value of each key). ``status`` is the status
    answered, ``None`` when no answer was sent (the connection was dropped, or the request is
    still in flight: then ``finished_at`` is ``None`` too). Times are the event loop's clock.
    ``concurrent`` is what its ``Twilio-Concurrent-Requests`` header said: the requests in
    flight when it arrived, itself included.
    """

    method: str
    path: str
    account_sid: str | None
    form: dict[str, str] = attrs.field(hash=False)
    query: dict[str, str] = attrs.field(hash=False)
    status: int | None
    fault: str | None
    request_id: str
    started_at: float
    finished_at: float | None
    concurrent: int = 0
