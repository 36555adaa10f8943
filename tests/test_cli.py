"""The command line, end to end as a user runs it, plus its pure parts (CSV reader, audit).

Commands that need a Twilio get a :class:`Sandbox` served from the test's own event loop, and the
CLI runs as a subprocess (``asyncio.create_subprocess_exec``) so the sandbox keeps serving.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs
import pytest

from twilio_numbers_async import (
    AuthenticationError,
    IncomingPhoneNumber,
    MobileNumberPurchase,
    NumberPurchase,
    PurchaseOutcome,
    TwilioApiError,
    TwilioNumbersClient,
    _commands,
    cli,
)
from twilio_numbers_async._csv import CsvError, check_csv, columns, read_requests
from twilio_numbers_async._demo import (
    Audit,
    Claim,
    DemoReport,
    DemoSettings,
    audit,
    demo_requests,
    run_demo,
    tag,
)
from twilio_numbers_async._fields import optional_fields
from twilio_numbers_async._tally import Tally
from twilio_numbers_async.bulk import OutcomeStatus
from twilio_numbers_async.sandbox import Fault, Faults, PurchaseRecord, Sandbox

from .conftest import posts

BOUGHT, FAILED, UNKNOWN = OutcomeStatus.BOUGHT, OutcomeStatus.FAILED, OutcomeStatus.UNKNOWN
MOBILE_ENDPOINT = "IncomingPhoneNumbers/Mobile.json"


# --- running the CLI ---------------------------------------------------------------------------


@attrs.frozen
class Run:
    code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)


def clean_env(**extra: str) -> dict[str, str]:
    """The test's environment without any Twilio credentials, plus ``extra``."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("TWILIO_")}
    return {**env, **extra}


def sandbox_env(sandbox: Sandbox) -> dict[str, str]:
    return clean_env(TWILIO_ACCOUNT_SID=sandbox.account_sid, TWILIO_AUTH_TOKEN=sandbox.auth_token)


def run_cli(*args: str, env: Mapping[str, str] | None = None) -> Run:
    """The CLI in a subprocess, for commands that need no server from this test."""
    done = subprocess.run(  # noqa: S603 - our own module, with arguments the test chose
        [sys.executable, "-m", "twilio_numbers_async", *args],
        capture_output=True,
        text=True,
        env=clean_env() if env is None else dict(env),
        timeout=60,
        check=False,
    )
    return Run(done.returncode, done.stdout, done.stderr)


