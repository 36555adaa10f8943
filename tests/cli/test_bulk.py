"""``twilio-numbers bulk``: a CSV file bought resumably, against a sandbox on loopback."""

from __future__ import annotations

import asyncio
import csv
import json
import signal
from pathlib import Path

import pytest

from tests.cli._run import (
    MIXED_CSV,
    documented,
    interrupt_cli,
    kill_mid_run,
    run_cli_async,
    sandbox_env,
    until,
    write,
)
from tests.conftest import posts
from twilio_numbers_async.cli import ExitCode
from twilio_numbers_async.sandbox import Fault, Faults, PurchaseRecord, Sandbox

MOBILE_ENDPOINT = "IncomingPhoneNumbers/Mobile.json"


async def test_bulk_buys_a_mix_and_a_rerun_resumes_from_the_journal(tmp_path: Path) -> None:
    csv_file, journal = write(tmp_path, MIXED_CSV), tmp_path / "journal.jsonl"
    async with Sandbox() as sandbox:
        argv = ("bulk", str(csv_file), "--journal", str(journal), "--base-url", sandbox.url)
        first = await run_cli_async(*argv, "--json", env=sandbox_env(sandbox))
        sold_first, posts_first = len(sandbox.purchases), posts(sandbox)
        second = await run_cli_async(*argv, "--json", env=sandbox_env(sandbox))
        output = tmp_path / "results.csv"
        plain = await run_cli_async(*argv, "--output", str(output), env=sandbox_env(sandbox))

        assert first.code == ExitCode.FAILED, first.stderr  # two rows fail by design
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
        # What was bought, row by row (the CSV's line numbers: line 4 is blank).
        assert report["bought"] == [
            {"row": row, "sid": sold.sid, "phone_number": sold.phone_number, "reconciled": False}
            for row, sold in ((2, by_name["row-2"]), (3, by_name["row-3"]), (5, by_name["row-5"]))
        ]
        # The shape docs/cli.md shows.
        shown = json.loads(documented("json"))
        assert set(report) == set(shown)
        assert set(report["bought"][0]) == set(shown["bought"][0])
        assert set(report["failed_rows"][0]) == set(shown["failed_rows"][0])
        assert [(row["code"], row["message"]) for row in report["failed_rows"]] == [
            (21422, "PhoneNumber +15005550000 is not available"),
            (21452, "No phone numbers are available in area code 533"),
        ]

        # The rerun buys nothing. It reports every outcome from the journal but one: area code
        # 533's search found no number and no POST was sent, so it is searched again (new
        # numbers may be for sale by now).
        assert second.code == ExitCode.FAILED
        again = second.json()
        assert again["from_journal"] == 4
        assert (again["purchased"], again["failed"]) == (3, 2)
        assert len(sandbox.purchases) == sold_first
        assert posts(sandbox) == posts_first
        assert searches(sandbox, "533") == 3  # the first run, this rerun, and the plain one
        assert again["bought"] == report["bought"]
        assert "Rows not bought" in plain.stdout
        assert "row-6" in plain.stdout
        assert "Numbers bought" in plain.stdout
        assert by_name["row-3"].phone_number in plain.stdout
        # --output: one line per row, rerun or not.
        assert read_results(output) == [
            ["2", "bought", by_name["row-2"].sid, "+14156000001", "", ""],
            ["3", "bought", by_name["row-3"].sid, by_name["row-3"].phone_number, "", ""],
            ["5", "bought", by_name["row-5"].sid, "+447700900001", "", ""],
            ["6", "failed", "", "", "21422", "PhoneNumber +15005550000 is not available"],
            ["7", "failed", "", "", "21452", "No phone numbers are available in area code 533"],
        ]


def read_results(path: Path) -> list[list[str]]:
    """The rows of an --output file, by row, after checking its header."""
    header, *rows = csv.reader(path.read_text(encoding="utf-8").splitlines())
    assert header == ["row", "status", "sid", "phone_number", "error_code", "message"]
    assert ",".join(header) == documented("csv").splitlines()[0]
    return sorted(rows, key=lambda cells: int(cells[0]))


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
        # Loopback: said, and no go-ahead needed (stdin is not a terminal, and no --yes).
        assert f"requests go to {sandbox.url}, on this machine" in run.stderr
        assert "bought" in run.stdout


