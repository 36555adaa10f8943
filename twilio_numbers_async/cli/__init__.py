"""``twilio-numbers``: buy Twilio phone numbers from the command line (the ``[cli]`` extra).

:func:`main` parses the command line (``_parser``), runs one command and turns what it raises
into a message and an :class:`ExitCode` (``_main``, ``_errors``). Each command is a module of
its own, imported only when it runs, so that ``buy`` and ``bulk`` never load the sandbox:

- ``_demo``: a bulk purchase from an in-process sandbox with faults on, audited (``_audit``);
- ``_buy``: one number; ``_bulk``: every row of a CSV file (``_csv``), resumably, reporting
  each row (``_results``);
- ``_search``: the numbers for sale; ``_release``: numbers given back, by SID or every number a
  bulk journal bought, resumably;
- ``_sandbox``: serve a sandbox for other programs.

What they share: ``_twilio`` (the client, from the environment, and the go-ahead before
buying or releasing), ``_fields`` (the request fields as options and columns), ``_tally`` (counting
outcomes) and ``_console`` (tables, the progress bar and JSON, through rich). The library never
imports this package.
"""

from __future__ import annotations

from ._errors import ExitCode
from ._main import main

__all__ = ["ExitCode", "main"]