async def run_cli_async(*args: str, env: Mapping[str, str]) -> Run:
    """The CLI in a subprocess, while this test's event loop keeps a sandbox serving."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "twilio_numbers_async",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=dict(env),
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode is not None
    return Run(process.returncode, stdout.decode(), stderr.decode())


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
    for label in ("requested", "bought", "failed", "unknown", "429s honoured", "elapsed"):
        assert label in run.stdout
    assert "double purchases" in run.stdout
    assert "Audit passed" in run.stdout
    assert "\x1b[" not in run.stdout  # no colours when stdout is not a terminal


async def test_demo_without_faults_fails_only_by_design() -> None:
    report = await run_demo(DemoSettings(count=40, faults=Faults(), faults_label="none"))

    progress = report.tally.progress
    # In every 20 requests, one asks for area code 533 and one for +15005550000.
    assert (progress.bought, progress.failed, progress.unknown) == (36, 4, 0)
    assert dict(report.tally.failed_by_reason) == {"21452": 2, "21422": 2}
    assert report.tally.retries == report.tally.reconciled == 0
    assert report.sold_by_sandbox == 36
    assert report.audit.passed


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

    monkeypatch.setattr(_commands, "run_demo", fake_run_demo)

    assert cli.main(["demo", "--json", "--count", "1"]) == cli.ExitCode.FAILED
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

    assert process.returncode == cli.ExitCode.INTERRUPTED
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


def test_an_unreadable_201_is_matched_by_its_sid() -> None:
    # A ResponseParseError is a purchase: it names its SID, and no number.
    unreadable = Claim("a", BOUGHT, "PN1", None)
    assert audit([unreadable], [sold("a", "PN1")]).passed
    assert audit([unreadable], [sold("a", "PN2")]).phantom_purchases == ("a",)


def test_claim_of_an_outcome() -> None:
    request = NumberPurchase(area_code="415", friendly_name="demo-000001")
    number = IncomingPhoneNumber(sid="PN" + "1" * 32, phone_number="+14155550100")
    error = TwilioApiError(status=400, code=21452)

    bought = Claim.of(PurchaseOutcome(index=1, request=request, number=number))
    failed = Claim.of(PurchaseOutcome(index=1, request=request, error=error))

    assert bought == Claim("demo-000001", BOUGHT, "PN" + "1" * 32, "+14155550100")
    assert failed == Claim("demo-000001", FAILED)


# --- buy -------------------------------------------------------------------------------------


async def test_buy_a_given_number_with_fields_through_base_url() -> None:
    async with Sandbox() as sandbox:
        run = await run_cli_async(
            "buy",
            "+14155550100",
            "--base-url",
            sandbox.url,
            "--friendly-name",
            "support line",
            "--sms-url",
            "https://example.com/sms",
            "--voice-method",
            "GET",
            "--no-voice-caller-id-lookup",
            "--json",
            env=sandbox_env(sandbox),
        )

        assert run.code == 0, run.stderr
        number = run.json()
        assert number["phone_number"] == "+14155550100"
        assert number["friendly_name"] == "support line"
        [purchase] = sandbox.purchases
        assert number["sid"] == purchase.sid
        assert purchase.form == {
            "PhoneNumber": "+14155550100",
            "FriendlyName": "support line",
            "SmsUrl": "https://example.com/sms",
            "VoiceMethod": "GET",
            "VoiceCallerIdLookup": "false",
        }


async def test_buy_by_area_code_and_mobile_in_plain_text() -> None:
    async with Sandbox() as sandbox:
        env = sandbox_env(sandbox)
        by_area = await run_cli_async(
            "buy", "--area-code", "415", "--base-url", sandbox.url, env=env
        )
        mobile = await run_cli_async(
            "buy", "--mobile", "+447700900123", "--base-url", sandbox.url, env=env
        )

        assert by_area.code == mobile.code == 0, by_area.stderr + mobile.stderr
        area_purchase, mobile_purchase = sandbox.purchases
        assert area_purchase.phone_number.startswith("+1415")
        assert f"sid            {area_purchase.sid}" in by_area.stdout
        assert mobile_purchase.endpoint == MOBILE_ENDPOINT
        assert "+447700900123" in mobile.stdout


async def test_buy_failures_exit_1_and_bad_credentials_exit_2_without_leaking_them() -> None:
    async with Sandbox() as sandbox:
        unavailable = await run_cli_async(
            "buy", "+15005550000", "--base-url", sandbox.url, env=sandbox_env(sandbox)
        )
        wrong_token = "f" * 32
        env = {**sandbox_env(sandbox), "TWILIO_AUTH_TOKEN": wrong_token}
        refused = await run_cli_async("buy", "+14155550100", "--base-url", sandbox.url, env=env)

    assert unavailable.code == cli.ExitCode.FAILED
    assert "21422" in unavailable.stderr
    assert "pick another" in unavailable.stderr  # the error's hint
    assert refused.code == cli.ExitCode.BAD_INPUT
    assert "TWILIO_AUTH_TOKEN" in refused.stderr
    assert wrong_token not in refused.stdout + refused.stderr
    assert "Traceback" not in unavailable.stderr + refused.stderr


def test_buy_without_credentials_exits_2_naming_the_variables() -> None:
    run = run_cli("buy", "--area-code", "415", "--json")

    assert run.code == cli.ExitCode.BAD_INPUT
    assert "TWILIO_ACCOUNT_SID" in run.stderr
    assert "TWILIO_AUTH_TOKEN" in run.stderr
    assert run.json()["exit_code"] == 2  # --json: stdout is still one JSON document


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["buy"], "give a PHONE_NUMBER"),
        (["buy", "+14155550100", "--area-code", "415"], "give a PHONE_NUMBER"),
        (["buy", "--mobile", "--area-code", "415"], "--mobile"),
        (["buy", "--area-code", "415", "--voice-method", "PUT"], "invalid choice"),
        (["demo", "--count", "0"], "between"),
        (["demo", "--faults", "lightning=1"], "unknown fault"),
        (["demo", "--rate", "-1"], "not a rate"),
        (["sandbox", "--host", "0.0.0.0"], "--allow-remote"),  # noqa: S104
    ],
)
def test_bad_options_exit_2(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(argv) == cli.ExitCode.BAD_INPUT
    assert message in capsys.readouterr().err


def test_a_bad_field_value_exits_2_naming_its_option(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("TWILIO_ACCOUNT_SID", "AC" + "0" * 32)
    monkeypatch.setenv("TWILIO_AUTH_TOKEN", "token")

    code = cli.main(["buy", "--area-code", "415", "--sms-url", "ftp://example.com"])

    assert code == cli.ExitCode.BAD_INPUT
    assert (
        "--sms-url: 'ftp://example.com' is not an absolute http(s) URL" in capsys.readouterr().err
    )


def test_buy_has_an_option_for_every_optional_field(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["buy", "--help"]) == 0
    text = capsys.readouterr().out

    names = {field.name for field in attrs.fields(NumberPurchase)} - {"phone_number", "area_code"}
    assert {field.name for field in optional_fields()} == names
    for name in names:
        assert "--" + name.replace("_", "-") in text
    assert "--no-voice-caller-id-lookup" in text
    assert "for a sandbox or a proxy" in " ".join(text.split())


def test_version_and_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--version"]) == 0
    assert capsys.readouterr().out.startswith("twilio-numbers ")
    assert cli.main(["--help"]) == 0
    assert "exit codes" in capsys.readouterr().out


def test_without_rich_it_says_how_to_install_it() -> None:
    code = (
        "import sys; sys.modules['rich'] = None\n"
        "from twilio_numbers_async.cli import main\n"
        "sys.exit(main(['demo']))"
    )
    done = subprocess.run(  # noqa: S603
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )

    assert done.returncode == 2
    assert "pip install 'twilio-numbers-async[cli]'" in done.stderr


def test_errors_map_to_exit_codes() -> None:
    refused = AuthenticationError(status=401, code=20003, message="Authenticate")
    rejected = TwilioApiError(status=400, code=21452, message="none left")

    assert cli._describe(refused)[0] == cli.ExitCode.BAD_INPUT
    assert "TWILIO_ACCOUNT_SID" in cli._describe(refused)[1]
    code, message = cli._describe(rejected)
    assert code == cli.ExitCode.FAILED
    assert message.startswith("HTTP 400 21452: none left (no numbers are available in that area")
    assert cli._describe(FileNotFoundError(2, "No such file", "x.csv"))[0] == 2


# --- bulk ------------------------------------------------------------------------------------

MIXED_CSV = """\
phone_number,area_code,friendly_name,sms_url,voice_caller_id_lookup,mobile
+14156000001,,row-2,https://example.com/sms,true,
,415,row-3,,,

