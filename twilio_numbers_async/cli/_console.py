"""Where the command line's output goes: rich tables and a progress bar on a terminal, plain
text when piped, and exactly one JSON document with ``--json``.

The only module that imports rich (the ``[cli]`` extra); the commands print through
:class:`Output` and never decide for themselves whether they are on a terminal.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from rich import box
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table
from rich.text import Text

from twilio_numbers_async.bulk import BulkProgress

__all__ = ["Output"]

_COUNTERS = (
    "[green]{task.fields[bought]} bought[/] "
    "[red]{task.fields[failed]} failed[/] "
    "[yellow]{task.fields[unknown]} unknown[/] "
    "[dim]{task.fields[concurrency]} in flight at most[/]"
)


class Output:
    """Everything a command shows, on stdout.

    ``interactive`` (stdout is a terminal and ``--json`` was not given) turns on rich: the
    progress bar, colours and table borders. Otherwise output is plain text, written as is,
    that reads well in a log.
    """

    def __init__(self, *, json_mode: bool, console: Console | None = None) -> None:
        self.json_mode = json_mode
        # highlight=False: rich would colour numbers and SIDs in arbitrary text.
        self.console = console or Console(highlight=False)
        self.interactive = self.console.is_terminal and not json_mode
        #: Whether the one JSON document of this run is out.
        self.printed_json = False

    def json(self, document: Mapping[str, Any]) -> None:
        """Print ``document`` as the one JSON document of this run."""
        sys.stdout.write(json.dumps(document, indent=2, default=str) + "\n")
        sys.stdout.flush()
        self.printed_json = True

    def line(self, text: str = "", *, style: str | None = None) -> None:
        """Print a line of text, as is (no markup is read in it)."""
        if self.interactive:
            self.console.print(Text(text, style=style or ""))
        else:
            _write(text)

    def table(
        self,
        title: str,
        rows: Iterable[Sequence[str]],
        *,
        headers: Sequence[str] = (),
    ) -> None:
        """A table of text cells; ``headers`` names the columns, if it should show them."""
        cells = [list(row) for row in rows]
        if not self.interactive:
            _write(_plain_table(title, cells, headers))
            return
        table = Table(
            title=title,
            title_justify="left",
            title_style="bold",
            box=box.SIMPLE_HEAD,
            show_header=bool(headers),
        )
        for header in headers or ("",) * _width(cells):
            table.add_column(header, overflow="fold")
        for row in cells:
            table.add_row(*(Text(cell) for cell in row))
        self.console.print(table)

    @contextmanager
    def progress(self, total: int, description: str) -> Iterator[Callable[[BulkProgress], None]]:
        """A progress bar for ``total`` purchases while the block runs, on a terminal only.

        Yields the function to call with the counters after each outcome.
        """
        if not self.interactive:
            yield _ignore
            return
        columns = (
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn(_COUNTERS),
            TimeElapsedColumn(),
        )
        with Progress(*columns, console=self.console) as bar:
            task = bar.add_task(
                description, total=total, bought=0, failed=0, unknown=0, concurrency="?"
            )

            def show(counters: BulkProgress) -> None:
                bar.update(
                    task,
                    completed=counters.done,
                    bought=counters.bought,
                    failed=counters.failed,
                    unknown=counters.unknown,
                    concurrency=counters.concurrency or "?",
                )

            yield show


def _width(rows: Sequence[Sequence[str]]) -> int:
    return max((len(row) for row in rows), default=0)


def _plain_table(title: str, rows: list[list[str]], headers: Sequence[str]) -> str:
    # Aligned columns and nothing else: no borders, no padding to a width, no wrapping, so
    # that a log or grep sees one line per row.
    lines = [list(headers), *rows] if headers else rows
    widths = [max(len(line[i]) for line in lines if i < len(line)) for i in range(_width(lines))]
    body = [
        "  " + "  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=False)).rstrip()
        for line in lines
    ]
    return "\n".join([title, *body])


def _write(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def _ignore(_: BulkProgress) -> None:
    pass
