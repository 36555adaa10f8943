"""Every benchmark of twilio_numbers_async, in one command.

    python -m benchmarks.run            # the full run, about 5 to 10 minutes
    python -m benchmarks.run --quick    # a smoke run, under a minute
    python benchmarks/run.py [--quick]  # the same, from a script path

Runs, in this order, and prints each table as it finishes:

1. ``clients``: client CPU per request and requests/s of ours, hand-tuned aiohttp, plain aiohttp
   and the official twilio SDK, against a canned server in its own process, at 1, 16 and 64 in
   flight, interleaved in rounds (``bench_clients``);
2. ``bulk``: ``purchase_many`` throughput against the Sandbox, beside raw aiohttp
   (``bench_bulk``);
3. ``memory``: peak RSS of ``purchase_many`` over a streamed input, with and without a journal,
   a fresh process per measurement (``bench_memory``);
4. ``micro``: validation, encoding and parsing alone (``bench_micro``);
5. ``bucket``: the TokenBucket's accuracy on the real clock (``bench_bucket.py``).

Everything is written to ``benchmarks/results.json`` (``--output`` to change), machine-readable
for plots. ``--only clients,micro`` runs a subset. The server takes CPU 0 and the client CPU 1
where the machine has two or more and allows pinning.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    # Run as a script (python benchmarks/run.py): make "benchmarks" importable as a package.
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    __package__ = "benchmarks"

from benchmarks import bench_bulk, bench_clients, bench_memory, bench_micro

PARTS = ("clients", "bulk", "memory", "micro", "bucket")
HERE = Path(__file__).resolve().parent


def machine() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            for line in info:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass

    def version(name: str) -> str | None:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            return None

    try:
        affinity = sorted(os.sched_getaffinity(0))
    except AttributeError:
        affinity = None
    return {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "usable_cpus": affinity,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "packages": {
            name: version(name)
            for name in (
                "twilio-numbers-async",
                "aiohttp",
                "attrs",
                "cattrs",
                "tenacity",
                "orjson",
                "twilio",
                "yarl",
                "multidict",
            )
        },
    }


def bucket(*, quick: bool) -> dict[str, Any]:
    """bench_bucket.py, run as it is (it takes about 15 seconds either way)."""
    del quick
    done = subprocess.run(  # noqa: S603 - this interpreter, our own script
        [sys.executable, str(HERE / "bench_bucket.py"), "--json"],
        capture_output=True,
        check=True,
        text=True,
    )
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def bucket_markdown(results: dict[str, Any]) -> str:
    from benchmarks import bench_bucket

    return bench_bucket.markdown(results)


RUNNERS: dict[str, tuple[Callable[..., dict[str, Any]], Callable[[dict[str, Any]], str]]] = {
    "clients": (bench_clients.run, lambda r: bench_clients.markdown(r["summary"])),
    "bulk": (bench_bulk.run, bench_bulk.markdown),
    "memory": (bench_memory.run, bench_memory.markdown),
    "micro": (bench_micro.run, bench_micro.markdown),
    "bucket": (bucket, bucket_markdown),
}

TITLES = {
    "clients": "Client CPU per request, four clients (canned server)",
    "bulk": "purchase_many throughput (Sandbox)",
    "memory": "Peak memory of purchase_many",
    "micro": "Validation, encoding and parsing alone",
    "bucket": "TokenBucket accuracy",
}


def main() -> None:
    parser = argparse.ArgumentParser(description="Run the benchmarks of twilio_numbers_async.")
    parser.add_argument("--quick", action="store_true", help="a smoke run, under a minute")
    parser.add_argument(
        "--only", help=f"comma-separated parts to run, of: {', '.join(PARTS)} (default: all)"
    )
    parser.add_argument(
        "--output",
        type=Path,
        default=HERE / "results.json",
        help="where to write the machine-readable results (default: benchmarks/results.json)",
    )
    args = parser.parse_args()
    parts = PARTS if args.only is None else tuple(p.strip() for p in args.only.split(","))
    unknown = set(parts) - set(PARTS)
    if unknown:
        parser.error(f"unknown parts: {', '.join(sorted(unknown))} (choose from {PARTS})")

    results: dict[str, Any] = {
        "command": " ".join(["python -m benchmarks.run", *sys.argv[1:]]),
        "quick": args.quick,
        "machine": machine(),
    }
    started = time.perf_counter()
    info = results["machine"]
    print(
        f"# twilio_numbers_async benchmarks{' (quick)' if args.quick else ''}\n\n"
        f"{info['cpu']}, {info['cores']} cores, Python {info['python']}, "
        f"aiohttp {info['packages']['aiohttp']}, {info['date']}\n",
        flush=True,
    )
    for part in parts:
        run, markdown = RUNNERS[part]
        part_started = time.perf_counter()
        print(f"## {TITLES[part]}\n", flush=True)
        result = run(quick=args.quick)
        result["seconds"] = round(time.perf_counter() - part_started, 1)
        results[part] = result
        print(f"\n{markdown(result)}\n", flush=True)
        # Written after every part, so that an interrupted run keeps what it measured.
        args.output.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    results["seconds"] = round(time.perf_counter() - started, 1)
    args.output.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(f"Done in {results['seconds']:.0f} s; results in {args.output}")


if __name__ == "__main__":
    main()
