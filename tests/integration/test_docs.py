"""Every code block of the docs runs, so the docs can't drift from the code.

The convention (docs/index.md says it to readers):

- ```python: run. A block that awaits at top level runs inside an event loop with ``sandbox``
  (a running :class:`Sandbox`, new for each block) and ``client`` (a client for it, with quick
  retries and no rate limit) defined; a block that doesn't runs as a script (``__name__`` is
  ``"__main__"``, no loop is running, so it may call ``asyncio.run``).
- ```python pytest: a test module, run by pytest with the plugin and ``asyncio_mode = auto``;
  every test in it must pass.
- ```python no-run: shown, not run; the text before it says why (real credentials, a Redis
  server). Kept few.
- ```console / ```bash: not run; every ``twilio-numbers`` command line in them must name a
  subcommand and options that ``--help`` knows.

Every ```python and ```python pytest block, and every example program, is also type-checked with
``mypy --strict`` (a pytest block may leave its tests unannotated, as tests often are; a block
that awaits is checked as the body of a function given ``client`` and ``sandbox``): code copied
from the docs passes the type checker its reader runs.

No block may reach past loopback. A failure names the Markdown file and line: the code is
compiled with the file's name and padded to its line, so tracebacks point into the docs.
"""

from __future__ import annotations

import ast
import asyncio
import inspect
import ipaddress
import re
import shlex
import socket
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest

from twilio_numbers_async import (
    MobileNumberPurchase,
    NumberPurchase,
    RetryPolicy,
    TransportError,
    TwilioNumbersClient,
)
from twilio_numbers_async.sandbox import Sandbox

pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parents[2]
PAGES = sorted((ROOT / "docs").glob("*.md"))
SOURCES = [*PAGES, ROOT / "examples" / "README.md", ROOT / "README.md"]
FENCE = re.compile(r"^(?P<indent>\s*)```(?P<info>.*)$")
SHELLS = frozenset({"console", "bash", "sh", "shell"})
PYTHON_KINDS = frozenset({"python", "python pytest", "python no-run"})


