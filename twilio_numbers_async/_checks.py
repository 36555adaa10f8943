"""Input checks: SIDs, E.164 numbers, URLs, area codes, and the library's own counts.

Each ``check_*`` takes the field's snake_case name so that its error names the field, returns
the value unchanged when it is valid, and never performs I/O. Checks of Twilio's values raise
:class:`~twilio_numbers_async.errors.RequestValidationError` (a ``ValueError``).
"""

from __future__ import annotations

import ipaddress
import math
import numbers
import re
from urllib.parse import SplitResult, urlsplit

from ._country_codes import BY_FIRST_DIGITS
from .errors import RequestValidationError

__all__ = [
    "SID_PREFIXES",
    "check_area_code",
    "check_bucket",
    "check_contains",
    "check_count",
    "check_country",
    "check_e164",
    "check_finite",
    "check_sid",
    "check_text",
    "check_url",
    "find_sid",
    "is_loopback_host",
    "redact_url",
    "tokens_error",
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
# Each is the public half of a credential pair: a secret passed in the wrong slot lands here.
_CREDENTIAL_PREFIXES = frozenset({"AC", "SK"})
# Twilio's auth tokens and API secrets: 32 hexadecimal digits.
_SECRET_SHAPE = re.compile(r"[0-9a-fA-F]{32}")
# A failed credential shows its first two characters only when it is at least this long.
_SHOWN_FROM_LENGTH = 10
_ANY_PN_SID = re.compile(r"PN[0-9a-fA-F]{32}")

# E.164: a plus, a country code that doesn't start with 0, and at most 15 digits in all.
_E164 = re.compile(r"\+[1-9][0-9]{1,14}")
# NANP: the first digit of an area code is 2 to 9 (0 and 1 reach operators and trunks).
_AREA_CODE = re.compile(r"[2-9][0-9]{2}")
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
# Where a URL's authority ends (RFC 3986): at the first '/', '?' or '#'.
_AUTHORITY_END = re.compile(r"[/?#]")
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
    """An E.164 phone number such as ``+14155551234``, of a length its country code's numbers
    can have (``+1``: ten digits after it)."""
    text = check_text(field, value)
    if not _E164.fullmatch(text):
        raise RequestValidationError(
            field,
            f"{text!r} is not an E.164 number: '+', a country code and the subscriber number, "
            "digits only, 15 at most (for example +14155551234)",
        )
    known = BY_FIRST_DIGITS.get(text[1:4])
    if known is not None and len(text) - known[0] not in known[1]:
        start, lengths = known
        raise RequestValidationError(
            field,
            f"{text!r} can't be a phone number: +{text[1:start]} numbers have "
            f"{_spoken(lengths)} digits after the country code; this one has {len(text) - start}",
        )
    return text


def _spoken(lengths: tuple[int, ...]) -> str:
    """``(5, 6, 7, 8, 12)`` as ``"5 to 8 or 12"``."""
    runs: list[list[int]] = []
    for length in lengths:
        if runs and length == runs[-1][-1] + 1:
            runs[-1].append(length)
        else:
            runs.append([length])
    words: list[str] = []
    for run in runs:
        words += [f"{run[0]} to {run[-1]}"] if len(run) > 2 else [str(length) for length in run]
    return words[0] if len(words) == 1 else f"{', '.join(words[:-1])} or {words[-1]}"


def check_sid(field: str, value: object, prefix: str) -> str:
    """A Twilio SID: its two-letter prefix and 32 hexadecimal digits.

    A failed account SID or API key is described, not shown: the value in that slot is often
    the secret that belongs beside it, passed in the wrong order. So is a value of any SID
    field that has a secret's shape.
    """
    text = check_text(field, value)
    if not _SID_PATTERNS[prefix].fullmatch(text):
        secret = prefix in _CREDENTIAL_PREFIXES or _SECRET_SHAPE.fullmatch(text)
        shown = _describe_secret(text) if secret else repr(text)
        raise RequestValidationError(
            field,
            f"{shown} is not the SID of {SID_PREFIXES[prefix]}: "
            f"expected {prefix!r} followed by 32 hexadecimal digits{_what_it_is(text)}",
        )
    return text


def _describe_secret(text: str) -> str:
    if not text:
        return "an empty value"
    # The first two characters tell a SID's kind ("SK": an API key) but are too much of a
    # short value to show.
    start = f" starting {text[:2]!r}" if len(text) >= _SHOWN_FROM_LENGTH else ""
    return f"a {len(text)}-character value{start}"


def _what_it_is(text: str) -> str:
    # A value in the wrong slot is the commonest mistake here: say what it looks like.
    for prefix, pattern in _SID_PATTERNS.items():
        if pattern.fullmatch(text):
            return f"; it is the SID of {SID_PREFIXES[prefix]}, in the wrong place"
    if _SECRET_SHAPE.fullmatch(text):
        return "; it has the shape of an auth token or API secret (no prefix)"
    return ""


def check_area_code(field: str, value: object) -> str:
    """A three-digit US or Canada area code."""
    text = check_text(field, value)
    if not _AREA_CODE.fullmatch(text):
        raise RequestValidationError(
            field,
            f"{text!r} is not an area code of the US or Canada: three digits, the first 2 to 9, "
            "such as '415'",
        )
    return text


# The spec's Contains: 2 to 16 characters, digits and letters (a phone keypad's), with "*" and
# "%" as wildcards and "+" / "$" anchoring the number's start / end.
_CONTAINS = re.compile(r"\+?[*%]*[0-9A-Za-z]+[*%]*\$?")
_COUNTRY = re.compile(r"[A-Z]{2}")


def check_contains(field: str, value: object) -> str:
    """A search's ``Contains`` pattern, such as ``"555"``, ``"+1415*"`` or ``"TWILIO"``."""
    text = check_text(field, value)
    if not 2 <= len(text) <= 16 or not _CONTAINS.fullmatch(text):
        raise RequestValidationError(
            field,
            f"{text!r} is not a pattern Twilio searches with: 2 to 16 digits or letters, with "
            "'*' (one character) or '%' (any run) at either end, '+' first or '$' last",
        )
    return text


def check_country(field: str, value: object) -> str:
    """An ISO 3166-1 alpha-2 country code, such as ``"US"``."""
    text = check_text(field, value)
    if not _COUNTRY.fullmatch(text):
        raise RequestValidationError(
            field, f"{text!r} is not a country code: two capital letters, such as 'US' or 'GB'"
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
    parts = _split(text)
    if parts is None:  # a malformed IPv6 literal, such as "http://[::1/"
        raise RequestValidationError(
            field, f"{shown!r} is not a valid URL: '[' and ']' must enclose an IPv6 address"
        )
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise RequestValidationError(
            field, f"{shown!r} is not an absolute http(s) URL, such as https://example.com/sms"
        )
    if not _valid_port(parts):
        raise RequestValidationError(field, f"{shown!r} has an invalid port")
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


# These two never raise: the parser's ValueError, chained to ours as its __context__, would
# quote the part of the URL it choked on, and a password cut short by a '/' reads as a port.
def _split(text: str) -> SplitResult | None:
    try:
        return urlsplit(text)
    except ValueError:
        return None


def _valid_port(parts: SplitResult) -> bool:
    try:
        parts.port  # noqa: B018 - urlsplit checks the port only when asked for it
    except ValueError:
        return False
    return True


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
    """``url`` with its user information hidden, for reprs, logs and error messages.

    ``user:password@`` shows as ``user:***@``; a lone ``token@`` as ``***@``. A password
    holding an unencoded ``/``, ``?`` or ``#`` ends the authority early where any parser looks,
    leaving the rest of it in the path: when the authority is broken (or has a ``:``) and an
    ``@`` follows it, everything up to the last ``@`` is hidden, to be safe.
    """
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest:
        return url
    authority = _AUTHORITY_END.split(rest, maxsplit=1)[0]
    if _split(url) is None:  # a broken IPv6 literal, such as "http://u:p@[::1/"
        authority = ""
    if "@" not in authority:
        if authority and ":" not in authority.rpartition("]")[2]:
            return url  # a plain host: the '@' is in the path, query or fragment
        return f"{scheme}://***@{rest.rpartition('@')[2]}"
    userinfo, _, host = authority.rpartition("@")
    user, colon, _ = userinfo.partition(":")
    return f"{scheme}://{f'{user}:***' if colon else '***'}@{host}{rest[len(authority) :]}"


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


# --- the library's own settings: rates, capacities, durations ------------------------------


def check_bucket(rate: object, capacity: object) -> tuple[float, float]:
    """A bucket's ``rate`` and ``capacity``, checked, with the capacity's default filled in.

    Shared with every token bucket of the library (the Redis one too), so that they accept
    and refuse the same settings, with the same words.
    """
    rate = check_finite("rate", rate, "tokens per second")
    if rate <= 0:
        raise ValueError(
            f"rate must be greater than 0 tokens per second, got {rate!r}; "
            "to stop all requests for a while, use pause() instead"
        )
    if capacity is None:
        capacity = max(rate, 1.0)
    capacity = check_finite("capacity", capacity, "tokens")
    if capacity < 1:
        raise ValueError(
            f"capacity must be at least 1 token, got {capacity!r}; a bucket that holds less "
            "than one token could never admit a request (leave it out to default to rate)"
        )
    return rate, capacity


def check_finite(name: str, value: object, unit: str) -> float:
    """``value`` as a float, if it is a real, finite number."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number of {unit}, got {type(value).__name__}")
    try:
        number = float(value)
    except OverflowError:
        number = math.inf
    if not math.isfinite(number):
        raise ValueError(f"{name} must be a finite number of {unit}, got {value!r}")
    return number


def tokens_error(tokens: int, capacity: float) -> ValueError:
    if tokens > capacity:
        return ValueError(
            f"cannot acquire {tokens!r} tokens from a bucket with capacity {capacity!r}: it "
            "could never hold that many; acquire at most capacity tokens, or raise capacity"
        )
    return ValueError(f"tokens must be at least 1, got {tokens!r}")
