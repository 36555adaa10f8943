"""The optional orjson path reads what the standard library's json reads (bar huge integers)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import resource
from twilio_numbers_async import ResponseParseError, _serde

orjson = pytest.importorskip("orjson", reason="orjson (the [speedups] extra) is not installed")

JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)  # what orjson reads as integers
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)


@pytest.fixture
def without_orjson(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_serde, "_orjson_loads", None)


def test_orjson_is_used_when_installed() -> None:
    assert _serde._orjson_loads is orjson.loads


@settings(max_examples=100, deadline=None)
@given(st.dictionaries(st.text(max_size=8), JSON, max_size=6))
def test_any_object_reads_the_same(document: dict[str, Any]) -> None:
    body = json.dumps(document).encode()
    assert _serde._loads(body) == json.loads(body)


@pytest.mark.parametrize(
    "body",
    [
        b'{"nan": NaN}',  # json reads it, orjson refuses it
        b"\xef\xbb\xbf{}",  # a BOM: orjson refuses it, and json's error is the one reported
        b'{"a": 1} trailing',
        b"[1, 2]",
        b"",
    ],
)
def test_the_edge_cases_read_as_json_reads_them(body: bytes) -> None:
    try:
        expected: Any = json.loads(body)
    except ValueError as error:
        with pytest.raises(type(error)):
            _serde._loads(body)
    else:
        assert _serde._loads(body) == expected


def test_an_integer_beyond_64_bits_is_read_as_a_float() -> None:
    # The one difference, in no property Twilio sends: kept in `extra` as orjson read it.
    body = json.dumps(resource(huge=2**80)).encode()
    assert _serde.parse_number(201, body).extra == {"huge": float(2**80)}


@pytest.mark.usefixtures("without_orjson")
def test_a_resource_parses_the_same_without_orjson() -> None:
    body = json.dumps(resource(extra_property={"nested": [1.5, 2]})).encode()
    without = _serde.parse_number(201, body)
    assert without.extra == {"extra_property": {"nested": [1.5, 2]}}
    assert without == _parse_with_orjson(body)


@pytest.mark.parametrize("body", [b"{oops", b'{"sid": 1e999}', b"[]", b'{"date_created": 5}'])
def test_an_unreadable_body_fails_alike_with_and_without_orjson(
    body: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(ResponseParseError) as with_it:
        _serde.parse_number(201, body)
    monkeypatch.setattr(_serde, "_orjson_loads", None)
    with pytest.raises(ResponseParseError) as without:
        _serde.parse_number(201, body)
    assert str(with_it.value) == str(without.value)


def _parse_with_orjson(body: bytes) -> Any:
    saved = _serde._orjson_loads
    _serde._orjson_loads = orjson.loads
    try:
        return _serde.parse_number(201, body)
    finally:
        _serde._orjson_loads = saved