@attrs.frozen
class Block:
    path: Path
    #: The line of the block's first line of code, counting from 1.
    line: int
    info: str
    code: str

    def __str__(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def read_blocks(path: Path) -> Iterator[Block]:
    lines = path.read_text(encoding="utf-8").splitlines()
    number = 0
    while number < len(lines):
        opening = FENCE.match(lines[number])
        number += 1
        if opening is None:
            continue
        first = number
        while number < len(lines) and lines[number].strip() != "```":
            number += 1
        if number == len(lines):
            raise AssertionError(f"{path}:{first}: a code block that is never closed")
        if opening["indent"]:
            raise AssertionError(f"{path}:{first}: an indented code block; the test reads none")
        code = "\n".join(lines[first:number]) + "\n"
        yield Block(path, first + 1, opening["info"].strip(), code)
        number += 1


BLOCKS = [block for path in SOURCES if path.exists() for block in read_blocks(path)]
PYTHON = [block for block in BLOCKS if block.info.split(" ")[0] in ("python", "py", "pycon")]
RUN = [block for block in PYTHON if block.info == "python"]
TESTS = [block for block in PYTHON if block.info == "python pytest"]
SHELL = [block for block in BLOCKS if block.info in SHELLS]


def test_the_docs_exist_and_follow_the_convention() -> None:
    assert PAGES, "docs/*.md"
    unknown = [f"{b}: ```{b.info}" for b in PYTHON if b.info not in PYTHON_KINDS]
    assert unknown == [], f"use ```python, ```python pytest or ```python no-run: {unknown}"
    untagged = [str(b) for b in BLOCKS if not b.info]
    assert untagged == [], f"say what each block is (```python, ```console...): {untagged}"
    no_run = [b for b in PYTHON if b.info == "python no-run"]
    assert len(no_run) <= len(RUN) // 4, "not-run blocks are the exception: keep them few"


@pytest.fixture
def loopback_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Refuse any connection or name look-up that would leave this machine."""
    connect = socket.socket.connect
    connect_ex = socket.socket.connect_ex
    getaddrinfo = socket.getaddrinfo

    def allowed(address: Any) -> bool:
        if not isinstance(address, tuple):
            return True  # AF_UNIX, and the like
        host = str(address[0])
        try:
            return ipaddress.ip_address(host).is_loopback
        except ValueError:
            return host == "localhost"

    def guarded_connect(self: socket.socket, address: Any) -> None:
        if not allowed(address):
            raise ConnectionRefusedError(f"the docs' tests stay on loopback, not {address!r}")
        connect(self, address)

    def guarded_connect_ex(self: socket.socket, address: Any) -> int:
        if not allowed(address):
            raise ConnectionRefusedError(f"the docs' tests stay on loopback, not {address!r}")
        return connect_ex(self, address)

    def guarded_getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        name = host.decode() if isinstance(host, bytes) else host
        if name is not None and not allowed((name, 0)):
            raise socket.gaierror(socket.EAI_NONAME, f"the docs' tests resolve no {name!r}")
        return getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket.socket, "connect", guarded_connect)
    monkeypatch.setattr(socket.socket, "connect_ex", guarded_connect_ex)
    monkeypatch.setattr(socket, "getaddrinfo", guarded_getaddrinfo)


@pytest.mark.usefixtures("loopback_only")
def test_the_guard_keeps_a_block_off_the_internet() -> None:
    async def buy_from_twilio() -> None:
        account = "AC" + "0" * 32
        async with TwilioNumbersClient(account, "token", retry=RetryPolicy.no_retries()) as real:
            await real.create_incoming_phone_number(area_code="415")

    with pytest.raises(TransportError) as refused:
        asyncio.run(buy_from_twilio())
    assert refused.value.sent is False
    assert "docs' tests" in str(refused.value)


def compiled(block: Block) -> Any:
    # Padded so that line numbers in a traceback are the Markdown file's.
    source = "\n" * (block.line - 1) + block.code
    return compile(
        source, str(block.path), "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT, dont_inherit=True
    )


async def run_with_sandbox(code: Any) -> None:
    async with Sandbox() as sandbox:
        retry = RetryPolicy(initial_delay=0.001, max_delay=0.01)
        async with sandbox.client(retry=retry, rate_limit=None) as client:
            namespace: dict[str, Any] = {
                "__name__": "__docs__",
                "sandbox": sandbox,
                "client": client,
            }
            result = eval(code, namespace)  # noqa: S307 - our own docs
            await result


@pytest.mark.usefixtures("loopback_only")
@pytest.mark.parametrize("block", RUN, ids=str)
def test_a_python_block_runs(block: Block, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A block may write files (a journal, a CSV) where a reader would: a directory of its own.
    monkeypatch.chdir(tmp_path)
    code = compiled(block)
    try:
        if code.co_flags & inspect.CO_COROUTINE:
            asyncio.run(run_with_sandbox(code))
        else:
            exec(code, {"__name__": "__main__"})  # noqa: S102 - our own docs
    except Exception as exc:
        raise AssertionError(f"{block}: the block fails: {type(exc).__name__}: {exc}") from exc


def test_the_pytest_blocks_pass(pytester: pytest.Pytester) -> None:
    if not TESTS:
        pytest.skip("no ```python pytest block")
    files = {}
    for block in TESTS:
        stem = re.sub(r"\W", "_", str(block)).lower()
        files[f"test_{stem}"] = block
        pytester.makepyfile(**{f"test_{stem}": "\n" * (block.line - 1) + block.code})
    pytester.makefile(
        ".ini",
        pytest=(
            "[pytest]\nasyncio_mode = auto\nasyncio_default_fixture_loop_scope = function\n"
            "filterwarnings = error\n"
        ),
    )
    result = pytester.runpytest_subprocess("-p", "twilio_numbers_async.pytest_plugin", "-rfE")
    failed = {
        str(block)
        for name, block in files.items()
        for line in result.outlines
        if line.startswith(("FAILED", "ERROR")) and f"{name}.py" in line
    }
    assert result.ret == 0, f"pytest blocks that fail: {sorted(failed) or result.outlines[-1]}"
    assert result.parseoutcomes().get("passed", 0) >= len(TESTS)


#: What a block that awaits is checked inside: a function given the names the convention defines.
AWAITING = """\
from twilio_numbers_async import TwilioNumbersClient
from twilio_numbers_async.sandbox import Sandbox


async def _block(client: TwilioNumbersClient, sandbox: Sandbox) -> None:
"""
MYPY_ERROR = re.compile(r"^(?P<path>[^:]+):(?P<line>\d+): (?P<message>(error|note): .*)$")


def checked_source(block: Block) -> tuple[str, int]:
    """The block as a module for mypy, and how many lines come before its own first line."""
    if block.info == "python pytest":
        return "# mypy: allow-untyped-defs\n" + block.code, 1
    if compiled(block).co_flags & inspect.CO_COROUTINE:
        return AWAITING + textwrap.indent(block.code, "    "), AWAITING.count("\n")
    return block.code, 0


def test_the_blocks_and_the_examples_pass_mypy_strict(tmp_path: Path) -> None:
    mypy = pytest.importorskip("mypy.api", reason="mypy, of the [test] extra, is missing")
    checked: dict[str, tuple[Block, int]] = {}
    for block in [*RUN, *TESTS]:
        source, offset = checked_source(block)
        path = tmp_path / (re.sub(r"\W", "_", str(block)).lower() + ".py")
        path.write_text(source, encoding="utf-8")
        checked[str(path)] = (block, offset)
    examples = sorted(str(path) for path in (ROOT / "examples").glob("*.py"))
    out, err, status = mypy.run(
        [
            *("--config-file", str(ROOT / "pyproject.toml")),
            # The project's cache: the library is checked once, not for every run of this test.
            *("--cache-dir", str(ROOT / ".mypy_cache")),
            "--no-error-summary",
            *checked,
            *examples,
        ]
    )
    problems = []
    for line in out.splitlines():
        found = MYPY_ERROR.match(line)
        if found is None:
            problems.append(line)
        elif found["path"] in checked:
            block, offset = checked[found["path"]]
            where = block.line + int(found["line"]) - offset - 1
            problems.append(f"{block.path.relative_to(ROOT)}:{where}: {found['message']}")
        else:
            problems.append(
                f"{Path(found['path']).relative_to(ROOT)}:{found['line']}: {found['message']}"
            )
    assert (status, problems, err) == (0, [], ""), "\n".join(problems)


def command_lines() -> Iterator[tuple[Block, list[str]]]:
    for block in SHELL:
        for line in block.code.splitlines():
            text = line.strip().removeprefix("$ ")
            if text.startswith("twilio-numbers "):
                yield block, shlex.split(text, comments=True)


@pytest.mark.parametrize(("block", "words"), list(command_lines()), ids=lambda v: str(v)[:60])
def test_a_command_line_names_what_the_cli_has(
    block: Block, words: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    cli = pytest.importorskip(
        "twilio_numbers_async.cli", reason="rich, the [cli] extra, is missing"
    )
    assert cli.main(["--help"]) == 0
    commands = capsys.readouterr().out
    sub = words[1]
    if sub.startswith("-"):
        assert sub in commands, f"{block}: twilio-numbers has no option {sub}"
        return
    assert re.search(rf"\b{sub}\b", commands), f"{block}: twilio-numbers has no command {sub!r}"
    assert cli.main([sub, "--help"]) == 0
    known = capsys.readouterr().out
    for word in words[2:]:
        option = word.split("=")[0]
        if option.startswith("--"):
            assert option in known, f"{block}: `twilio-numbers {sub}` has no option {option}"


def table_fields(page: str, heading: str) -> set[str]:
    """The backticked names in the first column of the table under ``heading``."""
    text = (ROOT / "docs" / page).read_text(encoding="utf-8")
    section = text.split(heading, 1)[1].split("\n## ", 1)[0]
    return set(re.findall(r"^\| `(\w+)`", section, flags=re.MULTILINE))


def test_the_request_table_lists_every_field_of_both_requests() -> None:
    fields = set(attrs.fields_dict(NumberPurchase)) | set(attrs.fields_dict(MobileNumberPurchase))
    assert table_fields("purchases.md", "## Every field") == fields


def test_the_error_table_lists_every_code_the_library_gives_a_hint_for() -> None:
    from twilio_numbers_async.errors import _HINTS

    text = (ROOT / "docs" / "errors.md").read_text(encoding="utf-8")
    section = text.split("## Twilio's codes", 1)[1].split("\n## ", 1)[0]
    codes = set(re.findall(r"^\| (\d{5}) ", section, flags=re.MULTILINE))
    assert codes == {str(code) for code in _HINTS}


LINK = re.compile(r"\]\((?P<target>[^)\s]+)\)")


def anchors(path: Path) -> set[str]:
    """GitHub's anchors for the headings of a Markdown file."""
    text = path.read_text(encoding="utf-8")
    headings = re.findall(r"^#+ (.+)$", text, flags=re.MULTILINE)
    return {re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-") for heading in headings}


@pytest.mark.parametrize("path", [p for p in SOURCES if p.exists()], ids=lambda p: p.name)
def test_the_relative_links_resolve(path: Path) -> None:
    broken = []
    for match in LINK.finditer(path.read_text(encoding="utf-8")):
        target = match["target"]
        if re.match(r"[a-z]+:", target):
            continue  # https:, mailto:
        file, _, anchor = target.partition("#")
        linked = (path.parent / file).resolve() if file else path
        if not linked.exists():
            broken.append(target)
            continue
        if anchor and linked.suffix == ".md" and anchor not in anchors(linked):
            broken.append(target)
    assert broken == [], f"{path.relative_to(ROOT)}: links to nothing: {broken}"
