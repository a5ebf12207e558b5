"""Where the CPU of a handshake burst goes, in the node's process and in the clients':

    python -m stt_bench.burst_profile [--runtime asyncio] [--count 2000] [--frequency 1999]

The suite's burst (``twoproc.handshakes``: one node process, one client process, ``count``
concurrent handshakes) with Linux ``perf`` attached to both processes once they have started
and before the burst is released (``perf`` must be installed and allowed to sample this
user's processes). Each sample taken between the burst's first start and last completion is
sorted by what its stack was doing (:mod:`stt_bench.perf_samples`: X25519, AEAD and hash
arithmetic, the collector, the kernel, the calls into the crypto libraries, the compiled core,
the interpreter).

Each is reported in µs of CPU per handshake (a cpu-clock sample is 1/frequency s of CPU) for
each process and both together, beside the budget a target rate leaves the whole machine.
Profiling slows the burst (perf copies each sample's stack), so the rate printed is not the
suite's; the shares are what the report is for.
"""

from __future__ import annotations

import os
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

from . import twoproc
from .perf_samples import (
    ARITHMETIC,
    CRYPTO,
    KINDS,
    PerfRecorder,
    profile_parser,
    read_samples,
    require_perf,
    run_command,
    tally,
)


def profile_burst(runtime: str, count: int, frequency: int) -> dict[str, Any]:
    """The burst run under perf: its result (``twoproc.handshakes``) and the samples of the
    node's process and the client process counted by kind."""
    require_perf()
    roles: dict[int, str] = {}
    with tempfile.TemporaryDirectory() as folder:
        perf = PerfRecorder(Path(folder) / "perf.data", frequency)

        def ready(pids: list[int]) -> None:
            roles.update({pids[0]: "node", pids[1]: "clients"})
            perf.attach(pids)

        try:
            result = twoproc.handshakes(runtime, count, 1, on_ready=ready)
        finally:
            perf.stop()
        samples = read_samples(perf.data)
    counts = tally(samples, roles, result["start"], result["end"])
    return {"runtime": runtime, "count": count, "frequency": frequency, "result": result,
            "counts": {role: dict(kinds) for role, kinds in counts.items()},
            "cores": os.cpu_count() or 1}


def report(profile: dict[str, Any], target: float) -> str:
    """The table of µs per handshake by kind and process, and the budget ``target``
    handshakes/s leaves both processes together on this machine's cores."""
    count, frequency = profile["count"], profile["frequency"]
    per = 1e6 / frequency / count  # µs per handshake that one sample stands for
    counts = {role: Counter(kinds) for role, kinds in profile["counts"].items()}
    result = profile["result"]
    lines = [f"{count:,} handshakes on {profile['runtime']}, profiled "
             f"({result['handshakes_per_s']:,.0f}/s under perf; cpu-clock at {frequency:,} Hz)",
             f"{'µs per handshake':<34}{'node':>8}{'clients':>9}{'both':>8}"]

    def row(name: str, node: float, clients: float) -> str:
        return f"{name:<34}{node:>8.0f}{clients:>9.0f}{node + clients:>8.0f}"

    for kind in KINDS:
        lines.append(row(kind, counts["node"][kind] * per, counts["clients"][kind] * per))
    totals = {role: sum(kinds.values()) * per for role, kinds in counts.items()}
    lines.append(row("all samples", totals["node"], totals["clients"]))
    lines.append(row("CPU the processes measured", result["node_cpu_s"] * 1e6,
                     result["clients_cpu_s"] * 1e6))
    both = totals["node"] + totals["clients"]
    crypto = sum(counts[role][kind] for role in counts for kind in CRYPTO) * per
    arithmetic = sum(counts[role][kind] for role in counts for kind in ARITHMETIC) * per
    budget = profile["cores"] / target * 1e6
    rest = both - crypto
    room = budget - crypto
    lines.append(
        f"At {target:,.0f}/s the machine's {profile['cores']} cores leave {budget:,.0f} µs of CPU "
        f"per handshake for both processes together. Cryptography takes {crypto:,.0f} "
        f"(its arithmetic {arithmetic:,.0f}, the calls into it {crypto - arithmetic:,.0f}); "
        f"everything else {rest:,.0f}, which would have to fit in "
        + (f"{room:,.0f} ({room / rest:.0%} of it)." if room > 0 else "nothing: the "
           "cryptography alone exceeds the budget."))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = profile_parser("python -m stt_bench.burst_profile", __doc__, "asyncio", 1999)
    parser.add_argument("--count", type=int, default=2000, help="concurrent handshakes")
    parser.add_argument("--target", type=float, default=3000.0, help="handshakes/s")
    run_command(parser, argv, lambda args: report(
        profile_burst(args.runtime, args.count, args.frequency), args.target))


__all__ = ["main", "profile_burst", "report"]


if __name__ == "__main__":
    main()
