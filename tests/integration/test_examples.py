"""The examples run against the sandbox: both web apps answer as their comments say, and the
bulk script resumes from its journal without buying anything twice.

The examples folder is not a package: each file is loaded from its path, as a user runs it.
"""

from __future__ import annotations

import asyncio
import functools
import importlib.util
import json
import shlex
import sys
import urllib.parse
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

import attrs
import pytest
from aiohttp.test_utils import TestClient, TestServer

from tests.conftest import posts
from twilio_numbers_async import RetryPolicy, TwilioNumbersClient
from twilio_numbers_async.sandbox import Fault, Sandbox

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
APPS = ["aiohttp_app", "fastapi_app"]
FAST = RetryPolicy(initial_delay=0.001, max_delay=0.005)
NO_FASTAPI = "FastAPI is the `examples` extra: pip install 'twilio-numbers-async[examples]'"


@functools.cache
def load(name: str) -> ModuleType:
    """``examples/<name>.py``, imported from its path."""
    if name == "fastapi_app":
        pytest.importorskip("fastapi", reason=NO_FASTAPI)
        pytest.importorskip("httpx", reason=NO_FASTAPI)
    spec = importlib.util.spec_from_file_location(f"examples_{name}", EXAMPLES / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    # Registered before it runs: pydantic resolves the FastAPI models' annotations through it.
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture
async def sandbox(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Sandbox]:
    """A sandbox, and the environment an example reads pointed at it."""
    async with Sandbox() as sandbox:
        for name in ("TWILIO_API_KEY", "TWILIO_API_SECRET", "TWILIO_EDGE", "TWILIO_REGION"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("TWILIO_ACCOUNT_SID", sandbox.account_sid)
        monkeypatch.setenv("TWILIO_AUTH_TOKEN", sandbox.auth_token)
        monkeypatch.setenv("TWILIO_BASE_URL", sandbox.url)
        yield sandbox


@attrs.frozen
class Reply:
    status: int
    headers: Mapping[str, str]
    body: Any


#: Sends a body to ``POST /numbers``, with these headers (default: JSON's Content-Type).
Post = Callable[..., Any]
JSON_HEADERS: Mapping[str, str] = {"Content-Type": "application/json"}


class ClientFactory:
    """The example's own ``client_from_env``, counted, with quick retries."""

    def __init__(self, module: ModuleType) -> None:
        self.module = module
        self.made: list[TwilioNumbersClient] = []

    def __call__(self) -> TwilioNumbersClient:
        client: TwilioNumbersClient = self.module.client_from_env(retry=FAST)
        self.made.append(client)
        return client


@asynccontextmanager
async def serve(name: str, factory: ClientFactory) -> AsyncIterator[Post]:
    """The example app, started (its lifespan run) and served in this loop; yields ``post``."""
    module = load(name)
    if name == "aiohttp_app":
        async with TestClient(TestServer(module.create_app(factory))) as http:

            async def post(body: bytes, headers: Mapping[str, str] = JSON_HEADERS) -> Reply:
                async with http.post("/numbers", data=body, headers=headers) as response:
                    return Reply(response.status, response.headers, await response.json())

            yield post
        return
    import httpx

    app = module.create_app(factory)
    # httpx's ASGITransport does not run the lifespan; the app's own context manager does.
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://app") as asgi:

            async def post_asgi(body: bytes, headers: Mapping[str, str] = JSON_HEADERS) -> Reply:
                response = await asgi.post("/numbers", content=body, headers=headers)
                return Reply(response.status_code, response.headers, response.json())

            yield post_asgi


def as_json(value: object) -> bytes:
    return json.dumps(value).encode()


@pytest.mark.parametrize("name", APPS)
async def test_a_web_app_buys_with_one_client_made_at_startup_and_closed_at_shutdown(
    name: str, sandbox: Sandbox
) -> None:
    factory = ClientFactory(load(name))
    async with serve(name, factory) as post:
        first = await post(as_json({"area_code": "415", "friendly_name": "support"}))
        second = await post(as_json({"phone_number": "+14155551234"}))
    assert first.status == 201, first.body
    assert second.status == 201, second.body
    assert [p.phone_number for p in sandbox.purchases] == [
        first.body["phone_number"],
        "+14155551234",
    ]
    assert first.body["sid"] == sandbox.purchases[0].sid
    assert first.body["friendly_name"] == "support"
    assert len(factory.made) == 1, "one client for the application's lifetime"
    assert factory.made[0].closed, "closed at shutdown"


@attrs.frozen
class Case:
    body: bytes
    status: int
    #: The example's "error" in its JSON answer, or Twilio's code it passes on.
    error: str | None = None
    code: int | None = None
    faults: tuple[Fault, ...] = ()
    #: Faults for the look-ups (the GET list) that settle a lost answer.
    look_up_faults: tuple[Fault, ...] = ()
    bought: int = 0
    #: FastAPI answers a body its pydantic model refuses itself: a 422 with its "detail".
    by_fastapi: bool = False
    headers: Mapping[str, str] = JSON_HEADERS


CASES = {
    "unavailable number": Case(as_json({"phone_number": "+15005550000"}), 409, code=21422),
    "invalid number (Twilio)": Case(as_json({"phone_number": "+15005550001"}), 422, code=21421),
    "empty area code": Case(as_json({"area_code": "533"}), 409, code=21452),
    "invalid number (library)": Case(
        as_json({"phone_number": "4155551234"}), 422, error="invalid_request"
    ),
    "neither field": Case(as_json({}), 422, error="invalid_request"),
    "a field callers may not set": Case(
        as_json({"sms_url": "https://example.com"}), 422, error="invalid_request", by_fastapi=True
    ),
    "not json": Case(b"area_code=415", 400, error="invalid_json", by_fastapi=True),
    # What `curl -d` sends without -H: a form's type, which a web page may POST cross-site.
    "json, not said to be": Case(
        as_json({"area_code": "415"}),
        415,
        error="unsupported_media_type",
        by_fastapi=True,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    ),
    # An area code is bought as a number a search found: a lost answer is looked up too.
    "area code, answer lost, reconciled": Case(
        as_json({"area_code": "415"}),
        201,
        faults=(Fault.drop_after_commit(),),
        bought=1,
    ),
    "answer lost, look-up failing too": Case(
        as_json({"phone_number": "+14155551234"}),
        409,
        error="purchase_outcome_unknown",
        faults=(Fault.drop_after_commit(),),
        look_up_faults=(Fault.server_error(500),) * FAST.max_attempts,
        bought=1,
    ),
    "given number, answer lost, reconciled": Case(
        as_json({"phone_number": "+14155551234"}),
        201,
        faults=(Fault.drop_after_commit(),),
        bought=1,
    ),
    "rate limited throughout": Case(
        as_json({"area_code": "415"}),
        503,
        error="rate_limited",
        faults=(Fault.rate_limited(retry_after=0),) * FAST.max_attempts,
    ),
    "unreachable, checked not bought": Case(
        as_json({"phone_number": "+14155551234"}),
        503,
        error="twilio_unavailable",
        faults=(Fault.drop_before_commit(),) * FAST.max_attempts,
    ),
}


@pytest.mark.parametrize("name", APPS)
@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
async def test_a_web_app_answers_each_failure_as_documented(
    name: str, case: Case, sandbox: Sandbox
) -> None:
    sandbox.script(*case.faults)
    sandbox.script(*case.look_up_faults, on="list")
    async with serve(name, ClientFactory(load(name))) as post:
        reply = await post(case.body, case.headers)
    if name == "fastapi_app" and case.by_fastapi:
        assert reply.status == 422, reply.body
        assert reply.body["detail"]
    else:
        assert reply.status == case.status, reply.body
        if case.code is not None:
            assert reply.body["code"] == case.code
            assert reply.body["hint"], "Twilio's code comes with what to do about it"
        if case.error is not None:
            assert reply.body["error"] == case.error
    if case.error == "rate_limited":
        assert reply.headers["Retry-After"] == "1"
    assert len(sandbox.purchases) == case.bought
    if reply.status == 201:
        assert [p.phone_number for p in sandbox.purchases] == [reply.body["phone_number"]]


@attrs.frozen
class Curl:
    """A ``curl`` command line of examples/README.md, as the request it sends."""

    line: str
    app: str
    method: str
    path: str
    headers: Mapping[str, str]
    body: bytes


#: The port each app is served on in examples/README.md.
PORTS = {8001: "aiohttp_app", 8002: "fastapi_app"}


def documented_curls() -> list[Curl]:
    found = []
    for line in (EXAMPLES / "README.md").read_text(encoding="utf-8").splitlines():
        if not line.startswith("$ curl "):
            continue
        words = shlex.split(line.removeprefix("$ "), comments=True)[1:]
        method, headers, body, url = "GET", {}, b"", ""
        while words:
            word = words.pop(0)
            if word == "-X":
                method = words.pop(0)
            elif word == "-H":
                name, _, value = words.pop(0).partition(":")
                headers[name.strip()] = value.strip()
            elif word in ("-d", "--data"):
                method, body = "POST", words.pop(0).encode()
                # What curl itself sends with -d, unless a -H says otherwise.
                headers.setdefault("Content-Type", "application/x-www-form-urlencoded")
            elif not word.startswith("-"):
                url = word
        target = urllib.parse.urlsplit(f"http://{url}" if "://" not in url else url)
        assert target.port in PORTS, f"{line}: no example app is served on {target.port}"
        found.append(Curl(line, PORTS[target.port], method, target.path, headers, body))
    return found


def test_the_readme_shows_curl_for_each_app() -> None:
    assert sorted({curl.app for curl in documented_curls()}) == APPS


@pytest.mark.parametrize("curl", documented_curls(), ids=lambda curl: curl.app)
async def test_the_documented_curl_buys_a_number(curl: Curl, sandbox: Sandbox) -> None:
    assert (curl.method, curl.path) == ("POST", "/numbers"), curl.line
    async with serve(curl.app, ClientFactory(load(curl.app))) as post:
        reply = await post(curl.body, curl.headers)
    assert reply.status == 201, f"{curl.line}: {reply.body}"
    assert [p.phone_number for p in sandbox.purchases] == [reply.body["phone_number"]]


@pytest.mark.parametrize("name", APPS)
async def test_a_web_app_reports_its_own_bad_credentials_as_a_bad_gateway(
    name: str, sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TWILIO_AUTH_TOKEN", "not-the-token")
    async with serve(name, ClientFactory(load(name))) as post:
        reply = await post(as_json({"area_code": "415"}))
    assert reply.status == 502
    assert reply.body["code"] == 20003
    assert "not-the-token" not in json.dumps(reply.body)


@pytest.mark.parametrize("name", [*APPS, "bulk_from_csv"])
def test_an_example_has_help(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        load(name).main(["--help"])
    assert exit_.value.code == 0
    assert "TWILIO_BASE_URL" in capsys.readouterr().out


async def run_bulk(sandbox: Sandbox, *args: str) -> tuple[int, str]:
    """``python examples/bulk_from_csv.py ARGS`` against ``sandbox``, served by this loop."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(EXAMPLES / "bulk_from_csv.py"),
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode is not None
    return process.returncode, output.decode()


async def test_the_bulk_script_buys_the_sample_and_a_rerun_resumes_buying_nothing(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    journal = tmp_path / "numbers.jsonl"
    sample = EXAMPLES / "numbers.csv"
    rows = len(sample.read_text().splitlines()) - 1

    code, output = await run_bulk(sandbox, str(sample), "--journal", str(journal))
    assert code == 0, output
    assert len(sandbox.purchases) == rows
    assert f"{rows} requests: {rows} bought, 0 failed, 0 unknown" in output
    mobile = [p for p in sandbox.purchases if p.endpoint.endswith("Mobile.json")]
    assert [p.phone_number for p in mobile] == ["+447700900123"]

    sent = posts(sandbox)
    code, output = await run_bulk(sandbox, str(sample), "--journal", str(journal))
    assert code == 0, output
    assert posts(sandbox) == sent, "the rerun sent no purchase"
    assert len(sandbox.purchases) == rows
    assert f"({rows} read from the journal" in output


async def test_the_bulk_script_reports_each_outcome_and_never_resends_a_final_one(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    csv_file = tmp_path / "numbers.csv"
    csv_file.write_text("area_code,phone_number\n,+14155551234\n415,\n,+15005550000\n")
    # One purchase at a time, in file order. The first two are bought and their answers lost:
    # the given number's look-up fails too (an outcome nobody can check), the area code's
    # candidate is found on the account.
    sandbox.script(Fault.drop_after_commit(), Fault.drop_after_commit())
    # 429s with a short Retry-After, so that the look-up's retries don't wait seconds.
    refused = Fault.rate_limited(retry_after=0.01)
    sandbox.script(*[refused] * RetryPolicy().max_attempts, on="list")

    code, output = await run_bulk(sandbox, str(csv_file), "--concurrency", "1")
    assert code == 1, output
    assert "3 requests: 1 bought, 1 failed, 1 unknown" in output
    assert "#0 +14155551234: UNKNOWN" in output
    [candidate] = [p.phone_number for p in sandbox.purchases if p.phone_number != "+14155551234"]
    assert f"#1 area code 415: bought {candidate}" in output
    assert "found on the account after its answer was lost" in output
    assert "#2 +15005550000: failed" in output
    assert "21422" in output
    assert len(sandbox.purchases) == 2
    assert (tmp_path / "numbers.journal.jsonl").exists(), "the default journal, beside the CSV"

    sent = posts(sandbox)
    code, again = await run_bulk(sandbox, str(csv_file))
    assert code == 1, again
    assert posts(sandbox) == sent, "unknown and failed outcomes are final: not sent again"
    assert "(3 read from the journal" in again


@pytest.fixture
def bad_csv(tmp_path: Path) -> Path:
    path = tmp_path / "bad.csv"
    path.write_text(
        "area_code,phone_number,mobile\n415,,\n,555-0100,\n,+447700900123,maybe\n415,,yes\n"
    )
    return path


def test_the_bulk_script_refuses_a_bad_file_before_buying_anything(
    bad_csv: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Exit 2 comes before any client exists: no sandbox needed to know nothing was bought.
    assert load("bulk_from_csv").main([str(bad_csv)]) == 2
    error = capsys.readouterr().err
    assert f"{bad_csv}:3: phone_number:" in error
    assert f"{bad_csv}:4: mobile:" in error
    assert f"{bad_csv}:5: area_code:" in error
    assert not bad_csv.with_suffix(".journal.jsonl").exists()
