"""Twilio's official OpenAPI spec of the two purchase endpoints, for contract tests.

The spec is read in place, never copied into the project: ``$TWILIO_OAS_PATH`` if set, else
``<repo>/../shared/spec/twilio_incoming_phone_numbers_oas.json``. Tests that need it are marked
:data:`requires_spec` and skip, saying where it was looked for, when it is absent.

OpenAPI 3.0 is not JSON Schema: :func:`response_schema` inlines the ``$ref`` s and turns
``nullable: true`` into ``type: [..., "null"]`` so that ``jsonschema`` validates what the spec
means. Twilio's own formats (``phone-number``, ``date-time-rfc-2822``, ``http-method``) and
``uri`` are ignored by ``jsonschema`` here; :func:`check_formats` checks them.
"""

from __future__ import annotations

import copy
import email.utils
import functools
import importlib
import json
import os
import re
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

import pytest

__all__ = [
    "GENERIC_PATH",
    "LIST_OPERATION",
    "MOBILE_PATH",
    "SPEC_PATH",
    "check_formats",
    "list_response_schema",
    "load_spec",
    "request_properties",
    "requires_spec",
    "response_schema",
    "spec_available",
    "validate",
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
