"""Input checks: SIDs, E.164 numbers, URLs, area codes, and the library's own counts.

Each ``check_*`` takes the field's snake_case name so that its error names the field, returns
the value unchanged when it is valid, and never performs I/O. Checks of Twilio's values raise
:class:`~twilio_numbers_async.errors.RequestValidationError` (a ``ValueError``).
"""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import urlsplit, urlunsplit

from .errors import RequestValidationError

__all__ = [
    "SID_PREFIXES",
    "check_area_code",
    "check_count",
    "check_e164",
    "check_sid",
    "check_text",
    "check_url",
    "find_sid",
    "is_loopback_host",
    "redact_url",
]

#: Every SID prefix the two endpoints use, and what it names.
SID_PREFIXES = {
    "AC": "an Account",
    "AD": "an Address",
    "AP": "an Application",
    "BU": "a regulatory Bundle",
    "PN": "an IncomingPhoneNumber",
    "RI": "an Identity",
    "SK": "an API key",
    "TK": "a SIP Trunk",
}
_SID_PATTERNS = {prefix: re.compile(f"{prefix}[0-9a-fA-F]{{32}}") for prefix in SID_PREFIXES}
_ANY_PN_SID = re.compile(r"PN[0-9a-fA-F]{32}")

# E.164: a plus, a country code that doesn't start with 0, and at most 15 digits in all.
_E164 = re.compile(r"\+[1-9][0-9]{1,14}")
_AREA_CODE = re.compile(r"[0-9]{3}")
# RFC 3986's characters; anything else (spaces, quotes, non-ASCII) must be percent-encoded.
_URI_CHARS = re.compile(r"[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=%]*")
_BAD_PERCENT = re.compile(r"%(?![0-9A-Fa-f]{2})")
# RFC 3986's authority, [userinfo "@"] host [":" port]: "[" and "]" only around an IP literal,
# "@" only once. Path, query and fragment may hold neither bracket, the fragment no "#".
_AUTHORITY = re.compile(
    r"(?:[A-Za-z0-9\-._~!$&'()*+,;=:%]*@)?"
    r"(?:\[(?P<literal>[^\[\]]*)\]|[A-Za-z0-9\-._~!$&'()*+,;=%]*)"
    r"(?::[0-9]*)?"
)
_IP_FUTURE = re.compile(r"[vV][0-9A-Fa-f]+\.[A-Za-z0-9\-._~!$&'()*+,;=:]+")
_NOT_IN_PATH_QUERY = re.compile(r"[\[\]]")
_USERINFO = re.compile(r"\A([A-Za-z][A-Za-z0-9+.\-]*://)[^/?#]*@")
_CONTROL = re.compile(r"[\r\n\x00]")
# A lone surrogate is no character: it can't be encoded as UTF-8, so it can't be sent.
_SURROGATE = re.compile(r"[\ud800-\udfff]")


def check_text(field: str, value: object) -> str:
    """A string with no CR, LF or NUL (the characters that split headers and forms), and no
    lone surrogate (which can't be sent)."""
    if not isinstance(value, str):
        raise RequestValidationError(field, f"must be a string, not {type(value).__name__}")
    if _CONTROL.search(value):
        raise RequestValidationError(field, "must not contain CR, LF or NUL characters")
    if _SURROGATE.search(value):
        raise RequestValidationError(
            field, "holds a lone surrogate (U+D800 to U+DFFF), which UTF-8 can't encode"
        )
    return value


def check_e164(field: str, value: object) -> str:
    """An E.164 phone number such as ``+14155551234``."""
    text = check_text(field, value)
    if not _E164.fullmatch(text):
        raise RequestValidationError(
            field,
            f"{text!r} is not an E.164 number: '+', a country code and the subscriber number, "
            "digits only, 15 at most (for example +14155551234)",
        )
    return text


def check_sid(field: str, value: object, prefix: str) -> str:
    """A Twilio SID: its two-letter prefix and 32 hexadecimal digits."""
    text = check_text(field, value)
    if not _SID_PATTERNS[prefix].fullmatch(text):
        raise RequestValidationError(
            field,
            f"{text!r} is not the SID of {SID_PREFIXES[prefix]}: "
            f"expected {prefix!r} followed by 32 hexadecimal digits",
        )
    return text


def check_area_code(field: str, value: object) -> str:
    """A three-digit US or Canada area code."""
    text = check_text(field, value)
    if not _AREA_CODE.fullmatch(text):
        raise RequestValidationError(
            field, f"{text!r} is not an area code: expected three digits, such as '415'"
        )
    return text


def check_url(field: str, value: object) -> str:
    """An absolute ``http`` or ``https`` URL with a host, in RFC 3986's syntax (the spec's
    ``format: uri``)."""
    text = check_text(field, value)
    shown = redact_url(text)
    if not _URI_CHARS.fullmatch(text) or _BAD_PERCENT.search(text):
        raise RequestValidationError(
            field, f"{shown!r} has characters a URL can't hold: percent-encode them"
        )
    try:
        parts = urlsplit(text)
    except ValueError as exc:  # a malformed IPv6 literal, such as "http://[::1/"
        raise RequestValidationError(field, f"{shown!r} is not a valid URL: {exc}") from None
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise RequestValidationError(
            field, f"{shown!r} is not an absolute http(s) URL, such as https://example.com/sms"
        )
    try:
        parts.port  # noqa: B018 - urlsplit checks the port only when asked for it
    except ValueError:
        raise RequestValidationError(field, f"{shown!r} has an invalid port") from None
    if not _valid_authority(parts.netloc):
        raise RequestValidationError(
            field,
            f"{shown!r} has an invalid host: '[' and ']' only enclose an IPv6 address, and "
            "the user information before the one '@' must percent-encode any other '@'",
        )
    if _NOT_IN_PATH_QUERY.search(f"{parts.path}{parts.query}{parts.fragment}"):
        raise RequestValidationError(
            field, f"{shown!r} has '[' or ']' after the host: percent-encode them (%5B, %5D)"
        )
    if "#" in parts.fragment:
        raise RequestValidationError(field, f"{shown!r} has a second '#': percent-encode it (%23)")
    return text


def _valid_authority(netloc: str) -> bool:
    match = _AUTHORITY.fullmatch(netloc)
    if match is None:
        return False
    literal = match["literal"]
    if literal is None or _IP_FUTURE.fullmatch(literal):
        return True
    # RFC 3986 has no zone index ("fe80::1%eth0"), which ipaddress would accept.
    try:
        ipaddress.IPv6Address(literal)
    except ValueError:
        return False
    return "%" not in literal


def check_count(name: str, value: object) -> int:
    """A whole number of at least 1 (attempts, workers, slots); ``bool`` is not one."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be an int >= 1, not {value!r}")
    return value


def redact_url(url: str) -> str:
    """``url`` with any password in it replaced, for reprs, logs and error messages."""
    try:
        parts = urlsplit(url)
    except ValueError:
        # Unparsable (a broken IPv6 literal): hide all the user information, to be safe.
        return _USERINFO.sub(r"\1***@", url)
    if parts.password is None:
        return url
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{parts.username}:***@{host}"))


def is_loopback_host(host: str) -> bool:
    """Whether ``host`` names this machine (``localhost``, ``127.0.0.0/8``, ``::1``)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def find_sid(text: str) -> str | None:
    """The first IncomingPhoneNumber SID (``PN...``) in ``text``, if any."""
    match = _ANY_PN_SID.search(text)
    return match.group() if match else None
