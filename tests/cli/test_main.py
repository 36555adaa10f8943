"""The command line as a whole: options, usage errors, exit codes, help, and what it imports."""

from __future__ import annotations

import errno
import importlib.metadata
import json
import socket
import subprocess
import sys
from pathlib import Path

import attrs
import pytest

from tests.cli._run import clean_env, run_cli
from twilio_numbers_async import (
    AuthenticationError,
    NumberPurchase,
    TwilioApiError,
)
from twilio_numbers_async.cli import ExitCode, main
from twilio_numbers_async.cli._errors import describe
from twilio_numbers_async.cli._fields import optional_fields
from twilio_numbers_async.cli._parser import build_parser


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["buy"], "give a PHONE_NUMBER"),
        (
            ["buy", "+14155550100", "--area-code", "415"],
            "give a PHONE_NUMBER or --area-code, not both",
        ),
        (["buy", "--mobile", "--area-code", "415"], "--mobile"),
        (["buy", "--area-code", "415", "--voice-method", "PUT"], "'PUT' is not one of GET or POST"),
        (["demo", "--count", "0"], "between"),
        (["demo", "--faults", "lightning=1"], "unknown fault"),
        (["demo", "--faults", "bogus"], "the names: latency, rate_limited, retry_after"),
        (["demo", "--rate", "-1"], "not a rate"),
        (["sandbox", "--host", "0.0.0.0"], "--allow-remote"),  # noqa: S104
    ],
)
def test_bad_options_exit_2_in_one_line(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == ExitCode.BAD_INPUT
    [line] = capsys.readouterr().err.splitlines()  # no usage: buy's alone is 20 lines
    assert message in line
    assert line.endswith(f"(see twilio-numbers {argv[0]} --help)")


def test_an_invalid_choice_names_the_option_and_the_choices(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["buy", "--area-code", "415", "--sms-method", "post"]) == ExitCode.BAD_INPUT

    assert capsys.readouterr().err == (
        "twilio-numbers buy: error: argument --sms-method: 'post' is not one of GET or POST "
        "(see twilio-numbers buy --help)\n"
    )


@pytest.mark.parametrize(
    "argv", [["-v", "demo"], ["demo", "-v"], ["--verbose", "sandbox", "--port", "0"]]
)
def test_verbose_goes_before_or_after_the_command(argv: list[str]) -> None:
    assert build_parser().parse_args(argv).verbose is True
    assert (
        build_parser().parse_args([argv[1] if argv[0].startswith("-") else argv[0]]).verbose
        is False
    )


def test_verbose_before_the_command_runs_it() -> None:
    run = run_cli("-v", "demo", "--count", "2", "--json")

    assert run.code == ExitCode.OK, run.stderr
    assert run.json()["requested"] == 2


def test_a_missing_file_is_named_in_words(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "missing.csv"

    code = main(["bulk", str(missing), "--journal", str(tmp_path / "j.jsonl")])

    assert code == ExitCode.BAD_INPUT
    assert capsys.readouterr().err == f"twilio-numbers: error: {missing}: no such file or folder\n"


def test_a_bad_field_value_exits_2_naming_its_option(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("TWILIO_ACCOUNT_SID", "AC" + "0" * 32)
    monkeypatch.setenv("TWILIO_AUTH_TOKEN", "token")

    code = main(["buy", "--area-code", "415", "--sms-url", "ftp://example.com"])

    assert code == ExitCode.BAD_INPUT
    assert (
        "--sms-url: 'ftp://example.com' is not an absolute http(s) URL" in capsys.readouterr().err
    )


def test_buy_has_an_option_for_every_optional_field(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["buy", "--help"]) == 0
    text = capsys.readouterr().out

    names = {field.name for field in attrs.fields(NumberPurchase)} - {"phone_number", "area_code"}
    assert {field.name for field in optional_fields()} == names
    for name in names:
        assert "--" + name.replace("_", "-") in text
    assert "--no-voice-caller-id-lookup" in text
    assert "default: $TWILIO_BASE_URL" in " ".join(text.split())


def test_version_and_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.startswith("twilio-numbers ")
    assert main(["--help"]) == 0
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

    assert describe(refused)[0] == ExitCode.BAD_INPUT
    assert "TWILIO_ACCOUNT_SID" in describe(refused)[1]
    code, message = describe(rejected)
    assert code == ExitCode.FAILED
    assert message.startswith("HTTP 400 21452: none left (no numbers are available in that area")
    assert describe(FileNotFoundError(errno.ENOENT, "No such file", "x.csv")) == (
        ExitCode.BAD_INPUT,
        "x.csv: no such file or folder",
    )
    assert describe(OSError(errno.EROFS, "Read-only file system", "j.jsonl")) == (
        ExitCode.BAD_INPUT,
        "j.jsonl: read-only file system",
    )


# --- what a command loads ----------------------------------------------------------------------

LOADED = """\
import json, sys
from twilio_numbers_async.cli import main
code = main(sys.argv[1:])
server = [m for m in sys.modules if m.startswith(("aiohttp.web", "twilio_numbers_async.sandbox"))]
print("LOADED " + json.dumps(sorted(server)), file=sys.stderr)
sys.exit(code)
"""


def loaded_by(*argv: str, env: dict[str, str]) -> tuple[int, list[str], str]:
    """Run the CLI with ``argv`` in a fresh interpreter; its exit code, the sandbox and
    aiohttp.web modules it loaded, and its stderr."""
    done = subprocess.run(  # noqa: S603 - our own code, with arguments the test chose
        [sys.executable, "-c", LOADED, *argv],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    *stderr, last = done.stderr.splitlines()
    assert last.startswith("LOADED "), done.stderr
    return done.returncode, json.loads(last.removeprefix("LOADED ")), "\n".join(stderr)


def test_buy_loads_neither_the_sandbox_nor_aiohttps_server() -> None:
    # A socket bound and not listening refuses every connection, and no other process can
    # take its port while the test holds it.
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{closed.getsockname()[1]}"
        env = clean_env(TWILIO_ACCOUNT_SID="AC" + "0" * 32, TWILIO_AUTH_TOKEN="token")
        help_code, help_loaded, _ = loaded_by("buy", "--help", env=env)
        buy_code, buy_loaded, stderr = loaded_by(
            "buy", "--area-code", "415", "--base-url", url, env=env
        )

    assert help_code == ExitCode.OK
    assert buy_code == ExitCode.FAILED, stderr
    assert "TransportError" in stderr or "connect" in stderr, stderr  # it did try to buy
    assert help_loaded == buy_loaded == []
    # The check itself can see the modules when they are loaded.
    assert loaded_by("demo", "--count", "1", "--json", env=clean_env())[1] != []


def test_the_console_script_is_main() -> None:
    [script] = importlib.metadata.entry_points(group="console_scripts", name="twilio-numbers")

    assert script.load() is main
