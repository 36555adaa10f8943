"""``twilio-numbers buy``: one number, against a sandbox on loopback."""

from __future__ import annotations

from datetime import datetime

from tests.cli._run import run_cli, run_cli_async, sandbox_env
from twilio_numbers_async.cli import ExitCode
from twilio_numbers_async.sandbox import Sandbox

MOBILE_ENDPOINT = "IncomingPhoneNumbers/Mobile.json"


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
        # Dates in ISO 8601, as the table shows them, not Twilio's RFC 2822.
        for field in ("date_created", "date_updated"):
            assert datetime.fromisoformat(number[field]).tzinfo is not None, number[field]
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


async def test_buy_an_area_code_through_a_search_or_posted_as_it_is() -> None:
    async with Sandbox() as sandbox:
        env = sandbox_env(sandbox)
        searched = await run_cli_async(
            "buy", "--area-code", "415", "--base-url", sandbox.url, "--json", env=env
        )
        posted = await run_cli_async(
            *("buy", "--area-code", "415", "--base-url", sandbox.url, "--json"),
            *("--area-codes", "direct"),
            env=env,
        )

        assert searched.code == posted.code == 0, searched.stderr + posted.stderr
        found, sent = sandbox.purchases
        # The default: a search, then its candidate POSTed as a given number.
        assert found.form == {"PhoneNumber": searched.json()["phone_number"]}
        assert [r.method for r in sandbox.requests[:2]] == ["GET", "POST"]
        # direct: the area code POSTed as it is, no search.
        assert sent.form == {"AreaCode": "415"}
        assert sandbox.requests[2].method == "POST"
        assert len(sandbox.requests) == 3


async def test_buy_failures_exit_1_and_bad_credentials_exit_2_without_leaking_them() -> None:
    async with Sandbox() as sandbox:
        unavailable = await run_cli_async(
            "buy", "+15005550000", "--base-url", sandbox.url, env=sandbox_env(sandbox)
        )
        wrong_token = "f" * 32
        env = {**sandbox_env(sandbox), "TWILIO_AUTH_TOKEN": wrong_token}
        refused = await run_cli_async("buy", "+14155550100", "--base-url", sandbox.url, env=env)

    assert unavailable.code == ExitCode.FAILED
    assert "21422" in unavailable.stderr
    assert "pick another" in unavailable.stderr  # the error's hint
    assert refused.code == ExitCode.BAD_INPUT
    assert "TWILIO_AUTH_TOKEN" in refused.stderr
    assert wrong_token not in refused.stdout + refused.stderr
    assert "Traceback" not in unavailable.stderr + refused.stderr


def test_buy_without_credentials_exits_2_naming_the_variables() -> None:
    run = run_cli("buy", "--area-code", "415", "--json")

    assert run.code == ExitCode.BAD_INPUT
    assert "TWILIO_ACCOUNT_SID" in run.stderr
    assert "TWILIO_AUTH_TOKEN" in run.stderr
    assert run.json()["exit_code"] == 2  # --json: stdout is still one JSON document
