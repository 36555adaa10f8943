"""The IncomingPhoneNumber resource a purchase creates, shaped exactly as the spec's response.

Every property of ``api.v2010.account.incoming_phone_number`` is present, in the spec's order.
Unset SIDs and URLs are JSON ``null``: Twilio itself sends ``""`` for some, but ``""`` breaks
the spec's ``pattern`` and ``format: uri``, and the sandbox's answers must validate. Enums
hold valid members (their documented defaults), and every key the form sent is echoed in its
snake_case property (``SmsUrl`` → ``sms_url``).
"""

from __future__ import annotations

import functools
import re
import time
from collections.abc import Mapping
from typing import Any, Final

from ._form import GENERIC_RULES, Value
from ._numbers import friendly_name, number_kind

__all__ = [
    "API_VERSION",
    "build_resource",
    "for_response",
    "number_type",
    "rfc2822",
    "snake_case",
]

API_VERSION: Final = "2010-04-01"
_DAYS: Final = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS: Final = (
    "Jan",
    "Feb",
    "Mar",
    "Apr",
    "May",
    "Jun",
    "Jul",
    "Aug",
    "Sep",
    "Oct",
    "Nov",
    "Dec",
)

# Every property in the spec's order, with what an unset one holds. The enums carry their
# documented defaults: the spec gives them no "nullable", so null would not validate.
_TEMPLATE: Final[Mapping[str, Any]] = {
    "account_sid": None,
    "address_sid": None,
    "address_requirements": "none",
    "api_version": API_VERSION,
    "beta": False,
    "capabilities": None,
    "date_created": None,
    "date_updated": None,
    "friendly_name": None,
    "identity_sid": None,
    "phone_number": None,
    "origin": "twilio",
    "sid": None,
    "sms_application_sid": None,
    "sms_fallback_method": "POST",
    "sms_fallback_url": None,
    "sms_method": "POST",
    "sms_url": None,
    "status_callback": None,
    "status_callback_method": "POST",
    "trunk_sid": None,
    "uri": None,
    "voice_receive_mode": "voice",
    "voice_application_sid": None,
    "voice_caller_id_lookup": False,
    "voice_fallback_method": "POST",
    "voice_fallback_url": None,
    "voice_method": "POST",
    "voice_url": None,
    "emergency_status": "Inactive",
    "emergency_address_sid": None,
    "emergency_address_status": "unregistered",
    "bundle_sid": None,
    "status": "in-use",
    "type": "local",
}


def snake_case(key: str) -> str:
    """The response property for a form key: ``SmsUrl`` → ``sms_url``."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", key).lower()


# Form keys echoed into the resource; PhoneNumber is the number bought, AreaCode no property.
_ECHOED: Final = {
    key: snake_case(key) for key in GENERIC_RULES if key not in ("PhoneNumber", "AreaCode")
}


@functools.lru_cache(maxsize=4)
def rfc2822(second: int) -> str:
    """A Unix time (whole seconds) in Twilio's layout: ``Thu, 30 Jul 2015 23:19:04 +0000``.

    Written out by hand: ``strftime``'s day and month names follow the locale. Cached, as a
    busy second formats the same string many times.
    """
    t = time.gmtime(second)
    return (
        f"{_DAYS[t.tm_wday]}, {t.tm_mday:02d} {_MONTHS[t.tm_mon - 1]} {t.tm_year:04d} "
        f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} +0000"
    )


def number_type(phone_number: str, *, mobile: bool) -> str:
    """``mobile`` from the Mobile endpoint, ``toll-free`` for +1 8xx numbers, else ``local``."""
    if mobile:
        return "mobile"
    return "toll-free" if number_kind(phone_number) == "toll_free" else "local"


def build_resource(
    *,
    sid: str,
    account_sid: str,
    phone_number: str,
    values: Mapping[str, Value],
    mobile: bool,
    created: float,
    capabilities: Mapping[str, bool],
) -> dict[str, Any]:
    """The stored resource for a purchase; its ``type`` is kept even for Mobile purchases,
    because the GET list (the generic schema) shows it. See :func:`for_response`.
    ``capabilities`` are the number's, as a search showed them."""
    kind = number_type(phone_number, mobile=mobile)
    date = rfc2822(int(created))
    resource = dict(_TEMPLATE)
    resource.update(
        account_sid=account_sid,
        capabilities=dict(capabilities),
        date_created=date,
        date_updated=date,
        friendly_name=friendly_name(phone_number),
        phone_number=phone_number,
        sid=sid,
        uri=f"/{API_VERSION}/Accounts/{account_sid}/IncomingPhoneNumbers/{sid}.json",
        type=kind,
    )
    for key, value in values.items():
        prop = _ECHOED.get(key)
        if prop is not None:
            resource[prop] = value
    return resource


def for_response(resource: Mapping[str, Any], *, mobile: bool) -> dict[str, Any]:
    """The resource as a 201 shows it: the Mobile endpoint's schema has no ``type``."""
    if mobile:
        return {key: value for key, value in resource.items() if key != "type"}
    return dict(resource)
