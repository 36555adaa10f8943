"""Twilio's official OpenAPI spec of the two purchase endpoints, for contract tests.

The spec is read in place, never copied into the project: ``$TWILIO_OAS_PATH`` if set, else
``<repo>/../shared/spec/twilio_incoming_phone_numbers_oas.json``. Tests that need it are marked
:data:`requires_spec` and skip, saying where it was looked for, when it is absent.

OpenAPI 3.0 is not JSON Schema: :func:`response_schema` inlines the ``$ref`` s and turns
``nullable: true`` into ``type: [..., "null"]`` so that ``jsonschema`` validates what the spec
means. Twilio's own formats (``phone-number``, ``date-time-rfc-2822``, ``http-method``) and
``uri`` are ignored by ``jsonschema`` here; :func:`check_formats` checks them.

For the contract tests (``tests/contract``) it also reads the rest of what the spec says
(required keys, ``x-twilio.conditional``, SID prefixes, examples), writes the copy of the spec
that ``prism proxy`` serves (:func:`proxy_spec`), and builds hypothesis strategies of valid
values and requests from it (:func:`valid_requests`).
"""

from __future__ import annotations

import copy
import email.utils
import enum
import functools
import importlib
import json
import os
import re
import string
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final, get_args
from urllib.parse import quote, urlsplit

import attrs
import pytest
from hypothesis import strategies as st

from twilio_numbers_async._country_codes import NATIONAL_LENGTHS
from twilio_numbers_async._serde import form_fields
from twilio_numbers_async.models import MobileNumberPurchase, NumberPurchase, PurchaseRequest

__all__ = [
    "GENERIC_PATH",
    "LIST_OPERATION",
    "LIST_PAGE_URI_PROPERTIES",
    "MOBILE_PATH",
    "NUMBER_PATH",
    "SEARCH_PATHS",
    "SPEC_PATH",
    "check_formats",
    "conditional_groups",
    "e164_numbers",
    "fetch_response_schema",
    "field_for_key",
    "friendly_names",
    "full_request",
    "list_response_schema",
    "load_spec",
    "not_e164_numbers",
    "path_parameters",
    "property_examples",
    "proxy_spec",
    "request_class",
    "request_properties",
    "required_keys",
    "requires_spec",
    "response_schema",
    "search_response_schema",
    "sid_prefix",
    "sids",
    "spec_available",
    "url_like",
    "urls",
    "valid_requests",
    "validate",
    "value_strategy",
]

_REPO_ROOT: Final = Path(__file__).resolve().parent.parent
_DEFAULT_PATH: Final = (
    _REPO_ROOT.parent / "shared" / "spec" / "twilio_incoming_phone_numbers_oas.json"
)
#: Where the spec is read from.
SPEC_PATH: Final = Path(os.environ.get("TWILIO_OAS_PATH") or _DEFAULT_PATH)

#: The spec's paths of the two purchase endpoints (the generic one also has the GET list).
GENERIC_PATH: Final = "/2010-04-01/Accounts/{AccountSid}/IncomingPhoneNumbers.json"
MOBILE_PATH: Final = "/2010-04-01/Accounts/{AccountSid}/IncomingPhoneNumbers/Mobile.json"
LIST_OPERATION: Final = (GENERIC_PATH, "get")
#: The GET and DELETE of one number.
NUMBER_PATH: Final = "/2010-04-01/Accounts/{AccountSid}/IncomingPhoneNumbers/{Sid}.json"
#: The AvailablePhoneNumbers searches, by the last part of their path.
SEARCH_PATHS: Final = {
    kind: f"/2010-04-01/Accounts/{{AccountSid}}/AvailablePhoneNumbers/{{CountryCode}}/{kind}.json"
    for kind in ("Local", "Mobile", "TollFree")
}

_E164: Final = re.compile(r"\+[1-9][0-9]{1,14}")
_HTTP_METHODS: Final = frozenset({"GET", "POST"})
_CHECKED_FORMATS: Final = frozenset({"phone-number", "date-time-rfc-2822", "http-method", "uri"})


def spec_available() -> bool:
    """Whether the spec file is where :data:`SPEC_PATH` says."""
    return SPEC_PATH.is_file()