async def test_bulk_finds_an_area_code_whose_answer_was_lost(tmp_path: Path) -> None:
    csv_file, journal = write(tmp_path, "area_code,friendly_name\n415,lost\n"), tmp_path / "j"
    async with Sandbox() as sandbox:
        sandbox.script(Fault.error_after_commit())  # its candidate is bought, then a 500
        argv = ("bulk", str(csv_file), "--journal", str(journal), "--base-url", sandbox.url)
        run = await run_cli_async(*argv, "--json", env=sandbox_env(sandbox))

        assert run.code == ExitCode.OK, run.stderr
        report = run.json()
        [sold] = sandbox.purchases
        assert report["bought"] == [
            {"row": 2, "sid": sold.sid, "phone_number": sold.phone_number, "reconciled": True}
        ]
        assert (report["unknown"], report["reconciled"]) == (0, 1)
        assert posts(sandbox) == 1


async def test_bulk_lists_unknown_rows_and_never_sends_them_again(tmp_path: Path) -> None:
    csv_file, journal = write(tmp_path, "area_code,friendly_name\n415,lost\n"), tmp_path / "j"
    async with Sandbox() as sandbox:
        sandbox.script(Fault.error_after_commit())  # bought, then the answer is lost
        argv = (
            *("bulk", str(csv_file), "--journal", str(journal), "--base-url", sandbox.url),
            *("--area-codes", "direct"),  # the area code POSTed: nothing to look up
        )
        first = await run_cli_async(*argv, "--json", env=sandbox_env(sandbox))
        second = await run_cli_async(*argv, env=sandbox_env(sandbox))

        assert first.code == second.code == ExitCode.FAILED
        [unknown] = first.json()["unknown_rows"]
        assert unknown["row"] == 2
        assert unknown["request"]["area_code"] == "415"
        assert "check the account" in unknown["message"]
        assert unknown["code"] is None  # no Twilio error code: the answer was lost
        assert "unknown" in second.stdout
        assert len(sandbox.purchases) == 1
        assert posts(sandbox) == 1
        assert searches(sandbox) == 0


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

        assert run.code == ExitCode.BAD_INPUT
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

        assert run.code == ExitCode.BAD_INPUT
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
        await until(lambda: len(sandbox.purchases) >= 3)
        token = sandbox.rotate_auth_token()
        stopped = await running

        assert stopped.code == ExitCode.FAILED
        report = json.loads(stopped.stdout)
        assert report["purchased"] >= 3
        assert report["purchased"] == len(sandbox.purchases)
        assert "resume" in report["stopped"]

        env = {**sandbox_env(sandbox), "TWILIO_AUTH_TOKEN": token}
        resumed = await run_cli_async(*argv, "--json", env=env)
        assert resumed.code == ExitCode.OK
        assert len(sandbox.purchases) == 40
        assert len({p.friendly_name for p in sandbox.purchases}) == 40, "none bought twice"


async def test_a_credential_check_twilio_does_not_answer_is_no_bad_input(tmp_path: Path) -> None:
    """A 429 (or a 5xx, or no answer) to the credential check says nothing of the credentials:
    only a 401 or a 404 is bad input."""
    csv_file, journal = write(tmp_path, "area_code\n415\n"), tmp_path / "j.jsonl"
    async with Sandbox() as sandbox:
        # More than the retries take: the check's look-up ends rate-limited.
        sandbox.script(*[Fault.rate_limited(retry_after=0)] * 20, on="list")
        run = await run_cli_async(
            "bulk", str(csv_file), "--journal", str(journal), "--base-url", sandbox.url,
            env=sandbox_env(sandbox),
        )  # fmt: skip

        assert run.code == ExitCode.FAILED, run.stderr
        assert "error: could not check the credentials: " in run.stderr
        assert "20429" in run.stderr
        assert "refused" not in run.stderr
        assert posts(sandbox) == 0


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
        assert (bad_journal.code, unknown_account.code) == (ExitCode.BAD_INPUT,) * 2
        assert "j.jsonl:1 is a journal record that can't be read" in bad_journal.stderr
        assert "AC" + "f" * 32 in unknown_account.stderr
        assert posts(sandbox) == 0


