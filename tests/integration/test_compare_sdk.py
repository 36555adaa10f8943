"""benchmarks/compare_sdk.py: it runs, and a row says what the sandbox saw happen.

Needs the official ``twilio`` package (the ``[bench]`` extra); skipped without it.
"""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

pytest.importorskip("twilio", reason="twilio (the [bench] extra) is not installed")

from benchmarks import compare_sdk

ROOT = Path(__file__).resolve().parents[2]


async def test_a_lost_answer_in_an_area_code_costs_the_sdks_retry_a_second_number() -> None:
    with warnings.catch_warnings():
        compare_sdk.hush_sdk_warnings()
        [row] = await compare_sdk.run(["lost-area-code"])

    sdk, ours = row.seen["sdk"], row.seen["ours"]
    assert sdk.said == ("raised `ServerDisconnectedError`", "returned the number")
    assert (sdk.posts, sdk.lookups, sdk.sold, sdk.held) == (2, 0, 2, 1)
    assert ours.said == ("returned the number",)
    assert (ours.posts, ours.lookups, ours.sold, ours.held) == (1, 1, 1, 1)
    assert "**bought 2, caller has 1**" in row.sdk
    assert "**bought 1, caller has 1**" in row.ours


def test_the_script_prints_a_subset_and_leaves_the_results_alone() -> None:
    before = compare_sdk.RESULTS.read_bytes()

    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.compare_sdk", "--only", "lost-number"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )

    assert done.returncode == 0, done.stderr
    version = importlib.metadata.version("twilio")
    lines = done.stdout.splitlines()
    assert lines[0] == f"| scenario | twilio SDK {version} | twilio_numbers_async |"
    [row] = [line for line in lines if line.startswith("| Buying +14155550100")]
    _, sdk, ours = (cell.strip() for cell in row.strip("|").split("|"))
    assert sdk.endswith("**bought 1, caller has 0**")  # bought, then told it failed: 21422
    assert "400/21422" in sdk
    assert ours.endswith("**bought 1, caller has 1**")
    assert compare_sdk.RESULTS.read_bytes() == before


def test_an_unknown_scenario_is_refused_by_name(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        compare_sdk.main(["--only", "lost-number,nope"])

    assert exit_.value.code == 2
    assert "unknown scenario nope" in capsys.readouterr().err


def test_the_section_is_replaced_where_it_is_and_appended_where_it_is_not() -> None:
    new = f"{compare_sdk.HEADING}\n\nnew table\n"
    before = "# Results\n\n## Speed\n\nfast\n"
    after = "## Memory\n\nsmall\n"
    old = f"{compare_sdk.HEADING}\n\nold table\n\n"

    assert compare_sdk.replace_section(before.rstrip("\n"), new) == before + "\n" + new
    replaced = compare_sdk.replace_section(before + "\n" + old + after, new)
    assert replaced == before + "\n" + new + "\n" + after
    assert compare_sdk.replace_section(replaced, new) == replaced