#: Skips a test, saying where the spec was looked for, when it is absent.
requires_spec = pytest.mark.skipif(
    not spec_available(),
    reason=f"Twilio's OpenAPI spec is not at {SPEC_PATH}; set TWILIO_OAS_PATH",
)


@functools.cache
def load_spec() -> dict[str, Any]:
    """The spec, parsed once. Callers get the shared object: don't change it."""
    with SPEC_PATH.open(encoding="utf-8") as file:
        spec: dict[str, Any] = json.load(file)
    return spec


def response_schema(mobile: bool, *, exact: bool = False) -> dict[str, Any]:
    """The 201 schema of one endpoint, as JSON Schema (``$ref`` s inlined, ``nullable`` read).

    ``exact=True`` also requires every property and forbids others: the sandbox's answers
    must be exactly the spec's resource.
    """
    path = MOBILE_PATH if mobile else GENERIC_PATH
    operation = load_spec()["paths"][path]["post"]
    schema = _json_schema(operation["responses"]["201"]["content"]["application/json"]["schema"])
    if exact:
        schema["required"] = sorted(schema["properties"])
        schema["additionalProperties"] = False
    return schema


def list_response_schema() -> dict[str, Any]:
    """The GET list's 200 schema (ListIncomingPhoneNumberResponse), as JSON Schema."""
    operation = load_spec()["paths"][GENERIC_PATH]["get"]
    return _json_schema(operation["responses"]["200"]["content"]["application/json"]["schema"])


def search_response_schema(kind: str) -> dict[str, Any]:
    """One search's 200 schema (``kind``: ``Local``, ``Mobile`` or ``TollFree``), as JSON
    Schema, with every property of the page and of each number required, and no other."""
    operation = load_spec()["paths"][SEARCH_PATHS[kind]]["get"]
    schema = _json_schema(operation["responses"]["200"]["content"]["application/json"]["schema"])
    for node in (schema, schema["properties"]["available_phone_numbers"]["items"]):
        node["required"] = sorted(node["properties"])
        node["additionalProperties"] = False
    return schema


def fetch_response_schema() -> dict[str, Any]:
    """The GET of one number's 200 schema, as JSON Schema, exact (see :func:`response_schema`)."""
    operation = load_spec()["paths"][NUMBER_PATH]["get"]
    schema = _json_schema(operation["responses"]["200"]["content"]["application/json"]["schema"])
    schema["required"] = sorted(schema["properties"])
    schema["additionalProperties"] = False
    return schema


def request_properties(mobile: bool) -> dict[str, dict[str, Any]]:
    """Form key → its schema, for one endpoint's request body (``$ref`` s inlined)."""
    path = MOBILE_PATH if mobile else GENERIC_PATH
    body = load_spec()["paths"][path]["post"]["requestBody"]
    schema = _json_schema(body["content"]["application/x-www-form-urlencoded"]["schema"])
    properties: dict[str, dict[str, Any]] = schema["properties"]
    return properties


def validate(instance: Any, schema: dict[str, Any]) -> None:
    """Validate ``instance`` against a schema from this module (``jsonschema``, draft 7).

    Raises ``jsonschema.ValidationError``, whose message names the failing path.
    """
    # Imported by name: jsonschema ships no type stubs, and only contract tests need it.
    jsonschema = importlib.import_module("jsonschema")
    jsonschema.Draft7Validator(schema).validate(instance)


def check_formats(resource: dict[str, Any]) -> None:
    """Check the formats ``jsonschema`` ignores; ``AssertionError`` names the bad field.

    ``phone-number`` must be E.164, ``date-time-rfc-2822`` an RFC 2822 date with a zone,
    ``http-method`` GET or POST, ``uri`` an absolute URL (``""`` is not one). ``None`` passes:
    nullability is the schema's business.
    """
    properties = response_schema(mobile=False)["properties"]
    for name, value in resource.items():
        fmt = properties.get(name, {}).get("format")
        if value is None or fmt not in _CHECKED_FORMATS:
            continue
        problem = _format_problem(fmt, value)
        if problem is not None:
            raise AssertionError(f"{name}: {value!r} is not {problem}")


