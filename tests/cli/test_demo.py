"""``twilio-numbers demo``, and the audit that proves it bought nothing twice."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from typing import Any

import pytest

from tests.cli._run import clean_env, run_cli
from tests.conftest import bought_number
from twilio_numbers_async import (
    MobileNumberPurchase,
    NumberPurchase,
    TwilioApiError,
)
from twilio_numbers_async.bulk import Bought, NotBought, OutcomeStatus
from twilio_numbers_async.cli import ExitCode, _demo, main
from twilio_numbers_async.cli._audit import Audit, Claim, audit, demo_requests, tag
from twilio_numbers_async.cli._demo import DemoReport, DemoSettings, run_demo
from twilio_numbers_async.cli._tally import Tally
from twilio_numbers_async.sandbox import Faults, PurchaseRecord

BOUGHT, FAILED, UNKNOWN = OutcomeStatus.BOUGHT, OutcomeStatus.FAILED, OutcomeStatus.UNKNOWN


# --- demo ----------------------------------------------------------------------------------------


def test_demo_json_with_faults_passes_its_audit_and_counts_add_up() -> None:
    run = run_cli("demo", "--json", "--count", "200", "--seed", "7")

    assert run.code == 0, run.stderr
    report = run.json()
    assert report["requested"] == 200
    assert report["purchased"] + report["failed"] + report["unknown"] == 200
    assert report["double_purchases"] == 0
    assert report["untracked_purchases"] == 0
    assert report["phantom_purchases"] == 0
    assert report["audit_passed"] is True
    assert sum(report["failed_by_reason"].values()) == report["failed"]
    # The failures by design: 10 of each in 200 requests.
    assert report["failed_by_reason"]["21452"] >= 1
    assert report["failed_by_reason"]["21422"] >= 1
    assert report["faults"] == "demo"
    assert report["seed"] == 7
    assert sum(report["faults_injected"].values()) > 0
    assert report["retries"] >= report["rate_limited"] > 0
    # Every purchase reported bought is one the sandbox sold; unknowns may hide more.
    assert report["purchased"] <= report["sold_by_sandbox"]
    assert report["sold_by_sandbox"] <= report["purchased"] + report["unknown"]
    assert report["elapsed_s"] < 30


def test_demo_plain_output_shows_the_summary_and_the_audit() -> None:
    run = run_cli("demo", "--count", "40")

    assert run.code == 0, run.stderr
    for label in ("requested", "bought", "failed", "unknown", "429s", "concurrency", "elapsed"):
        assert label in run.stdout
    assert "double purchases" in run.stdout
    assert "Audit passed" in run.stdout
    assert "\x1b[" not in run.stdout  # no colours when stdout is not a terminal
    assert "requests go to a sandbox in this process" in run.stderr


def test_demo_says_some_sales_are_behind_unknown_outcomes_only_when_some_are() -> None:
    plain = run_cli("demo", "--count", "40", "--faults", "none")
    lossy = run_cli(
        *("demo", "--count", "40", "--area-codes", "direct"),
        *("--faults", "drop_after_commit=0.5", "--seed", "1"),
    )

    [sold] = [line for line in plain.stdout.splitlines() if "sold by the sandbox" in line]
    assert sold.split() == ["sold", "by", "the", "sandbox", "36", "bought"]
    assert "unknown" in lossy.stdout
    [sold] = [line for line in lossy.stdout.splitlines() if "sold by the sandbox" in line]
    assert sold.endswith("bought, and some behind unknown")


async def test_demo_without_faults_fails_only_by_design() -> None:
    report = await run_demo(DemoSettings(count=40, faults=Faults(), faults_label="none"))

    progress = report.tally.progress
    # In every 20 requests, one asks for area code 533 and one for +15005550000.
    assert (progress.bought, progress.failed, progress.unknown) == (36, 4, 0)
    assert dict(report.tally.failed_by_reason) == {"21452": 2, "21422": 2}
    assert report.tally.retries == report.tally.reconciled == 0
    assert report.sold_by_sandbox == 36
    assert report.audit.passed


async def test_demo_area_codes_bought_through_a_search_end_nothing_unknown() -> None:
    # The demo's faults lose answers after purchases; an area code POSTed as it is can't be
    # looked up, one bought as a number a search found can. The same seed, both ways.
    search = await run_demo(DemoSettings(count=300, seed=0))
    direct = await run_demo(DemoSettings(count=300, seed=0, area_codes="direct"))

    assert search.tally.progress.unknown == 0
    assert direct.tally.progress.unknown > 0
    for report in (search, direct):
        assert report.audit.passed
        assert report.tally.reconciled > 0
    assert (search.to_json()["area_codes"], direct.to_json()["area_codes"]) == ("search", "direct")


async def test_the_same_seed_gives_the_same_outcomes() -> None:
    def counts(report: DemoReport) -> dict[str, Any]:
        found = report.to_json()
        return {key: found[key] for key in ("purchased", "failed", "unknown", "failed_by_reason")}

    # Through a search, which candidate a purchase takes depends on timing, and so do the
    # faults its POST meets; what each request ends as does not.
    settings = DemoSettings(count=200, seed=3)
    assert counts(await run_demo(settings)) == counts(await run_demo(settings))


def test_demo_area_codes_option() -> None:
    run = run_cli("demo", "--count", "20", "--area-codes", "direct")

    assert run.code == 0, run.stderr
    assert "area codes: direct" in run.stdout


def test_demo_requests_are_tagged_distinct_and_avoid_the_magic_numbers() -> None:
    requests = list(demo_requests(400))

    tags = [request.friendly_name for request in requests]
    assert tags == [tag(index) for index in range(400)]
    numbers = [r.phone_number for r in requests if r.phone_number not in (None, "+15005550000")]
    assert len(numbers) == len(set(numbers))
    assert "+15005550006" not in numbers
    assert not any(getattr(r, "area_code", None) == "500" for r in requests)
    assert any(isinstance(r, MobileNumberPurchase) for r in requests)
    with pytest.raises(ValueError, match="from 1 to"):
        next(demo_requests(0))


def test_demo_exits_1_when_the_audit_finds_a_double_purchase(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    twice = [sold("demo-000000", "PN1"), sold("demo-000000", "PN2")]
    found = audit([Claim("demo-000000", BOUGHT, "PN1", "+14155550100")], twice)

    async def fake_run_demo(settings: DemoSettings, **_: Any) -> DemoReport:
        return DemoReport(
            settings=settings,
            tally=Tally(),
            audit=found,
            elapsed=0.1,
            sold_by_sandbox=2,
            faults_injected={},
        )

    monkeypatch.setattr(_demo, "run_demo", fake_run_demo)

    assert main(["demo", "--json", "--count", "1"]) == ExitCode.FAILED
    report = json.loads(capsys.readouterr().out)
    assert report["double_purchases"] == 1
    assert report["audit_findings"]["double_purchases"] == ["demo-000000"]


def test_demo_ctrl_c_exits_130() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "twilio_numbers_async", "demo", "--count", "5000", "--rate", "20"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=clean_env(),
    )
    try:
        assert process.stdout is not None
        assert process.stdout.readline().startswith("Buying")  # the purchase is under way
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=30)
    finally:  # never leave a demo of 5,000 purchases running behind a failed assertion
        if process.poll() is None:
            process.kill()
            process.communicate()

    assert process.returncode == ExitCode.INTERRUPTED
    assert "interrupted" in stderr
    assert "Traceback" not in stderr


# --- the audit -------------------------------------------------------------------------------


def sold(name: str, sid: str, phone_number: str = "+14155550100") -> PurchaseRecord:
    return PurchaseRecord(
        sid=sid,
        phone_number=phone_number,
        account_sid="AC" + "0" * 32,
        endpoint="IncomingPhoneNumbers.json",
        form={"FriendlyName": name},
        friendly_name=name,
        request_id="RQ" + "0" * 32,
    )


def test_audit_passes_when_every_sale_matches_a_claim() -> None:
    claims = [
        Claim("a", BOUGHT, "PN1", "+14155550100"),
        Claim("b", UNKNOWN),  # sold behind an unknown outcome: that is what unknown means
        Claim("c", UNKNOWN),  # not sold behind an unknown outcome: fine as well
        Claim("d", FAILED),
    ]
    purchases = [sold("a", "PN1"), sold("b", "PN2", "+14155550101")]

    assert audit(claims, purchases) == Audit()
    assert audit(claims, purchases).passed


def test_audit_finds_a_tag_sold_twice() -> None:
    found = audit([Claim("a", BOUGHT, "PN1", "+14155550100")], [sold("a", "PN1"), sold("a", "PN2")])

    assert found.double_purchases == ("a",)
    assert not found.passed


def test_audit_finds_a_sale_the_caller_thinks_failed_or_never_asked_for() -> None:
    found = audit([Claim("a", FAILED)], [sold("a", "PN1"), sold("stranger", "PN2")])

    assert found.untracked_purchases == ("a", "stranger")
    assert not found.passed


def test_audit_finds_a_purchase_reported_but_never_sold_for_that_request() -> None:
    claims = [
        Claim("a", BOUGHT, "PN9", "+14155550100"),  # a SID the sandbox never issued
        Claim("b", BOUGHT, "PN1", "+14155550100"),  # sold, but for another request
        Claim("c", BOUGHT, "PN3", "+14155550199"),  # the SID, with another number
    ]
    purchases = [sold("b-other", "PN1"), sold("c", "PN3", "+14155550103")]

    found = audit(claims, purchases)

    assert found.phantom_purchases == ("a", "b", "c")
    assert found.untracked_purchases == ("b-other",)


def test_claim_of_an_outcome() -> None:
    request = NumberPurchase(area_code="415", friendly_name="demo-000001")
    number = bought_number(sid="PN" + "1" * 32, phone_number="+14155550100")
    error = TwilioApiError(status=400, code=21452)

    bought = Claim.of(Bought(index=1, request=request, number=number))
    failed = Claim.of(NotBought(index=1, request=request, error=error))

    assert bought == Claim("demo-000001", BOUGHT, "PN" + "1" * 32, "+14155550100")
    assert failed == Claim("demo-000001", FAILED)
