"""``twilio-numbers sandbox``: serve a fake Twilio on loopback for other programs."""

from __future__ import annotations

import asyncio
import errno
import shlex
from argparse import Namespace

from twilio_numbers_async.sandbox import Sandbox

from ._console import Output
from ._errors import UsageError, os_error

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
        await server.start()
    except OSError as exc:
        raise UsageError(_cannot_listen(args.host, args.port, exc)) from exc
    try:
        _show(out, server, label, args)
        await asyncio.Event().wait()  # until Ctrl-C or SIGTERM cancels it (see _main)
    finally:
        await server.stop()
        out.line("Sandbox stopped.")
    return True


def _cannot_listen(host: str, port: int, exc: OSError) -> str:
    # repr: a value with a line break or a space in it is shown as it is, on one line.
    where = f"{host!r} port {port}"
    if exc.errno == errno.EADDRINUSE:
        return (
            f"can't listen on {where}: another program is using it; stop that program, or "
            "pick another port with --port (0 picks a free one)"
        )
    if exc.errno == errno.EACCES:
        return f"can't listen on {where}: not allowed (ports below 1024 need privileges)"
    if exc.errno == errno.EADDRNOTAVAIL:
        return f"can't listen on {where}: {host!r} is not an address of this machine"
    return f"can't listen on {where}: {os_error(exc)}"


def _show(out: Output, server: Sandbox, label: str, args: Namespace) -> None:
    # Only what it made up is a made-up test value: what the user gave may be anything.
    if args.account_sid is None and args.auth_token is None:
        credentials = "Its account SID and auth token are test values it made up, not secrets:"
    elif args.account_sid is None:
        credentials = "It takes the auth token you gave, and an account SID it made up:"
    elif args.auth_token is None:
        credentials = "It takes the account SID you gave, and an auth token it made up:"
    else:
        credentials = "It takes the account SID and auth token you gave:"
    lines = [
        f"Sandbox serving at {server.url} (faults: {label})",
        credentials,
        f"  export TWILIO_ACCOUNT_SID={shlex.quote(server.account_sid)}",
        f"  export TWILIO_AUTH_TOKEN={shlex.quote(server.auth_token)}",
        f"  export TWILIO_BASE_URL={shlex.quote(server.url)}",
        "Then buy from it, for example:",
        "  twilio-numbers buy --area-code 415",
        "Stop it with Ctrl-C.",
    ]
    for line in lines:
        out.line(line)