def _format_problem(fmt: str, value: Any) -> str | None:
    if not isinstance(value, str):
        return f"a string ({fmt})"
    if fmt == "phone-number":
        return None if _E164.fullmatch(value) else "an E.164 phone number"
    if fmt == "http-method":
        return None if value in _HTTP_METHODS else "GET or POST"
    if fmt == "uri":
        parts = urlsplit(value)
        return None if parts.scheme and parts.netloc else "an absolute URI"
    try:
        parsed = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return "an RFC 2822 date"
    return None if parsed.tzinfo is not None else "an RFC 2822 date with a zone"


def _json_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """A copy of an OpenAPI 3.0 schema that ``jsonschema`` reads as the spec means it."""
    converted: dict[str, Any] = _convert(copy.deepcopy(schema), load_spec())
    return converted


def _convert(node: Any, spec: dict[str, Any]) -> Any:
    if isinstance(node, list):
        return [_convert(item, spec) for item in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        return _convert(copy.deepcopy(_resolve(node["$ref"], spec)), spec)
    converted = {key: _convert(value, spec) for key, value in node.items()}
    if converted.pop("nullable", False):
        kind = converted.get("type")
        if isinstance(kind, str):
            converted["type"] = [kind, "null"]
        if "enum" in converted and None not in converted["enum"]:
            converted["enum"] = [*converted["enum"], None]
    return converted


def _resolve(ref: str, spec: dict[str, Any]) -> Any:
    if not ref.startswith("#/"):
        raise ValueError(f"only local $refs are supported, not {ref!r}")
    node: Any = spec
    for part in ref[2:].split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


# --- more of the spec, read for the contract tests -------------------------------------------


def _post(mobile: bool) -> dict[str, Any]:
    path = MOBILE_PATH if mobile else GENERIC_PATH
    operation: dict[str, Any] = load_spec()["paths"][path]["post"]
    return operation


def required_keys(mobile: bool) -> list[str]:
    """The form keys one endpoint's request body lists as ``required``."""
    body = _post(mobile)["requestBody"]["content"]["application/x-www-form-urlencoded"]
    required: list[str] = _json_schema(body["schema"]).get("required", [])
    return required


def conditional_groups(mobile: bool = False) -> list[list[str]]:
    """``x-twilio.conditional`` of one endpoint: groups of snake_case fields of which exactly
    one must be given (``[["phone_number", "area_code"]]`` for the generic endpoint)."""
    groups: list[list[str]] = _post(mobile).get("x-twilio", {}).get("conditional", [])
    return groups


def path_parameters(mobile: bool) -> dict[str, dict[str, Any]]:
    """Path parameter name → its schema, for one endpoint's POST."""
    return {
        parameter["name"]: _json_schema(parameter["schema"])
        for parameter in _post(mobile).get("parameters", [])
        if parameter["in"] == "path"
    }


_SID_PATTERN: Final = re.compile(r"\^([A-Z]{2})\[0-9a-fA-F\]\{32\}\$")


def sid_prefix(schema: dict[str, Any]) -> str | None:
    """The two-letter prefix of a SID property (``^AP[0-9a-fA-F]{32}$`` → ``AP``), or ``None``
    for a property without a pattern. ``ValueError`` for a pattern of any other shape, so that
    a new kind of pattern in a new spec release is noticed, not skipped."""
    pattern = schema.get("pattern")
    if pattern is None:
        return None
    match = _SID_PATTERN.fullmatch(pattern)
    if match is None:
        raise ValueError(f"the pattern {pattern!r} is not a SID's (^XX[0-9a-fA-F]{{32}}$)")
    return match[1]


def property_examples(names: set[str]) -> dict[str, list[Any]]:
    """Every value the spec's ``examples`` give to a property named in ``names``."""
    found: dict[str, list[Any]] = {name: [] for name in names}

    def walk(node: Any) -> Iterator[tuple[str, Any]]:
        if isinstance(node, dict):
            for key, value in node.items():
                yield key, value
                yield from walk(value)
        elif isinstance(node, list):
            for item in node:
                yield from walk(item)

    def examples(node: Any) -> Iterator[Any]:
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "examples" and isinstance(value, dict):
                    yield from (example.get("value") for example in value.values())
                else:
                    yield from examples(value)
        elif isinstance(node, list):
            for item in node:
                yield from examples(item)

    for example in examples(load_spec()):
        for key, value in walk(example):
            if key in found:
                found[key].append(value)
    return found


def request_class(mobile: bool) -> type[PurchaseRequest]:
    """Our request class for one endpoint."""
    return MobileNumberPurchase if mobile else NumberPurchase


def field_for_key(mobile: bool, key: str) -> str:
    """Our snake_case field for one of the spec's form keys; ``KeyError`` if we have none."""
    kind = request_class(mobile)
    fields = {form_key: name for name, form_key in form_fields(kind).items()}
    try:
        return fields[key]
    except KeyError:
        raise KeyError(f"{kind.__name__} has no field for the spec's form key {key!r}") from None


#: The list pages' links. The spec declares them ``format: uri``, yet its own example (and
#: Twilio) sends paths relative to the host, "/2010-04-01/...": a relative reference, which
#: Prism's ``uri`` check refuses. :func:`proxy_spec` reads them as ``uri-reference``, in the
#: GET list and in the three searches.
LIST_PAGE_URI_PROPERTIES: Final = ("first_page_uri", "next_page_uri", "previous_page_uri", "uri")


def proxy_spec(directory: Path) -> Path:
    """A copy of the spec, written in ``directory``, for ``prism proxy``: the same but for
    :data:`LIST_PAGE_URI_PROPERTIES`, whose ``format: uri`` becomes ``uri-reference`` (see
    there). Nothing else is changed; a test checks that the patch is still needed."""
    spec = copy.deepcopy(load_spec())
    for path in (GENERIC_PATH, *SEARCH_PATHS.values()):
        operation = spec["paths"][path]["get"]
        schema = operation["responses"]["200"]["content"]["application/json"]["schema"]
        for name in LIST_PAGE_URI_PROPERTIES:
            prop = schema["properties"][name]
            if prop.get("format") != "uri":
                raise ValueError(
                    f"the spec's list page {name} of {path} is no longer format: uri: "
                    "drop the patch"
                )
            prop["format"] = "uri-reference"
    path = directory / "twilio_incoming_phone_numbers_oas.proxy.json"
    path.write_text(json.dumps(spec), encoding="utf-8")
    return path


# --- hypothesis strategies of valid values, read from the spec -------------------------------

_HEX: Final = string.hexdigits  # both cases: the spec's patterns allow either
_UNRESERVED: Final = string.ascii_letters + string.digits + "-._~"
_SUB_DELIMS: Final = "!$&'()*+,;="
_PCHAR: Final = _UNRESERVED + _SUB_DELIMS + ":@"
_FRIENDLY_NAME_MAX: Final = 64


def e164_numbers() -> st.SearchStrategy[str]:
    """E.164 numbers: "+", a country code, and as many digits after it as its numbers may have
    (15 in all at most); a country code the table doesn't know takes any length."""
    known = st.sampled_from(
        [
            (code, length)
            for code, lengths in NATIONAL_LENGTHS.items()
            for length in lengths
            if len(code) + length <= 15
        ]
    ).flatmap(
        lambda pair: st.text(string.digits, min_size=pair[1], max_size=pair[1]).map(
            lambda digits: f"+{pair[0]}{digits}"
        )
    )
    unknown = st.from_regex(r"\+(?:28[0-9]|999)[0-9]{1,12}", fullmatch=True)  # spare codes
    return st.one_of(known, unknown)


def not_e164_numbers() -> st.SearchStrategy[str]:
    """Strings that are not E.164 numbers, each broken in one way a caller might."""
    digits = st.from_regex(r"[1-9][0-9]{5,13}", fullmatch=True)
    separated = st.tuples(digits, st.sampled_from(" -.()/"), st.integers(1, 5)).map(
        lambda t: "+" + t[0][: t[2]] + t[1] + t[0][t[2] :]
    )
    return st.one_of(
        digits,  # no "+"
        digits.map(lambda d: "00" + d),  # the international prefix instead of "+"
        digits.map(lambda d: "+0" + d),  # a country code can't start with 0
        st.from_regex(r"\+[1-9][0-9]{15,20}", fullmatch=True),  # more than 15 digits
        st.from_regex(r"\+1(?:[0-9]{1,9}|[0-9]{11,13})", fullmatch=True),  # +1 is 10 digits
        st.sampled_from(["", "+", "+1", "++14155551234", "+1 ", " +14155551234"]),
        separated,
        digits.map(lambda d: f"+{d}x1"),  # an extension
        digits.map(lambda d: "+" + "".join(chr(0x0660 + int(c)) for c in d)),  # Arabic digits
        digits.map(lambda d: "+" + "".join(chr(0xFF10 + int(c)) for c in d)),  # full-width
    )


def sids(prefix: str) -> st.SearchStrategy[str]:
    """SIDs with ``prefix``: 32 hexadecimal digits in either case."""
    return st.text(alphabet=_HEX, min_size=32, max_size=32).map(lambda digits: prefix + digits)


def _uri_chars(allowed: str, *, min_size: int = 0, max_size: int = 8) -> st.SearchStrategy[str]:
    # RFC 3986's characters of one URL part, percent-encoded octets (ASCII or UTF-8) included.
    octet = st.tuples(st.sampled_from(_HEX), st.sampled_from(_HEX)).map(lambda t: "%" + "".join(t))
    utf8 = st.characters(codec="utf-8", min_codepoint=0x80).map(lambda c: quote(c, safe=""))
    piece = st.one_of(st.sampled_from(allowed), octet, utf8)
    return st.lists(piece, min_size=min_size, max_size=max_size).map("".join)


def urls() -> st.SearchStrategy[str]:
    """Absolute http(s) URLs of many shapes: any case of scheme, user information, DNS
    names, RFC 3986 registered names, IPv4 and IPv6 hosts, ports, paths, queries and fragments,
    with percent-encoding, all valid by RFC 3986 (the spec's ``format: uri``)."""
    label = st.from_regex(r"[a-zA-Z0-9]([a-zA-Z0-9-]{0,10}[a-zA-Z0-9])?", fullmatch=True)
    dns_name = st.lists(label, min_size=1, max_size=4).map(".".join)
    host = st.one_of(
        dns_name,
        _uri_chars(_UNRESERVED + _SUB_DELIMS, min_size=1),
        st.ip_addresses(v=4).map(str),
        st.ip_addresses(v=6).map(lambda address: f"[{address}]"),
    )
    userinfo = st.one_of(
        st.just(""), _uri_chars(_UNRESERVED + _SUB_DELIMS + ":").map(lambda u: u + "@")
    )
    port = st.one_of(st.just(""), st.just(":"), st.integers(0, 65535).map(lambda n: f":{n}"))
    path = st.lists(_uri_chars(_PCHAR), max_size=4).map(
        lambda parts: "".join("/" + p for p in parts)
    )
    query = st.one_of(st.just(""), _uri_chars(_PCHAR + "/?").map(lambda q: "?" + q))
    fragment = st.one_of(st.just(""), _uri_chars(_PCHAR + "/?").map(lambda f: "#" + f))
    scheme = st.sampled_from(["http", "https", "HTTP", "Https"])
    return st.builds(
        "{}://{}{}{}{}{}{}".format, scheme, userinfo, host, port, path, query, fragment
    )


def url_like() -> st.SearchStrategy[str]:
    """Strings shaped like URLs but with any of RFC 3986's delimiters, and a few characters it
    does not allow, anywhere: most are invalid, some subtly (a second "#", "[" in a path)."""
    junk = st.sampled_from('[]#@%:/?&=+ \\|^`{}"<>')
    part = st.lists(
        st.one_of(junk, st.sampled_from(_UNRESERVED + _SUB_DELIMS), _uri_chars(_HEX, max_size=1)),
        max_size=6,
    ).map("".join)
    return st.one_of(
        st.builds(
            "{}://{}{}{}{}".format,
            st.sampled_from(["http", "https"]),
            part,
            st.one_of(st.just("example.com"), st.ip_addresses(v=6).map(lambda a: f"[{a}]"), part),
            part,
            part,
        ),
        urls(),
    )


def friendly_names() -> st.SearchStrategy[str]:
    """Up to 64 characters of any Unicode but CR, LF and NUL, with the form's own ``&=+%``."""
    character = st.one_of(
        st.characters(codec="utf-8", exclude_characters="\r\n\x00"), st.sampled_from("&=+% #;")
    )
    return st.text(alphabet=character, max_size=_FRIENDLY_NAME_MAX)


def _enum_of(kind: type[PurchaseRequest], name: str) -> type[enum.StrEnum]:
    field = attrs.fields_dict(kind)[name]
    attrs.resolve_types(kind)
    for arg in get_args(field.type):
        if isinstance(arg, type) and issubclass(arg, enum.StrEnum):
            return arg
    raise TypeError(f"{kind.__name__}.{name} is not typed with a StrEnum: {field.type!r}")


def value_strategy(mobile: bool, key: str) -> st.SearchStrategy[Any]:
    """Valid values for one form key, read from its schema in the spec: SIDs of the pattern's
    prefix, the enum's values or our StrEnum's members, booleans, URLs, E.164 numbers."""
    schema = request_properties(mobile)[key]
    name = field_for_key(mobile, key)
    prefix = sid_prefix(schema)
    if prefix is not None:
        return sids(prefix)
    if "enum" in schema:
        members = list(_enum_of(request_class(mobile), name))
        values = [value for value in schema["enum"] if value is not None]
        return st.sampled_from([*members, *values])
    if schema.get("type") == "boolean":
        return st.booleans()
    if schema.get("format") == "uri":
        return urls()
    if schema.get("format") == "phone-number":
        return e164_numbers()
    if key == "AreaCode":  # "any three-digit, US or Canada area code" (its description)
        return st.from_regex(r"[2-9][0-9]{2}", fullmatch=True)  # NANP: never 0 or 1 first
    if key == "FriendlyName":  # "up to 64 characters long" (its description)
        return friendly_names()
    if schema.get("type") == "string" and set(schema) <= {"type", "description"}:
        return st.text(st.characters(codec="utf-8", exclude_characters="\r\n\x00"), max_size=16)
    raise ValueError(f"no strategy for {key}: {schema!r}")


def valid_requests(mobile: bool) -> st.SearchStrategy[PurchaseRequest]:
    """Requests the spec allows: its required fields, one field of each conditional group, and
    any subset of the others, each with a valid value of any kind (read lazily: the spec may be
    absent when this is built)."""
    return st.deferred(lambda: _valid_requests(mobile))


@functools.cache
def _valid_requests(mobile: bool) -> st.SearchStrategy[PurchaseRequest]:
    kind = request_class(mobile)
    values = {
        field_for_key(mobile, key): value_strategy(mobile, key)
        for key in request_properties(mobile)
    }
    required = {field_for_key(mobile, key) for key in required_keys(mobile)}
    groups = [set(group) for group in conditional_groups(mobile)]
    grouped = set().union(*groups)
    optional = {
        name: strategy for name, strategy in values.items() if name not in required | grouped
    }
    base = {name: values[name] for name in required}
    choices = [
        st.fixed_dictionaries(
            {**base, **{name: values[name] for name in chosen}}, optional=optional
        )
        for chosen in _one_of_each(groups)
    ]
    return st.one_of(choices).map(lambda fields: kind(**fields))


def _one_of_each(groups: list[set[str]]) -> list[tuple[str, ...]]:
    combinations: list[tuple[str, ...]] = [()]
    for group in groups:
        combinations = [(*chosen, name) for chosen in combinations for name in sorted(group)]
    return combinations


def full_request(mobile: bool, *, by: str = "phone_number") -> PurchaseRequest:
    """A request with every field the spec has set (but the other one of ``by``'s conditional
    group), to values that differ from Twilio's defaults and stress the form encoding."""
    kind = request_class(mobile)
    groups = [set(group) for group in conditional_groups(mobile)]
    left_out = set().union(*(group - {by} for group in groups if by in group))
    fields: dict[str, Any] = {}
    for key, schema in request_properties(mobile).items():
        name = field_for_key(mobile, key)
        if name in left_out:
            continue
        prefix = sid_prefix(schema)
        if prefix is not None:
            fields[name] = prefix + "0123456789abcdef" * 2
        elif schema.get("format") == "http-method":
            fields[name] = "GET"  # not Twilio's default, POST
        elif "enum" in schema:
            fields[name] = schema["enum"][-1]  # Inactive, fax
        elif schema.get("type") == "boolean":
            fields[name] = True
        elif schema.get("format") == "uri":
            fields[name] = f"https://hook:s3cret@example.com:8443/{key}/a%20b?x=1&y=%2B#frag"
        elif schema.get("format") == "phone-number":
            fields[name] = "+447700900123" if mobile else "+15005550006"
        elif key == "AreaCode":
            fields[name] = "500"
        elif key == "FriendlyName":
            fields[name] = "Support & sales = 100% + more: ☎"
        else:
            fields[name] = "2010-04-01"
    return kind(**fields)
