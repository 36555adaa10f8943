"""``purchase_many`` against a real, faulty server: one outcome each, nothing bought twice,
nothing bought unknown to the caller, and a run killed with SIGKILL resumes from its journal.

The sandbox records every purchase with the request's ``friendly_name`` tag, which is what ties
what it sold to what the caller was told.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sys
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests._bulk_worker import batch, tag
from twilio_numbers_async import PurchaseOutcome, RetryPolicy, TwilioNumbersClient
from twilio_numbers_async.bulk import OutcomeStatus
from twilio_numbers_async.sandbox import Faults, Sandbox

ROOT = Path(__file__).resolve().parents[2]
FAULTY = Faults(
    latency=(0.0, 0.003),
    rate_limited=0.06,
    retry_after=0.05,
    server_error=0.05,
    error_after_commit=0.04,
    drop_before_commit=0.03,
    drop_after_commit=0.04,
)


def quick_client(sandbox: Sandbox) -> TwilioNumbersClient:
    # Real sleeps, but short ones: the sandbox's faults are what is under test here.
    return sandbox.client(
        rate_limit=None, retry=RetryPolicy(initial_delay=0.005, max_delay=0.05, max_attempts=8)
    )


def audit(sandbox: Sandbox, outcomes: list[PurchaseOutcome], count: int) -> None:
    """The guarantees, checked against the sandbox's own records."""
    assert sorted(o.index for o in outcomes) == list(range(count)), "exactly one outcome each"
    sales = Counter(purchase.friendly_name for purchase in sandbox.purchases)
    doubles = {name: n for name, n in sales.items() if n > 1}
    assert doubles == {}, f"bought twice: {doubles}"
    told = {tag(o.index): o.status for o in outcomes}
    untracked = {name for name in sales if told[name] is OutcomeStatus.FAILED}
    assert untracked == set(), f"sold, but the caller was told it failed: {untracked}"
    sids = {purchase.sid for purchase in sandbox.purchases}
    phantoms = [o.index for o in outcomes if o.number is not None and o.number.sid not in sids]
    assert phantoms == [], "reported bought, never sold"


@pytest.fixture
async def faulty() -> AsyncIterator[Sandbox]:
    async with Sandbox(seed=11, faults=FAULTY) as sandbox:
        yield sandbox


async def test_a_faulty_batch_ends_with_one_outcome_each_and_no_double(
    faulty: Sandbox, tmp_path: Path
) -> None:
    count = 300
    async with quick_client(faulty) as client:
        outcomes = [
            o
            async for o in client.purchase_many(
                batch(count), concurrency=16, journal=tmp_path / "j.jsonl"
            )
        ]
    audit(faulty, outcomes, count)
    statuses = Counter(o.status for o in outcomes)
    assert statuses[OutcomeStatus.BOUGHT] > count * 0.8
    assert any(o.reconciled for o in outcomes), "the faults should have forced some look-ups"
    assert any(o.attempts > 1 for o in outcomes)
    unknown = [o for o in outcomes if o.status is OutcomeStatus.UNKNOWN]
    assert all(o.request.phone_number is None for o in unknown), "given numbers are settled"

    posts = sum(1 for r in faulty.requests if r.method == "POST")
    async with quick_client(faulty) as client:
        again = [o async for o in client.purchase_many(batch(count), journal=tmp_path / "j.jsonl")]
    assert sum(1 for r in faulty.requests if r.method == "POST") == posts, "a rerun POSTs nothing"
    assert all(o.from_journal for o in again)
    assert Counter(o.status for o in again) == statuses


async def test_a_run_killed_mid_way_resumes_without_buying_twice(tmp_path: Path) -> None:
    count = 240
    journal = tmp_path / "buy.jsonl"
    async with Sandbox(seed=5, faults=Faults(latency=0.01, drop_after_commit=0.05)) as sandbox:
        worker = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tests._bulk_worker",
            sandbox.url,
            sandbox.account_sid,
            sandbox.auth_token,
            str(journal),
            str(count),
            cwd=ROOT,
        )
        try:
            await _wait_for_outcomes(journal, at_least=count // 4, worker=worker)
        finally:
            with contextlib.suppress(ProcessLookupError):
                worker.send_signal(signal.SIGKILL)
            await worker.wait()
        assert worker.returncode == -signal.SIGKILL
        recorded = _kinds(journal)
        assert recorded["outcome"] < count, "killed before the end"
        assert recorded["intent"] > recorded["outcome"], "killed with purchases in flight"

        async with quick_client(sandbox) as client:
            outcomes = [o async for o in client.purchase_many(batch(count), journal=journal)]
        audit(sandbox, outcomes, count)
        assert sum(o.from_journal for o in outcomes) >= count // 4
        # In flight when killed: given numbers were looked up, area codes are reported unknown.
        resumed_unknown = [o for o in outcomes if o.status is OutcomeStatus.UNKNOWN]
        assert all(o.request.phone_number is None for o in resumed_unknown)


async def test_closing_early_leaves_a_journal_a_rerun_completes(tmp_path: Path) -> None:
    count = 60
    journal = tmp_path / "buy.jsonl"
    async with Sandbox(seed=3, faults=Faults(latency=0.05)) as sandbox:
        async with quick_client(sandbox) as client:
            outcomes = client.purchase_many(batch(count), concurrency=8, journal=journal)
            first = await anext(outcomes)
            await outcomes.aclose()  # type: ignore[attr-defined]
            # The sandbox's own handlers share this loop; the purchases' tasks must be gone.
            assert [t for t in asyncio.all_tasks() if t.get_name().startswith("purchase #")] == []
            rest = [o async for o in client.purchase_many(batch(count), journal=journal)]
        audit(sandbox, [first, *(o for o in rest if o.index != first.index)], count)


async def _wait_for_outcomes(
    journal: Path, *, at_least: int, worker: asyncio.subprocess.Process
) -> None:
    deadline = asyncio.get_running_loop().time() + 30
    while _kinds(journal)["outcome"] < at_least:
        if worker.returncode is not None:
            pytest.fail(f"the worker ended early with {worker.returncode}")
        if asyncio.get_running_loop().time() > deadline:
            pytest.fail("the worker recorded too few outcomes in 30 s")
        await asyncio.sleep(0.01)


def _kinds(journal: Path) -> Counter[str]:
    if not journal.exists():
        return Counter()
    kinds: Counter[str] = Counter()
    for line in journal.read_bytes().splitlines():
        with contextlib.suppress(ValueError):  # the line being written when we looked
            kinds[json.loads(line)["kind"]] += 1
    return kinds
