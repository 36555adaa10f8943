"""``twilio-numbers bulk``: a CSV file bought resumably, against a sandbox on loopback."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from tests.cli._run import MIXED_CSV, run_cli_async, sandbox_env, write
from tests.conftest import posts
from twilio_numbers_async.cli import ExitCode
from twilio_numbers_async.sandbox import Fault, Faults, Sandbox

MOBILE_ENDPOINT = "IncomingPhoneNumbers/Mobile.json"


async def test_bulk_buys_a_mix_and_a_rerun_resumes_from_the_journal(tmp_path: Path) -> None:
    csv_file, journal = write(tmp_path, MIXED_CSV), tmp_path / "journal.jsonl"
    async with Sandbox() as sandbox:
        argv = ("bulk", str(csv_file), "--journal", str(journal), "--base-url", sandbox.url)
        first = await run_cli_async(*argv, "--json", env=sandbox_env(sandbox))
        sold_first, posts_first = len(sandbox.purchases), posts(sandbox)
        second = await run_cli_async(*argv, "--json", env=sandbox_env(sandbox))
        plain = await run_cli_async(*argv, env=sandbox_env(sandbox))

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

        # The rerun reports every outcome from the journal and buys nothing.
        assert second.code == ExitCode.FAILED
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
        # Loopback: said, and no go-ahead needed (stdin is not a terminal, and no --yes).
        assert f"requests go to {sandbox.url}, on this machine" in run.stderr
        assert "bought" in run.stdout


async def test_bulk_lists_unknown_rows_and_never_sends_them_again(tmp_path: Path) -> None:
    csv_file, journal = write(tmp_path, "area_code,friendly_name\n415,lost\n"), tmp_path / "j"
    async with Sandbox() as sandbox:
        sandbox.script(Fault.error_after_commit())  # bought, then the answer is lost
        argv = ("bulk", str(csv_file), "--journal", str(journal), "--base-url", sandbox.url)
        first = await run_cli_async(*argv, "--json", env=sandbox_env(sandbox))
        second = await run_cli_async(*argv, env=sandbox_env(sandbox))

        assert first.code == second.code == ExitCode.FAILED
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
        async with asyncio.timeout(30):
            # The sandbox records purchases but signals none: look at its records.
            while len(sandbox.purchases) < 3:  # noqa: ASYNC110
                await asyncio.sleep(0.01)
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
        assert "not a journal record" in bad_journal.stderr
        assert "AC" + "f" * 32 in unknown_account.stderr
        assert posts(sandbox) == 0
