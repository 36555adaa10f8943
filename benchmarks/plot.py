"""Draw ``results.json`` as one picture: the clients' cost and speed, and the bucket's accuracy.

    python -m benchmarks.plot [results.json] [-o results.png]

Three panels: client CPU per request and requests per second against requests in flight, one
line per client (medians over rounds, the band is min-max); and the TokenBucket's achieved rate
as a share of its set rate, for a one-token bucket and for the default capacity. Needs
matplotlib (in the ``bench`` extra).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from .clients import NAMES

HERE = Path(__file__).resolve().parent


def main() -> None:
    parser = argparse.ArgumentParser(description="Plot the benchmark results.")
    parser.add_argument("results", nargs="?", type=Path, default=HERE / "results.json")
    parser.add_argument("-o", "--output", type=Path, default=HERE / "results.png")
    args = parser.parse_args()

    import matplotlib

    matplotlib.use("Agg")  # no display: write a file
    import matplotlib.pyplot as plt

    results = json.loads(args.results.read_text(encoding="utf-8"))
    figure, (cpu, speed, bucket) = plt.subplots(1, 3, figsize=(15, 4.6))
    _clients(cpu, results, "cpu_us", "client CPU per request (µs), lower is better")
    _clients(speed, results, "rps", "requests per second, higher is better")
    _bucket(bucket, results["bucket"])
    machine = results["machine"]
    figure.suptitle(
        f"CreateIncomingPhoneNumber against a local server: {machine['cpu']}, "
        f"Python {machine['python']}, {machine['date'][:10]}",
        fontsize=10,
    )
    figure.tight_layout()
    figure.savefig(args.output, dpi=110)
    print(f"wrote {args.output}")


def _clients(axes: Any, results: dict[str, Any], measure: str, label: str) -> None:
    table = results["clients"]["summary"]["table"]
    concurrencies = [int(c) for c in table]
    for name in NAMES:
        spreads = [table[str(c)][name][measure] for c in concurrencies]
        axes.plot(concurrencies, [s["median"] for s in spreads], marker="o", label=name)
        axes.fill_between(
            concurrencies, [s["min"] for s in spreads], [s["max"] for s in spreads], alpha=0.15
        )
    axes.set_xscale("log", base=2)
    axes.set_xticks(concurrencies, [str(c) for c in concurrencies])
    axes.set_xlabel("requests in flight")
    axes.set_ylabel(label)
    axes.set_ylim(bottom=0)
    axes.grid(alpha=0.3)
    axes.legend()


def _bucket(axes: Any, bucket: dict[str, Any]) -> None:
    # As a share of the set rate: on a log-log plot of rate against rate every line hugs the
    # diagonal and the errors, a few percent, can't be seen.
    rates = sorted({row["rate"] for row in bucket["rates"]})
    axes.axhline(100, color="grey", linestyle="--", label="the set rate")
    for shape, test in (("capacity 1", _one_token), ("capacity = rate", _default_capacity)):
        rows = sorted((row for row in bucket["rates"] if test(row)), key=lambda row: row["rate"])
        axes.plot(
            [row["rate"] for row in rows],
            [100 * row["achieved_per_s"] / row["rate"] for row in rows],
            marker="o",
            label=shape,
        )
    axes.set_xscale("log")
    axes.set_xticks(rates, [str(rate) for rate in rates])
    axes.set_xlabel("TokenBucket rate (tokens/s)")
    axes.set_ylabel("achieved rate, % of the set rate")
    axes.set_ylim(80, 105)
    axes.grid(alpha=0.3)
    axes.legend(loc="lower left")


def _one_token(row: dict[str, Any]) -> bool:
    return bool(row["capacity"] == 1)


def _default_capacity(row: dict[str, Any]) -> bool:
    return bool(row["capacity"] == row["rate"])


if __name__ == "__main__":
    main()
