"""Beside the official SDK: what each client's caller sees when a purchase meets trouble.

    python -m benchmarks.compare_sdk                      # every scenario (about 15 s); writes
                                                          # RESULTS.md's "Beside the official SDK"
    python -m benchmarks.compare_sdk --only lost-area-code,retry-after   # some, printed only

Each scenario is run twice, each time against a fresh Sandbox on loopback with the same fault
scripted: once with the official ``twilio`` SDK's async API (``Client(sid, token,
http_client=AsyncTwilioHttpClient(...))``, its API domain's ``base_url`` pointed at the sandbox,
``await client.incoming_phone_numbers.create_async(...)``) and once with ``TwilioNumbersClient``
(``sandbox.client()``, its defaults). A row records what the caller was handed (returned or
raised, and when, where time is the point) and what the sandbox sold meanwhile. The type row runs
``mypy --strict`` on ``sdk_types.py``. The last rows are features, stated, not measured.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import importlib.metadata
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from twilio_numbers_async.sandbox import Fault, Sandbox

HERE: Final = Path(__file__).resolve().parent
RESULTS: Final = HERE / "RESULTS.md"
HEADING: Final = "## Beside the official SDK"
# No call may keep the script waiting longer than this: a client that applies no timeout is
# cut off here and recorded as still waiting.
CAP: Final = 10.0
A_NUMBER: Final = {"phone_number": "+14155550100"}
AN_AREA_CODE: Final = {"area_code": "415"}

Buy = Callable[..., Awaitable[Any]]


@dataclass(frozen=True)
class Seen:
    """What one client's caller saw in one scenario, and what the sandbox did meanwhile."""

    said: tuple[str, ...]  # what each call did, in order: "returned the number", "raised ..."
    sold: int  # numbers the sandbox sold
    held: int  # of those, how many the caller was handed
    posts: int  # purchase POSTs the sandbox received
    lookups: int  # GETs of the account's numbers: how a lost answer is settled
    seconds: float  # from the first call to the last answer

    def cell(self, *, timed: bool) -> str:
        said = ", then ".join(self.said)
        when = f" after {self.seconds:.2f} s" if timed else ""
        sent = _count(self.posts, "POST") + (
            f", {_count(self.lookups, 'look-up')}" if self.lookups else ""
        )
        return f"{said}{when} ({sent}): **bought {self.sold}, caller has {self.held}**"


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


@dataclass(frozen=True)
class Row:
    name: str
    scenario: str
    sdk: str
    ours: str
    # The observations behind the cells, for whoever reads them as data (the tests).
    seen: Mapping[str, Seen] = field(default_factory=dict)


# --- the two clients, each as "a way to buy" -----------------------------------------------------


@contextlib.asynccontextmanager
async def sdk_buyer(sandbox: Sandbox, **http_options: Any) -> AsyncIterator[Buy]:
    """The SDK's async path, pointed at ``sandbox``; ``http_options`` go to its HTTP client."""
    from twilio.http.async_http_client import (  # type: ignore[import-untyped]
        AsyncTwilioHttpClient,
    )
    from twilio.rest import Client  # type: ignore[import-untyped]

    # Made inside the running loop: AsyncTwilioHttpClient opens its ClientSession at once.
    http = AsyncTwilioHttpClient(**http_options)
    try:
        client = Client(sandbox.account_sid, sandbox.auth_token, http_client=http)
        # The SDK builds every URL from its domain's base_url (edge and region only ever
        # rewrite a twilio.com host): pointing the API domain here is how it reaches loopback.
        client.api.base_url = sandbox.url
        yield client.incoming_phone_numbers.create_async
    finally:
        await http.close()


@contextlib.asynccontextmanager
async def our_buyer(sandbox: Sandbox, **options: Any) -> AsyncIterator[Buy]:
    async with sandbox.client(**options) as client:
        yield client.create_incoming_phone_number


def hush_sdk_warnings() -> None:
    """Ignore what aiohttp 3.14 says of how the SDK calls it: nothing measured here."""
    # The SDK builds an aiohttp.BasicAuth and passes it as ``auth=``: both deprecated, each
    # warned of on every request.
    for message in ("BasicAuth is deprecated", "The 'auth' parameter is deprecated"):
        warnings.filterwarnings("ignore", message, DeprecationWarning)


def describe(error: BaseException) -> str:
    """``raised `Name` status/code``: both clients' API errors carry ``status`` and ``code``."""
    numbers = [getattr(error, name, None) for name in ("status", "code")]
    shown = "/".join(str(number) for number in numbers if isinstance(number, int))
    return f"raised `{type(error).__name__}`" + (f" {shown}" if shown else "")


