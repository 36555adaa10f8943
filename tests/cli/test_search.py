"""``twilio-numbers search``: the numbers for sale, against a sandbox on loopback."""

from __future__ import annotations

import json

from tests.cli._run import documented, run_cli_async, sandbox_env
from twilio_numbers_async.cli import ExitCode
from twilio_numbers_async.sandbox import Sandbox


async def test_search_filters_as_asked_and_prints_one_json_object() -> None:
    async with Sandbox() as sandbox:
        run = await run_cli_async(
            *("search", "--area-code", "415", "--contains", "555", "--sms", "--limit", "5"),
            *("--base-url", sandbox.url, "--json"),
            env=sandbox_env(sandbox),
        )

        assert run.code == ExitCode.OK, run.stderr
        report = run.json()
        assert (report["country"], report["kind"], report["area_code"]) == ("US", "local", "415")
        assert 0 < report["count"] == len(report["numbers"]) <= 5
        for number in report["numbers"]:
            assert number["phone_number"].startswith("+1415")
            assert "555" in number["phone_number"]
            assert number["capabilities"]["sms"] is True
            assert number["iso_country"] == "US"
        # One search, filtered by Twilio's own parameters, and nothing bought.
        [request] = sandbox.requests
        assert request.method == "GET"
        assert request.path.endswith("/AvailablePhoneNumbers/US/Local.json")
        assert request.query == {
            "AreaCode": "415",
            "Contains": "555",
            "SmsEnabled": "true",
            "PageSize": "5",
        }
        assert sandbox.purchases == []
        # The shape docs/cli.md shows.
        shown = json.loads(documented("json", under="## search"))
        assert set(report) == set(shown)
        assert set(report["numbers"][0]) == set(shown["numbers"][0])


async def test_a_canadian_area_code_is_searched_in_canada_and_shown_as_a_table() -> None:
    async with Sandbox() as sandbox:
        run = await run_cli_async(
            "search", "--area-code", "604", "--base-url", sandbox.url, env=sandbox_env(sandbox)
        )

        assert run.code == ExitCode.OK, run.stderr
        [request] = sandbox.requests
        assert request.path.endswith("/AvailablePhoneNumbers/CA/Local.json")
        assert "Numbers for sale (CA, local)" in run.stdout
        assert "phone_number" in run.stdout  # the table's header
        assert "+1604" in run.stdout
        assert f"requests go to {sandbox.url}, on this machine" in run.stderr


async def test_a_search_that_finds_nothing_says_so_and_exits_0() -> None:
    async with Sandbox() as sandbox:
        run = await run_cli_async(
            "search", "--area-code", "533", "--base-url", sandbox.url, env=sandbox_env(sandbox)
        )

        assert run.code == ExitCode.OK, run.stderr
        assert "No numbers for sale in US (local) match." in run.stdout


async def test_a_bad_filter_exits_2_and_sends_nothing() -> None:
    async with Sandbox() as sandbox:
        bad_code = await run_cli_async(
            "search", "--area-code", "41", "--base-url", sandbox.url, env=sandbox_env(sandbox)
        )
        bad_kind = await run_cli_async(
            "search", "--kind", "landline", "--base-url", sandbox.url, env=sandbox_env(sandbox)
        )

        assert bad_code.code == bad_kind.code == ExitCode.BAD_INPUT
        assert "error: --area-code:" in bad_code.stderr
        assert "'landline' is not one of local or mobile or toll_free" in bad_kind.stderr
        assert sandbox.requests == []
