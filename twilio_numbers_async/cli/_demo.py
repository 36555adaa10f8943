"""The demo: a bulk purchase against an in-process sandbox with faults on, and its audit
(:mod:`._audit`), shown as tables or one JSON document."""

from __future__ import annotations

import asyncio
import contextlib
from argparse import Namespace
from collections import Counter
from collections.abc import Callable, Mapping
from typing import Any, Final

import attrs

from twilio_numbers_async._purchase import AreaCodes
from twilio_numbers_async.bulk import BulkProgress
from twilio_numbers_async.retry import RetryPolicy
from twilio_numbers_async.sandbox import Faults, Sandbox

from ._audit import Audit, Claim, audit, demo_requests
from ._console import Output
from ._errors import say
from ._tally import Tally, summary_rows

__all__ = ["DemoReport", "DemoSettings", "run", "run_demo"]

# Fast enough for a demo, patient enough for the faults: a Retry-After still wins over these.
_RETRY: Final = RetryPolicy(max_attempts=6, initial_delay=0.05, max_delay=1.0, max_elapsed=30.0)
# Below Faults.demo()'s slow answers (1 s), so that some attempts time out, as on a bad day.
_TIMEOUT: Final = 0.5
# What an unknown outcome means, as the summary explains it.
_UNKNOWN: Final[Mapping[AreaCodes, str]] = {
    "search": "maybe bought: an answer was lost and its look-up failed too",
    "direct": "maybe bought: a POSTed area code's answer was lost (nothing to look up)",
}


# --- the run --------------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class DemoSettings:
    """How big and how rough the demo is."""

    count: int = 300
    faults: Faults = attrs.Factory(Faults.demo)
    #: How the faults were asked for (``"demo"``, ``"none"``, ``"rate_limited=0.1"``...).
    faults_label: str = "demo"
    seed: int = 0
    #: Purchases in flight at most; ``None``: as many as the adaptive limit allows.
    concurrency: int | None = None
    #: The sandbox's concurrency limit (429 / 20429 beyond it), which the client finds.
    account_limit: int = 20
    #: Purchases per second allowed by the client's token bucket; ``None``: no limit.
    rate: float | None = None
    #: How the client buys an area code: through a search, or by POSTing it ("direct").
    area_codes: AreaCodes = "search"


@attrs.frozen(kw_only=True)
class DemoReport:
    """What the demo did and what its audit found."""

    settings: DemoSettings
    tally: Tally
    audit: Audit
    elapsed: float
    #: Purchases the sandbox recorded (bought outcomes, plus any behind "unknown" ones).
    sold_by_sandbox: int
    #: Faults the sandbox injected, by name.
    faults_injected: dict[str, int]

    @property
    def purchases_per_s(self) -> float:
        """Numbers bought per second of the bulk purchase."""
        return self.tally.progress.bought / self.elapsed if self.elapsed > 0 else 0.0

    def to_json(self) -> dict[str, Any]:
        """The report as one JSON object (what ``demo --json`` prints)."""
        progress, found = self.tally.progress, self.audit
        return {
            "requested": self.settings.count,
            "purchased": progress.bought,
            "failed": progress.failed,
            "unknown": progress.unknown,
            "failed_by_reason": dict(self.tally.failed_by_reason.most_common()),
            "reconciled": self.tally.reconciled,
            "retries": self.tally.retries,
            "rate_limited": self.tally.rate_limited,
            "double_purchases": len(found.double_purchases),
            "untracked_purchases": len(found.untracked_purchases),
            "phantom_purchases": len(found.phantom_purchases),
            "audit_passed": found.passed,
            "audit_findings": attrs.asdict(found),
            "sold_by_sandbox": self.sold_by_sandbox,
            "faults_injected": self.faults_injected,
            "elapsed_s": round(self.elapsed, 3),
            "purchases_per_s": round(self.purchases_per_s, 1),
            "seed": self.settings.seed,
            "faults": self.settings.faults_label,
            "concurrency": self.settings.concurrency,
            "account_limit": self.settings.account_limit,
            "concurrency_found": self.tally.progress.concurrency,
            "rate_limit": self.settings.rate,
            "area_codes": self.settings.area_codes,
        }


def _timeout(faults: Faults) -> float:
    # Latency the user asked for is not a fault to time out on: add room for it.
    latency = faults.latency
    return _TIMEOUT + 2 * (max(latency) if isinstance(latency, tuple) else latency)