async def observe(sandbox: Sandbox, buy: Buy, form: Mapping[str, str], *, retry_once: bool) -> Seen:
    """Buy as a caller would: once, or again after a failure when ``retry_once``."""
    said: list[str] = []
    held: list[str] = []
    started = time.perf_counter()
    for _ in range(2 if retry_once else 1):
        try:
            async with asyncio.timeout(CAP) as cap:
                number = await buy(**form)
        except Exception as error:  # what the caller saw is the observation
            if cap.expired():
                said.append(f"still waiting at {CAP:g} s (cut off)")
                break
            said.append(describe(error))
            continue
        said.append("returned the number")
        held.append(number.sid)
        break
    seconds = time.perf_counter() - started
    sold = {purchase.sid for purchase in sandbox.purchases}
    requests = sandbox.requests
    posts = sum(1 for request in requests if request.method == "POST")
    lookups = sum(
        1
        for request in requests
        if request.method == "GET" and request.path.endswith("/IncomingPhoneNumbers.json")
    )
    return Seen(tuple(said), len(sold), len(sold & set(held)), posts, lookups, seconds)


# --- the scenarios ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Scenario:
    """One fault, met by each client in turn. ``sdk`` lists the SDK's settings to try, each
    with the label its result is shown under (no label: the SDK as its README sets it up)."""

    name: str
    title: str
    faults: tuple[Fault, ...]
    form: Mapping[str, str]
    retry_once: bool = False
    timed: bool = False
    sdk: tuple[tuple[str, Mapping[str, Any]], ...] = (("", {}),)
    ours: Mapping[str, Any] = field(default_factory=dict)

    async def run(self) -> Row:
        seen: dict[str, Seen] = {}
        cells: list[str] = []
        for label, options in self.sdk:
            seen[f"sdk{label}"] = await self._meet(sdk_buyer, options)
            cell = seen[f"sdk{label}"].cell(timed=self.timed)
            cells.append(f"{label}: {cell}" if label else cell)
        seen["ours"] = await self._meet(our_buyer, self.ours)
        return Row(
            self.name,
            self.title,
            "<br>".join(cells),
            seen["ours"].cell(timed=self.timed),
            seen,
        )

    async def _meet(
        self,
        buyer: Callable[..., contextlib.AbstractAsyncContextManager[Buy]],
        options: Mapping[str, Any],
    ) -> Seen:
        async with Sandbox() as sandbox, buyer(sandbox, **options) as buy:
            sandbox.script(*self.faults)
            return await observe(sandbox, buy, self.form, retry_once=self.retry_once)


_RETRIES: Final = "`max_retries=3`"
SCENARIOS: Final = (
    Scenario(
        "lost-number",
        "Buying +14155550100, the answer is lost after the purchase (connection dropped); "
        "the caller retries a failed call once",
        (Fault.drop_after_commit(),),
        A_NUMBER,
        retry_once=True,
    ),
    Scenario(
        "lost-area-code",
        "Buying in area code 415, the answer is lost after the purchase; "
        "the caller retries a failed call once",
        (Fault.drop_after_commit(),),
        AN_AREA_CODE,
        retry_once=True,
    ),
    Scenario(
        "retried-500",
        "Buying in area code 415, a 500 answered after the purchase, "
        f"the SDK's own retries on ({_RETRIES})",
        (Fault.error_after_commit(500),),
        AN_AREA_CODE,
        sdk=(("", {"max_retries": 3}),),
    ),
    Scenario(
        "retry-after",
        "A 429 (20429) with `Retry-After: 1`",
        (Fault.rate_limited(retry_after=1),),
        A_NUMBER,
        timed=True,
        sdk=(("default", {}), (_RETRIES, {"max_retries": 3})),
    ),
    Scenario(
        "500-before",
        "A 500 before the purchase (nothing bought)",
        (Fault.server_error(500),),
        A_NUMBER,
        sdk=(("default", {}), (_RETRIES, {"max_retries": 3})),
    ),
    Scenario(
        "timeout",
        "The 201 comes 5 s late, a 1 s timeout set "
        "(`AsyncTwilioHttpClient(timeout=1)`, `timeout=1`)",
        (Fault.slow_after_commit(5),),
        A_NUMBER,
        timed=True,
        sdk=(("", {"timeout": 1}),),
        ours={"timeout": 1},
    ),
)


def types_row() -> Row:
    """``mypy --strict`` on ``sdk_types.py``: the types of ``sid`` and ``date_created``."""
    title = "What `mypy --strict` says `number.sid`, `number.date_created` are"
    mypy = [sys.executable, "-m", "mypy", "--strict", "--no-error-summary"]
    with tempfile.TemporaryDirectory(prefix="compare-sdk-mypy-") as cache:
        # A fresh cache: an old one can't answer for the packages installed now.
        checked = subprocess.run(  # noqa: S603 - this interpreter's mypy, our own file
            [*mypy, "--cache-dir", cache, str(HERE / "sdk_types.py")],
            cwd=HERE.parent,
            capture_output=True,
            text=True,
            check=False,
        )
    revealed = [
        line.rpartition("Revealed type is ")[2].strip('"')
        for line in checked.stdout.splitlines()
        if "Revealed type is" in line
    ]
    if len(revealed) != 4:
        why = (checked.stderr or checked.stdout).strip().splitlines()
        missing = f"not measured: {why[-1] if why else 'mypy gave no answer'}"
        return Row("types", title, missing, missing)
    sdk_sid, sdk_date, our_sid, our_date = revealed
    untyped = (
        " (mypy: `import-untyped`, the package ships no `py.typed`)"
        if "[import-untyped]" in checked.stdout
        else ""
    )
    return Row(
        "types",
        title,
        f"`{sdk_sid}`, `{sdk_date}`{untyped}",
        f"`{our_sid}`, `{our_date}`",
    )


