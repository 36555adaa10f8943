"""``twilio-numbers release``: numbers given back by SID, or every number a bulk journal
bought, resumably; against a sandbox on loopback."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest

from tests.cli._run import (
    FAKE_CREDENTIALS,
    MIXED_CSV,
    clean_env,
    documented,
    kill_mid_run,
    run_cli,
    run_cli_async,
    sandbox_env,
    write,
)
from twilio_numbers_async.bulk._journal import Journal
from twilio_numbers_async.cli import ExitCode
from twilio_numbers_async.cli._release import records_path
from twilio_numbers_async.sandbox import Fault, Faults, ReleaseRecord, Sandbox


def deletes(sandbox: Sandbox) -> int:
    """How many DELETEs a sandbox has seen: the releases a client attempted."""
    return sum(record.method == "DELETE" for record in sandbox.requests)


async def bulk(sandbox: Sandbox, csv_file: Path, journal: Path, *args: str) -> None:
    """Buy ``csv_file`` with ``twilio-numbers bulk``, journaled in ``journal``."""
    run = await run_cli_async(
        *("bulk", str(csv_file), "--journal", str(journal), "--base-url", sandbox.url, *args),
        env=sandbox_env(sandbox),
    )
    assert run.code in (ExitCode.OK, ExitCode.FAILED), run.stderr  # FAILED: a row, by design


async def test_release_journal_releases_what_it_bought_and_a_rerun_nothing_twice(
    tmp_path: Path,
) -> None:
    csv_file, journal = write(tmp_path, MIXED_CSV), tmp_path / "buy.jsonl"
    async with Sandbox() as sandbox:
        await bulk(sandbox, csv_file, journal)
        bought = {p.sid: p.phone_number for p in sandbox.purchases}
        assert len(bought) == 3  # two rows of MIXED_CSV fail by design

        argv = ("release", "--journal", str(journal), "--base-url", sandbox.url)
        first = await run_cli_async(*argv, "--json", env=sandbox_env(sandbox))
        sent = deletes(sandbox)
        again = await run_cli_async(*argv, env=sandbox_env(sandbox))

        assert first.code == ExitCode.OK, first.stderr
        report = first.json()
        assert (report["numbers"], report["released"], report["already_gone"]) == (3, 3, 0)
        assert (report["released_earlier"], report["failed"], report["in_flight"]) == (0, 0, 0)
        assert (report["not_found"], report["unknown"]) == (0, 0)
        assert {(r["sid"], r["phone_number"], r["status"]) for r in report["results"]} == {
            (sid, number, "released") for sid, number in bought.items()
        }
        assert {r.sid for r in sandbox.releases} == set(bought)
        assert sandbox.owned() == {}
        # Each release recorded beside the journal, as docs/cli.md shows.
        records = records_path(journal)
        assert records == tmp_path / "buy.releases.jsonl"
        assert report["records"] == str(records)
        lines = [json.loads(line) for line in records.read_text().splitlines()]
        assert {line["sid"] for line in lines} == set(bought)
        assert all(line["released"] is True for line in lines)
        shown = json.loads(documented("json", under="## release"))
        assert set(report) == set(shown)
        assert set(report["results"][0]) == set(shown["results"][0])
        # The rerun sends nothing, and says what is gone.
        assert again.code == ExitCode.OK, again.stderr
        assert deletes(sandbox) == sent
        assert "released earlier  3" in again.stdout
        assert len(sandbox.releases) == 3


async def test_release_journal_on_a_subaccount_releases_there(tmp_path: Path) -> None:
    csv_file, journal = write(tmp_path, "area_code\n415\n212\n"), tmp_path / "sub.jsonl"
    async with Sandbox() as sandbox:
        subaccount = sandbox.add_subaccount()
        await bulk(sandbox, csv_file, journal, "--account-sid", subaccount)
        assert len(sandbox.owned(subaccount)) == 2

        run = await run_cli_async(
            "release", "--journal", str(journal), "--base-url", sandbox.url, "--json",
            env=sandbox_env(sandbox),
        )  # fmt: skip

        assert run.code == ExitCode.OK, run.stderr
        assert run.json()["released"] == 2
        assert sandbox.owned(subaccount) == {}
        assert {r.account_sid for r in sandbox.releases} == {subaccount}


async def test_a_release_run_stopped_part_way_says_so_and_the_rerun_finishes(
    tmp_path: Path,
) -> None:
    rows = 8
    numbers = [f"+1415600{row:04d}" for row in range(rows)]
    csv_file = write(tmp_path, "phone_number\n" + "".join(f"{n}\n" for n in numbers))
    journal = tmp_path / "buy.jsonl"
    # Each request answered 50 ms after it arrives, on the loop that also watches: once three
    # releases are seen, the faults below are queued before a release sent after them arrives.
    async with Sandbox(faults=Faults(latency=0.05)) as sandbox:
        await bulk(sandbox, csv_file, journal)
        argv = ("release", "--journal", str(journal), "--base-url", sandbox.url)
        # Ctrl-C with two numbers released and neither answered.
        stopped = await kill_mid_run(
            sandbox,
            *argv,
            done=lambda: len(sandbox.releases),
            held=lambda: len(held(sandbox)),
            on="release",
            stop=signal.SIGINT,
        )
        assert stopped.code == ExitCode.INTERRUPTED, stopped.stderr
        assert "Stopped: interrupted; run the same command to release the rest." in stopped.stdout
        resume = f"To release the rest, run the same command: twilio-numbers {' '.join(argv)}"
        assert resume in stopped.stderr
        assert "Traceback" not in stopped.stderr
        recorded = {
            json.loads(line)["sid"] for line in records_path(journal).read_text().splitlines()
        }
        answered = {r.sid for r in sandbox.releases if r.fault is None}
        assert recorded == answered  # what was answered was recorded, before it was reported

        resumed = await run_cli_async(*argv, "--json", env=sandbox_env(sandbox))

        assert resumed.code == ExitCode.OK, resumed.stderr
        report = resumed.json()
        # The recorded ones not sent again; the two cut off found gone; the rest released now.
        by_status: dict[str, set[str]] = {}
        for result in report["results"]:
            by_status.setdefault(result["status"], set()).add(result["sid"])
        assert by_status["earlier"] == recorded
        assert by_status["gone"] == {r.sid for r in held(sandbox)}
        assert len(recorded) + report["already_gone"] + report["released"] == rows
        assert sandbox.owned() == {}
        assert len(sandbox.releases) == rows, "each number released once"


def files(folder: Path) -> list[Path]:
    return list(folder.iterdir())


def held(sandbox: Sandbox) -> list[ReleaseRecord]:
    """The releases made whose answers the sandbox holds back."""
    return [r for r in sandbox.releases if r.fault == "slow_after_commit"]


async def test_a_journal_with_an_unknown_purchase_says_to_check_the_account_and_exits_0(
    tmp_path: Path,
) -> None:
    """An unknown outcome is final in the journal: no rerun settles it, so it gets the advice
    to check the account, and does not make the command fail (a rerun would change nothing)."""
    csv_file, journal = write(tmp_path, "area_code\n415\n212\n"), tmp_path / "buy.jsonl"
    async with Sandbox() as sandbox:
        sandbox.script(Fault.error_after_commit())  # the first POSTed area code: unknown
        await bulk(sandbox, csv_file, journal, "--area-codes", "direct", "--concurrency", "1")

        argv = ("release", "--journal", str(journal), "--base-url", sandbox.url)
        run = await run_cli_async(*argv, "--json", env=sandbox_env(sandbox))
        again = await run_cli_async(*argv, env=sandbox_env(sandbox))

        assert run.code == ExitCode.OK, run.stderr
        report = run.json()
        assert (report["numbers"], report["released"]) == (1, 1)
        assert (report["in_flight"], report["unknown"]) == (0, 1)
        # The number behind the unknown outcome is still there: the journal can't name it.
        assert len(sandbox.owned()) == 1
        assert again.code == ExitCode.OK, again.stderr
        [line] = [line for line in again.stdout.splitlines() if line.lstrip().startswith("unknown")]
        assert "check the account" in line
        assert "Console" in line
        assert "rerun the bulk command" not in again.stdout


async def test_a_journal_with_a_request_in_flight_says_to_rerun_bulk_and_exits_1(
    tmp_path: Path,
) -> None:
    csv_file, journal = write(tmp_path, "area_code\n415\n"), tmp_path / "buy.jsonl"
    async with Sandbox() as sandbox:
        await bulk(sandbox, csv_file, journal)
        # A purchase sent when its run died: an intent, and no outcome.
        book = Journal.open(journal, durable=False)
        form = b"PhoneNumber=%2B14155550100"
        key = Journal.key(sandbox.account_sid, "IncomingPhoneNumbers.json", form, 0)
        await book.record_intent(
            key,
            index=1,
            account_sid=sandbox.account_sid,
            endpoint="IncomingPhoneNumbers.json",
            form=form,
        )
        await book.close()

        argv = ("release", "--journal", str(journal), "--base-url", sandbox.url)
        run = await run_cli_async(*argv, "--json", env=sandbox_env(sandbox))
        again = await run_cli_async(*argv, env=sandbox_env(sandbox))

        assert run.code == ExitCode.FAILED, run.stderr
        report = run.json()
        assert (report["released"], report["in_flight"], report["unknown"]) == (1, 1, 0)
        assert again.code == ExitCode.FAILED
        [line] = [
            line for line in again.stdout.splitlines() if line.lstrip().startswith("in flight")
        ]
        assert "rerun the bulk command" in line
        assert "Console" not in again.stdout


async def test_release_by_sid_says_which_were_already_gone(tmp_path: Path) -> None:
    async with Sandbox() as sandbox:
        async with sandbox.client() as client:
            first = await client.create_incoming_phone_number(area_code="415")
            second = await client.create_incoming_phone_number(area_code="415")
            assert await client.release_incoming_phone_number(second.sid)

        run = await run_cli_async(
            *("release", first.sid, second.sid, first.sid),
            *("--base-url", sandbox.url, "--json"),
            env=sandbox_env(sandbox),
            cwd=tmp_path,
        )

        # A 404 for a SID given by hand is no "already gone": maybe it was, maybe it is another
        # account's, so it is said, and the command fails.
        assert run.code == ExitCode.FAILED, run.stderr
        report = run.json()
        assert (report["numbers"], report["released"], report["not_found"]) == (2, 1, 1)
        assert report["already_gone"] == 0
        assert {(r["sid"], r["status"]) for r in report["results"]} == {
            (first.sid, "released"),
            (second.sid, "not_found"),
        }
        [missing] = [r for r in report["results"] if r["status"] == "not_found"]
        assert missing["message"] == (
            f"not found on account {sandbox.account_sid}: released earlier, or not this "
            "account's (pass --account-sid for a subaccount's number)"
        )
        assert report["records"] is None
        assert sandbox.owned() == {}
        assert files(tmp_path) == []  # nothing recorded without a journal (it ran there)


async def test_the_cli_runs_in_the_folder_a_test_gives_else_in_one_that_must_stay_empty(
    tmp_path: Path,
) -> None:
    write(tmp_path, "area_code\n415\n")
    async with Sandbox() as sandbox:
        argv = ("bulk", "numbers.csv", "--base-url", sandbox.url)
        run = await run_cli_async(
            *argv, "--journal", "numbers.jsonl", env=sandbox_env(sandbox), cwd=tmp_path
        )
        assert run.code == ExitCode.OK, run.stderr
        assert sorted(path.name for path in files(tmp_path)) == ["numbers.csv", "numbers.jsonl"]

        # Without a folder given, a file the CLI leaves where it runs fails the test.
        with pytest.raises(AssertionError, match=r"left files .*stray\.jsonl"):
            await run_cli_async(
                *("bulk", str(tmp_path / "numbers.csv"), "--journal", "stray.jsonl"),
                *("--base-url", sandbox.url),
                env=sandbox_env(sandbox),
            )
        assert not (Path.cwd() / "stray.jsonl").exists()


async def test_a_subaccounts_number_given_without_account_sid_is_not_found_and_exits_1(
    tmp_path: Path,
) -> None:
    async with Sandbox() as sandbox:
        subaccount = sandbox.add_subaccount()
        async with sandbox.client() as client:
            number = await client.create_incoming_phone_number(
                area_code="415", account_sid=subaccount
            )

        argv = ("release", number.sid, "--base-url", sandbox.url)
        run = await run_cli_async(*argv, env=sandbox_env(sandbox))
        right = await run_cli_async(*argv, "--account-sid", subaccount, env=sandbox_env(sandbox))

        assert run.code == ExitCode.FAILED, run.stdout
        assert f"not found on account {sandbox.account_sid}" in run.stdout
        assert "pass --account-sid for a subaccount's number" in run.stdout
        assert "already gone" not in run.stdout
        assert right.code == ExitCode.OK, right.stdout
        assert sandbox.owned(subaccount) == {}


async def test_a_file_in_the_way_of_the_records_exits_2_and_releases_nothing(
    tmp_path: Path,
) -> None:
    csv_file, journal = write(tmp_path, "area_code\n415\n"), tmp_path / "buy.jsonl"
    async with Sandbox() as sandbox:
        await bulk(sandbox, csv_file, journal)
        write(tmp_path, "phone_number\n+14155550100\n", name="buy.releases.jsonl")

        run = await run_cli_async(
            "release", "--journal", str(journal), "--base-url", sandbox.url,
            env=sandbox_env(sandbox),
        )  # fmt: skip

        assert run.code == ExitCode.BAD_INPUT
        assert "buy.releases.jsonl:1 is not a record of a release" in run.stderr
        assert deletes(sandbox) == 0


def test_release_asks_or_needs_yes_and_without_either_sends_nothing(tmp_path: Path) -> None:
    sid = "PN" + "0" * 32
    run = run_cli("release", sid, env=clean_env(**FAKE_CREDENTIALS), offline=True)
    missing = run_cli("release", "--journal", str(tmp_path / "nope.jsonl"))

    assert run.code == ExitCode.BAD_INPUT
    assert "requests go to Twilio (https://api.twilio.com): real releases" in run.stderr
    assert f"release {sid} on account {FAKE_CREDENTIALS['TWILIO_ACCOUNT_SID']}" in run.stderr
    assert "can't be undone, and stdin is not a terminal" in run.stderr
    assert "could not connect" not in run.stderr  # nothing was even tried
    assert missing.code == ExitCode.BAD_INPUT
    assert "nope.jsonl: no such file or folder" in missing.stderr
    assert not (tmp_path / "nope.jsonl").exists()  # not created as a new journal