async def run_demo(
    settings: DemoSettings, *, on_outcome: Callable[[BulkProgress], None] | None = None
) -> DemoReport:
    """Run the demo: start a sandbox, buy ``settings.count`` numbers from it, audit the result.

    ``on_outcome`` is called with the counters after each outcome (for a progress bar).
    """
    requests = demo_requests(settings.count)  # checks count before anything starts
    tally = Tally()
    claims: list[Claim] = []
    sandbox = Sandbox(
        faults=settings.faults,
        seed=settings.seed,
        # Enough stock in each area code that the demo never runs out by accident.
        area_code_stock=max(1000, settings.count),
        max_concurrency=settings.account_limit,
    )
    loop = asyncio.get_running_loop()
    async with sandbox:
        client = sandbox.client(
            retry=_RETRY,
            timeout=_timeout(settings.faults),
            rate_limit=settings.rate,
            max_concurrency=settings.concurrency,
            on_retry=tally.on_retry,
            area_codes=settings.area_codes,
        )
        async with client:
            started = loop.time()
            outcomes = client.purchase_many(
                requests, concurrency=settings.concurrency, progress=tally.progress
            )
            async with contextlib.aclosing(outcomes):
                async for outcome in outcomes:
                    tally.add(outcome)
                    claims.append(Claim.of(outcome))
                    if on_outcome is not None:
                        on_outcome(tally.progress)
            elapsed = loop.time() - started
        purchases = sandbox.purchases
        injected = Counter(record.fault for record in sandbox.requests if record.fault)
    return DemoReport(
        settings=settings,
        tally=tally,
        audit=audit(claims, purchases),
        elapsed=elapsed,
        sold_by_sandbox=len(purchases),
        faults_injected=dict(sorted(injected.items())),
    )


# --- the command ------------------------------------------------------------------------------


async def run(args: Namespace, out: Output) -> bool:
    """``twilio-numbers demo``: buy numbers from an in-process sandbox with faults on, and
    audit what it sold."""
    label, faults = args.faults
    settings = DemoSettings(
        count=args.count,
        faults=faults,
        faults_label=label,
        seed=args.seed,
        concurrency=args.concurrency,
        account_limit=args.account_limit,
        rate=args.rate,
        area_codes=args.area_codes,
    )
    say("requests go to a sandbox in this process, on this machine: nothing real is bought")
    if not out.json_mode:
        rate = f"{settings.rate:g}/s" if settings.rate else "off"
        cap = f"at most {settings.concurrency}" if settings.concurrency else "found by the client"
        out.line(
            f"Buying {settings.count} numbers from a sandbox on loopback "
            f"(faults: {label}, seed {settings.seed}, account limit {settings.account_limit} "
            f"in flight, concurrency {cap}, rate limit {rate}, area codes: {settings.area_codes})"
        )
    with out.progress(settings.count, "Buying") as show:
        report = await run_demo(settings, on_outcome=show)
    if out.json_mode:
        out.json(report.to_json())
    else:
        _show(out, report)
    return report.audit.passed


def _show(out: Output, report: DemoReport) -> None:
    rows = [
        ("requested", str(report.settings.count), ""),
        *summary_rows(report.tally, unknown=_UNKNOWN[report.settings.area_codes]),
        ("elapsed", f"{report.elapsed:.2f} s", f"{report.purchases_per_s:.0f} purchases/s"),
        ("sold by the sandbox", str(report.sold_by_sandbox), _sold(report)),
        ("faults injected", str(sum(report.faults_injected.values())), _faults(report)),
    ]
    out.table("Outcomes", rows)
    found = report.audit
    out.table(
        "Audit against the sandbox's records",
        [
            ("double purchases", *_finding(found.double_purchases, "sold twice")),
            ("untracked purchases", *_finding(found.untracked_purchases, "sold, told failed")),
            ("phantom purchases", *_finding(found.phantom_purchases, "told bought, not sold")),
        ],
    )
    if found.passed:
        out.line(
            "Audit passed: no number was bought twice, and every purchase is accounted for.",
            style="bold green",
        )
    else:
        out.line("AUDIT FAILED: see the tags above.", style="bold red")


def _sold(report: DemoReport) -> str:
    if report.tally.progress.unknown:
        return "bought, and some behind unknown"
    return "bought"


def _faults(report: DemoReport) -> str:
    return ", ".join(f"{name} {count}" for name, count in report.faults_injected.items())


def _finding(tags: tuple[str, ...], meaning: str) -> tuple[str, str]:
    shown = ", ".join(tags[:10]) + (" ..." if len(tags) > 10 else "")
    return str(len(tags)), f"{meaning}: {shown}" if tags else meaning