FEATURES: Final = (
    Row(
        "bulk",
        "Bulk purchase with a journal (a feature)",
        "none: one `create_async` per number, the caller keeps track",
        "`purchase_many(requests, journal=...)`: streamed, a rerun skips what is done and looks "
        "up what was in flight",
    ),
    Row(
        "sandbox",
        "A fake Twilio to test against (a feature)",
        "none",
        "`Sandbox`: Twilio on loopback with scripted and seeded faults (this table was "
        "measured against it)",
    ),
)
NAMES: Final = (*(scenario.name for scenario in SCENARIOS), "types")


async def run(names: Sequence[str] = NAMES) -> list[Row]:
    rows = [await scenario.run() for scenario in SCENARIOS if scenario.name in names]
    if "types" in names:
        rows.append(types_row())
    return rows


# --- the table -------------------------------------------------------------------------------


def table(rows: Sequence[Row], sdk_version: str) -> str:
    lines = [
        f"| scenario | twilio SDK {sdk_version} | twilio_numbers_async |",
        "|:---|:---|:---|",
    ]
    lines += [f"| {row.scenario} | {row.sdk} | {row.ours} |" for row in rows]
    return "\n".join(lines)


def section(body: str, *, sdk_version: str, seconds: float, day: datetime.date) -> str:
    return f"""{HEADING}

What the caller of each client sees when a purchase meets trouble, and what was bought. Each
row is a scenario run with both clients, each against a fresh Sandbox on loopback with the
fault scripted: the SDK as its README sets up async use (`Client(sid, token,
http_client=AsyncTwilioHttpClient())`, `await client.incoming_phone_numbers.create_async(...)`,
its API domain's `base_url` pointed at the Sandbox), ours with its defaults. "Bought" is what
the Sandbox sold, "caller has" how many of those numbers the caller was handed, a look-up a GET
of the account's numbers. See [README.md](README.md#beside-the-official-sdk-compare_sdkpy) for
how it is run.

```console
$ python -m benchmarks.compare_sdk     # {seconds:.0f} s here, on {day.isoformat()}
```

{body}

Two readings of the SDK's source (twilio {sdk_version}) explain what the table shows:
`max_retries` is its own retry option, aiohttp-retry's `ExponentialRetry` underneath, which
sends a request again after any 5xx whatever its method, a purchase too; and
`AsyncTwilioHttpClient(timeout=...)` is stored but never used: its `request()` hands aiohttp
only the timeout of the call, which `create_async` leaves at `None`, and aiohttp reads that
`None` as no timeout at all (not even its session's default of 5 minutes).
"""


def replace_section(text: str, new: str) -> str:
    """``text`` with its "Beside the official SDK" section replaced by ``new`` (or appended)."""
    lines = text.splitlines(keepends=True)
    starts = [i for i, line in enumerate(lines) if line.rstrip() == HEADING]
    if not starts:
        return text.rstrip("\n") + "\n\n" + new
    start = starts[0]
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
    after = "".join(lines[end:])
    return "".join(lines[:start]) + new + ("\n" + after if after else "")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.partition("\n")[0])
    parser.add_argument(
        "--only",
        type=lambda text: [name.strip() for name in text.split(",")],
        help=f"a comma-separated subset of {','.join(NAMES)} (printed, not written)",
    )
    parser.add_argument(
        "--no-write", action="store_true", help=f"print only, leave {RESULTS.name} alone"
    )
    args = parser.parse_args(argv)
    unknown = sorted(set(args.only or ()) - set(NAMES))
    if unknown:
        parser.error(f"unknown scenario {', '.join(unknown)}: expected some of {','.join(NAMES)}")
    hush_sdk_warnings()
    sdk_version = importlib.metadata.version("twilio")
    started = time.perf_counter()
    rows = asyncio.run(run(args.only or NAMES))
    seconds = time.perf_counter() - started
    body = table([*rows, *(() if args.only else FEATURES)], sdk_version)
    print(body)
    print(f"\n({seconds:.1f} s)")
    if args.only or args.no_write:
        return
    new = section(body, sdk_version=sdk_version, seconds=seconds, day=datetime.date.today())
    RESULTS.write_text(replace_section(RESULTS.read_text(encoding="utf-8"), new), "utf-8")
    print(f"written to {RESULTS.relative_to(HERE.parent)}, section {HEADING[3:]!r}")


if __name__ == "__main__":
    main()
