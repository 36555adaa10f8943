"""``twilio-numbers sandbox``: serve a fake Twilio on loopback for other programs."""

from __future__ import annotations

import asyncio
import shlex
from argparse import Namespace

from twilio_numbers_async.sandbox import Sandbox

from ._console import Output
from ._errors import UsageError

__all__ = ["run"]


async def run(args: Namespace, out: Output) -> bool:
    """Serve a sandbox for other programs until Ctrl-C or SIGTERM."""
    label, faults = args.faults
    try:
        server = Sandbox(
            host=args.host,
            port=args.port,
            faults=faults,
            seed=args.seed,
            max_concurrency=args.max_concurrency,
            account_sid=args.account_sid,
            auth_token=args.auth_token,
        )
    except (TypeError, ValueError) as exc:
        raise UsageError(f"can't start the sandbox: {exc}") from exc
    try:
        async with server:
            _show(out, server, label)
            await asyncio.Event().wait()  # until Ctrl-C or SIGTERM cancels it (see _main)
    except asyncio.CancelledError:
        out.line("Sandbox stopped.")
        raise
    return True


def _show(out: Output, server: Sandbox, label: str) -> None:
    token = server.auth_token
    lines = [
        f"Sandbox serving at {server.url} (faults: {label})",
        "Its account SID and auth token are test values it made up, not Twilio secrets:",
        f"  export TWILIO_ACCOUNT_SID={shlex.quote(server.account_sid)}",
        f"  export TWILIO_AUTH_TOKEN={shlex.quote(token)}",
        "Then buy from it, for example:",
        f"  twilio-numbers buy --base-url {server.url} --area-code 415",
        "Stop it with Ctrl-C.",
    ]
    for line in lines:
        out.line(line)