@pytest.mark.parametrize(
    ("stop", "said", "as_json"),
    [(signal.SIGINT, "interrupted by Ctrl-C (SIGINT)", True), (signal.SIGTERM, "SIGTERM", False)],
    ids=["SIGINT", "SIGTERM"],
)
async def test_an_interrupted_run_says_what_it_did_and_a_rerun_finishes_the_job(
    tmp_path: Path, stop: signal.Signals, said: str, as_json: bool
) -> None:
    rows = 10
    numbers = [f"+1415600{row:04d}" for row in range(rows)]
    csv_file = write(tmp_path, "phone_number\n" + "".join(f"{n}\n" for n in numbers))
    journal, output = tmp_path / "j.jsonl", tmp_path / "results.csv"
    # Each request answered 50 ms after it arrives, on the loop that also watches: once three
    # purchases are seen, the faults are queued before a purchase sent after them arrives.
    async with Sandbox(faults=Faults(latency=0.05)) as sandbox:
        argv = [
            *("bulk", str(csv_file), "--journal", str(journal), "--output", str(output)),
            *("--base-url", sandbox.url),
        ]
        # Stopped with two purchases made and their answers held: the run can go no further
        # (both of its slots wait), and every purchase before them has been reported.
        stopped = await kill_mid_run(
            sandbox,
            *argv,
            *(["--json"] if as_json else []),
            done=lambda: len(sandbox.purchases),
            held=lambda: len(held(sandbox)),
            stop=stop,
        )
        summary, complaint = stopped.stdout, stopped.stderr

        assert stopped.code == ExitCode.INTERRUPTED, complaint
        assert "Traceback" not in complaint
        row = {number: 2 + index for index, number in enumerate(numbers)}
        answered = sorted(row[p.phone_number] for p in sandbox.purchases if p.fault is None)
        in_flight = sorted(row[p.phone_number] for p in held(sandbox))
        # What it did: the numbers answered, row by row, and the two in flight.
        done = read_results(output)
        assert [int(cells[0]) for cells in done] == answered
        assert {cells[2] for cells in done} == {p.sid for p in sandbox.purchases if not p.fault}
        assert {cells[1] for cells in done} == {"bought"}
        if as_json:
            report = json.loads(summary)
            assert report["stopped"].startswith("interrupted")
            assert (report["purchased"], report["failed"], report["unknown"]) == (
                len(answered),
                0,
                0,
            )
            assert [entry["row"] for entry in report["bought"]] == answered
            assert report["in_flight_rows"] == in_flight
            assert report["not_sent_rows"] == []
        else:
            assert "Stopped before the end of the file: interrupted" in summary
            rows_cut = f"rows {in_flight[0]}, {in_flight[1]}."
            assert f"In flight when it stopped (sent, unanswered): {rows_cut}" in summary
            assert "Not sent" not in summary
            assert "Numbers bought" in summary
        # Then the command to resume.
        assert said in complaint
        assert f"To resume, run the same command: twilio-numbers {' '.join(argv)}" in complaint

        resumed = await run_cli_async(*argv, "--json", env=sandbox_env(sandbox))

        assert resumed.code == ExitCode.OK, resumed.stderr
        report = resumed.json()
        assert len(sandbox.purchases) == rows
        assert len({p.phone_number for p in sandbox.purchases}) == rows, "none bought twice"
        assert [entry["row"] for entry in report["bought"]] == list(range(2, 2 + rows))
        # The two cut off were bought: found on the account, not bought again.
        assert [entry["row"] for entry in report["bought"] if entry["reconciled"]] == in_flight
        assert [cells[1] for cells in read_results(output)] == ["bought"] * rows