+447700900001,,row-5,,,yes
+15005550000,,row-6,,,
,533,row-7,,,
"""


def write(tmp_path: Path, text: str, name: str = "numbers.csv") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


async def test_bulk_buys_a_mix_and_a_rerun_resumes_from_the_journal(tmp_path: Path) -> None:
    csv_file, journal = write(tmp_path, MIXED_CSV), tmp_path / "journal.jsonl"
    async with Sandbox() as sandbox:
        argv = ("bulk", str(csv_file), "--journal", str(journal), "--base-url", sandbox.url)
        first = await run_cli_async(*argv, "--json", env=sandbox_env(sandbox))
        sold_first, posts_first = len(sandbox.purchases), posts(sandbox)
        second = await run_cli_async(*argv, "--json", env=sandbox_env(sandbox))
        plain = await run_cli_async(*argv, env=sandbox_env(sandbox))

        assert first.code == cli.ExitCode.FAILED, first.stderr  # two rows fail by design
        report = first.json()
        assert (report["requested"], report["purchased"], report["failed"]) == (5, 3, 2)
        assert report["unknown"] == report["from_journal"] == 0
        assert report["failed_by_reason"] == {"21422": 1, "21452": 1}
        assert [row["row"] for row in report["failed_rows"]] == [6, 7]
        assert report["failed_rows"][0]["request"] == {
            "mobile": False,
            "friendly_name": "row-6",
            "phone_number": "+15005550000",
        }
        by_name = {purchase.friendly_name: purchase for purchase in sandbox.purchases}
        assert set(by_name) == {"row-2", "row-3", "row-5"}
        assert by_name["row-2"].form["SmsUrl"] == "https://example.com/sms"
        assert by_name["row-2"].form["VoiceCallerIdLookup"] == "true"
        assert by_name["row-5"].endpoint == MOBILE_ENDPOINT

        # The rerun reports every outcome from the journal and buys nothing.
        assert second.code == cli.ExitCode.FAILED
        again = second.json()
        assert again["from_journal"] == 5
        assert (again["purchased"], again["failed"]) == (3, 2)
        assert len(sandbox.purchases) == sold_first
        assert posts(sandbox) == posts_first
        assert "Rows not bought" in plain.stdout
        assert "row-6" in plain.stdout


async def test_bulk_exits_0_when_everything_is_bought(tmp_path: Path) -> None:
    csv_file = write(tmp_path, "area_code\n415\n212\n")
    async with Sandbox() as sandbox:
        run = await run_cli_async(
            "bulk",
            str(csv_file),
            "--journal",
            str(tmp_path / "j.jsonl"),
            "--base-url",
            sandbox.url,
            env=sandbox_env(sandbox),
        )

        assert run.code == 0, run.stderr
        assert len(sandbox.purchases) == 2
        assert "bought" in run.stdout


async def test_bulk_lists_unknown_rows_and_never_sends_them_again(tmp_path: Path) -> None:
    csv_file, journal = write(tmp_path, "area_code,friendly_name\n415,lost\n"), tmp_path / "j"
    async with Sandbox() as sandbox:
        sandbox.script(Fault.error_after_commit())  # bought, then the answer is lost
        argv = ("bulk", str(csv_file), "--journal", str(journal), "--base-url", sandbox.url)
        first = await run_cli_async(*argv, "--json", env=sandbox_env(sandbox))
        second = await run_cli_async(*argv, env=sandbox_env(sandbox))

        assert first.code == second.code == cli.ExitCode.FAILED
        [unknown] = first.json()["unknown_rows"]
        assert unknown["row"] == 2
        assert unknown["request"]["area_code"] == "415"
        assert "check the account" in unknown["error"]
        assert "unknown" in second.stdout
        assert len(sandbox.purchases) == 1
        assert posts(sandbox) == 1


async def test_a_bad_csv_exits_2_and_buys_nothing(tmp_path: Path) -> None:
    bad = "phone_number,sms_url\n+14156000001,https://example.com/ok\n+14156000002,not-a-url\n"
    csv_file, journal = write(tmp_path, bad), tmp_path / "j.jsonl"
    async with Sandbox() as sandbox:
        run = await run_cli_async(
            "bulk",
            str(csv_file),
            "--journal",
            str(journal),
            "--base-url",
            sandbox.url,
            env=sandbox_env(sandbox),
        )

        assert run.code == cli.ExitCode.BAD_INPUT
        assert "row 3, column sms_url" in run.stderr
        assert "nothing was bought" in run.stderr
        assert sandbox.requests == []
        assert not journal.exists()


async def test_bulk_with_refused_credentials_exits_2_before_buying(tmp_path: Path) -> None:
    csv_file, journal = write(tmp_path, "area_code\n415\n"), tmp_path / "j.jsonl"
    async with Sandbox() as sandbox:
        env = {**sandbox_env(sandbox), "TWILIO_AUTH_TOKEN": "wrong"}
        run = await run_cli_async(
            "bulk", str(csv_file), "--journal", str(journal), "--base-url", sandbox.url, env=env
        )

        assert run.code == cli.ExitCode.BAD_INPUT
        assert "refused the credentials" in run.stderr
        assert posts(sandbox) == 0


async def test_bulk_stopped_mid_run_reports_what_it_bought_and_exits_1(tmp_path: Path) -> None:
    """Credentials that stop working after numbers were bought are no "bad input": the summary
    shows the purchases, and the same command resumes once the credentials are fixed."""
    rows = "".join(f",415,row-{i}\n" for i in range(40))
    csv_file, journal = (
        write(tmp_path, "phone_number,area_code,friendly_name\n" + rows),
        (tmp_path / "j.jsonl"),
    )
    async with Sandbox(faults=Faults(latency=0.02)) as sandbox:
        argv = ("bulk", str(csv_file), "--journal", str(journal), "--base-url", sandbox.url)
        running = asyncio.create_task(
            run_cli_async(*argv, "--json", "--concurrency", "2", env=sandbox_env(sandbox))
        )
        async with asyncio.timeout(30):
            # The sandbox records purchases but signals none: look at its records.
            while len(sandbox.purchases) < 3:  # noqa: ASYNC110
                await asyncio.sleep(0.01)
        token = sandbox.rotate_auth_token()
        stopped = await running

        assert stopped.code == cli.ExitCode.FAILED
        report = json.loads(stopped.stdout)
        assert report["purchased"] >= 3
        assert report["purchased"] == len(sandbox.purchases)
        assert "resume" in report["stopped"]

        env = {**sandbox_env(sandbox), "TWILIO_AUTH_TOKEN": token}
        resumed = await run_cli_async(*argv, "--json", env=env)
        assert resumed.code == cli.ExitCode.OK
        assert len(sandbox.purchases) == 40
        assert len({p.friendly_name for p in sandbox.purchases}) == 40, "none bought twice"


async def test_a_journal_in_the_way_or_an_unknown_account_exits_2(tmp_path: Path) -> None:
    csv_file = write(tmp_path, "area_code\n415\n")
    corrupt = write(tmp_path, '{"v":1,"kind":"intent","key":"a#0"}\nnot json\n{}\n', "j.jsonl")
    async with Sandbox() as sandbox:
        env = sandbox_env(sandbox)
        base = ("bulk", str(csv_file), "--base-url", sandbox.url)
        bad_journal = await run_cli_async(*base, "--journal", str(corrupt), env=env)
        unknown_account = await run_cli_async(
            *base, "--journal", str(tmp_path / "k.jsonl"), "--account-sid", "AC" + "f" * 32, env=env
        )
        assert (bad_journal.code, unknown_account.code) == (cli.ExitCode.BAD_INPUT,) * 2
        assert "j.jsonl:1 is a journal record that can't be read" in bad_journal.stderr
        assert "AC" + "f" * 32 in unknown_account.stderr
        assert posts(sandbox) == 0


# --- sandbox ---------------------------------------------------------------------------------


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT])
async def test_sandbox_command_serves_until_stopped(stop: signal.Signals) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "twilio_numbers_async",
        "sandbox",
        "--port",
        "0",
        "--seed",
        "5",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=clean_env(),
    )
    try:
        assert process.stdout is not None
        banner = await read_until(process.stdout, "export TWILIO_AUTH_TOKEN=")
        settings = dict(
            line.strip().removeprefix("export ").split("=", 1)
            for line in banner
            if line.strip().startswith("export ")
        )
        url = banner[0].split()[3]

        async with TwilioNumbersClient(
            settings["TWILIO_ACCOUNT_SID"], settings["TWILIO_AUTH_TOKEN"], base_url=url
        ) as client:
            number = await client.create_incoming_phone_number(area_code="415")
        assert number.phone_number is not None
        assert number.phone_number.startswith("+1415")

        process.send_signal(stop)
        stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=30)
    finally:  # a failed assertion must not leave a sandbox serving for ever
        if process.returncode is None:
            process.kill()
            await process.communicate()
    assert process.returncode == 0, stderr
    assert b"Sandbox stopped." in stdout


async def read_until(stream: asyncio.StreamReader, marker: str) -> list[str]:
    lines: list[str] = []
    while not lines or marker not in lines[-1]:
        line = await asyncio.wait_for(stream.readline(), timeout=30)
        assert line, f"the sandbox exited early; it printed {lines}"
        lines.append(line.decode())
    return lines


# --- the CSV reader --------------------------------------------------------------------------


def test_csv_rows_become_requests_numbered_like_lines(tmp_path: Path) -> None:
    rows = list(read_requests(write(tmp_path, MIXED_CSV)))

    assert [row for row, _ in rows] == [2, 3, 5, 6, 7]  # the blank line 4 is skipped
    assert rows[0][1] == NumberPurchase(
        phone_number="+14156000001",
        friendly_name="row-2",
        sms_url="https://example.com/sms",
        voice_caller_id_lookup=True,
    )
    assert rows[1][1] == NumberPurchase(area_code="415", friendly_name="row-3")
    assert rows[2][1] == MobileNumberPurchase(phone_number="+447700900001", friendly_name="row-5")
    assert check_csv(write(tmp_path, MIXED_CSV)) == 5


@pytest.mark.parametrize(
    ("cell", "expected"),
    [("true", True), ("Yes", True), ("1", True), ("false", False), ("NO", False), ("0", False)],
)
def test_csv_booleans(tmp_path: Path, cell: str, expected: bool) -> None:
    path = write(tmp_path, f"area_code,voice_caller_id_lookup\n415,{cell}\n")

    [(_, request)] = read_requests(path)

    assert request.voice_caller_id_lookup is expected


def test_csv_cells_are_stripped_and_a_byte_order_mark_is_ignored(tmp_path: Path) -> None:
    path = tmp_path / "excel.csv"
    path.write_text("phone_number , sms_method\n +14156000001 , POST \n", encoding="utf-8-sig")

    [(_, request)] = read_requests(path)

    assert request == NumberPurchase(phone_number="+14156000001", sms_method="POST")


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("", "row 1: no header"),
        ("phone_number,colour\n+14156000001,red\n", "row 1, column colour: unknown column"),
        ("area_code,area_code\n415,415\n", "row 1, column area_code: given twice"),
        ("area_code\n415,extra\n", "row 2: 2 cells, but the header names 1"),
        ("area_code,mobile\n415,perhaps\n", "row 2, column mobile: 'perhaps' is not true"),
        ("area_code,mobile\n415,true\n", "row 2, column area_code: a mobile purchase"),
        ("phone_number,mobile\n,yes\n", "row 2, column phone_number: a mobile purchase needs"),
        ("phone_number,area_code\n+14156000001,415\n", "row 2, column area_code: give exactly"),
        ("area_code,voice_method\n415,PUT\n", "row 2, column voice_method: 'PUT' is not one"),
        ('area_code\n"415\n', "row 2: not valid CSV"),
    ],
)
def test_csv_problems_name_the_row_and_column(tmp_path: Path, text: str, problem: str) -> None:
    path = write(tmp_path, text)

    with pytest.raises(CsvError) as raised:
        check_csv(path)

    assert f"{path}: {problem}" in str(raised.value)


def test_csv_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "latin1.csv"
    path.write_bytes("friendly_name,area_code\ncaf\xe9,415\n".encode("latin-1"))

    with pytest.raises(CsvError, match="not UTF-8"):
        check_csv(path)


def test_check_csv_lists_several_problems_and_counts_the_rest(tmp_path: Path) -> None:
    bad_rows = "".join(f"+1{index}x,\n" for index in range(15))
    path = write(tmp_path, "phone_number,area_code\n" + bad_rows)

    with pytest.raises(CsvError) as raised:
        check_csv(path, max_problems=10)

    assert [problem.row for problem in raised.value.problems] == list(range(2, 12))
    assert raised.value.more == 5
    assert "and 5 more rows with problems" in str(raised.value)


def test_read_requests_stops_at_the_first_bad_row(tmp_path: Path) -> None:
    rows = read_requests(write(tmp_path, "area_code\n415\n4155\n"))

    assert next(rows)[0] == 2
    with pytest.raises(CsvError, match="row 3, column area_code"):
        next(rows)


def test_csv_columns_cover_every_request_field() -> None:
    names = {field.name for field in attrs.fields(NumberPurchase)}

    assert set(columns()) == names | {"mobile"}