@pytest.mark.parametrize("as_json", [True, False], ids=["json", "table"])
async def test_an_interrupted_run_lists_as_in_flight_only_the_rows_sent_and_unanswered(
    tmp_path: Path, as_json: bool
) -> None:
    """Rows taken from the file but not sent (here: area codes whose search is unanswered,
    so no purchase was sent for them) are not "in flight": the rerun buys them as new."""
    csv_file = write(
        tmp_path,
        "phone_number,area_code,friendly_name\n"
        "+14156000001,,row-2\n+14156000002,,row-3\n,415,row-4\n,212,row-5\n",
    )
    journal = tmp_path / "j.jsonl"
    async with Sandbox() as sandbox:
        # Both given numbers bought, their answers held; both area codes' searches held.
        sandbox.script(*[Fault.slow_after_commit(600)] * 2, on="purchase")
        sandbox.script(*[Fault.slow_after_commit(600)] * 2, on="search")
        argv = [
            *("bulk", str(csv_file), "--journal", str(journal), "--base-url", sandbox.url),
            *("--concurrency", "4"),
        ]
        stopped = await interrupt_cli(
            *argv,
            *(["--json"] if as_json else []),
            env=sandbox_env(sandbox),
            when=lambda: until(lambda: len(held(sandbox)) == 2 and held_searches(sandbox) == 2),
            cwd=tmp_path,
        )
        summary = stopped.stdout

        assert stopped.code == ExitCode.INTERRUPTED, stopped.stderr
        if as_json:
            report = json.loads(summary)
            assert report["in_flight_rows"] == [2, 3]
            assert report["not_sent_rows"] == [4, 5]
        else:
            assert "In flight when it stopped (sent, unanswered): rows 2, 3." in summary
            assert "Not sent when it stopped: rows 4, 5. The next run buys them as new." in summary

        resumed = await run_cli_async(*argv, "--json", env=sandbox_env(sandbox), cwd=tmp_path)

        assert resumed.code == ExitCode.OK, resumed.stderr
        report = resumed.json()
        assert [(entry["row"], entry["reconciled"]) for entry in report["bought"]] == [
            (2, True),
            (3, True),
            (4, False),
            (5, False),
        ]
        assert len(sandbox.purchases) == 4
        assert len({p.friendly_name for p in sandbox.purchases}) == 4, "none bought twice"


def held_searches(sandbox: Sandbox) -> int:
    """How many searches of numbers for sale have their answers held back."""
    return sum(
        "/AvailablePhoneNumbers/" in record.path and record.fault == "slow_after_commit"
        for record in sandbox.requests
    )


async def test_a_run_killed_mid_purchase_resumes_area_codes_without_an_unknown(
    tmp_path: Path,
) -> None:
    """SIGKILL gives no chance to record anything: the journal's intents, which name each
    area code's candidate before its POST, are what the rerun settles the purchases by."""
    rows = 8
    csv_file = write(
        tmp_path, "area_code,friendly_name\n" + "".join(f"415,row-{i}\n" for i in range(rows))
    )
    journal = tmp_path / "j.jsonl"
    # Each request answered 50 ms after it arrives, on the loop that also watches: once three
    # purchases are seen, the faults are queued before a purchase sent after them arrives.
    async with Sandbox(faults=Faults(latency=0.05)) as sandbox:
        argv = ("bulk", str(csv_file), "--journal", str(journal), "--base-url", sandbox.url)
        # Killed with two purchases bought and neither answered.
        await kill_mid_run(
            sandbox,
            *argv,
            done=lambda: len(sandbox.purchases),
            held=lambda: len(held(sandbox)),
        )

        resumed = await run_cli_async(*argv, "--json", env=sandbox_env(sandbox))

        assert resumed.code == ExitCode.OK, resumed.stderr
        report = resumed.json()
        assert (report["purchased"], report["failed"], report["unknown"]) == (rows, 0, 0)
        assert len(sandbox.purchases) == rows
        assert len({p.friendly_name for p in sandbox.purchases}) == rows, "none bought twice"
        # The two cut off were found on the account by the candidate each intent names.
        reconciled = {entry["phone_number"] for entry in report["bought"] if entry["reconciled"]}
        assert reconciled == {p.phone_number for p in held(sandbox)}


def searches(sandbox: Sandbox, area_code: str | None = None) -> int:
    """How many searches of numbers for sale a sandbox has answered (in ``area_code``)."""
    return sum(
        "/AvailablePhoneNumbers/" in record.path
        and area_code in (None, record.query.get("AreaCode"))
        for record in sandbox.requests
    )


def held(sandbox: Sandbox) -> list[PurchaseRecord]:
    """The purchases made whose answers the sandbox holds back."""
    return [p for p in sandbox.purchases if p.fault == "slow_after_commit"]
