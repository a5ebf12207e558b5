"""Where the CPU of a bulk transfer goes, in the sending and the receiving process, for STT and
for the raw UDP+AES-GCM blast the suite measures it against:

    python -m stt_bench.bulk_profile [--runtime trio] [--frame 65000] [--seconds 4]

The suite's two-process goodput (``twoproc.goodput``: a sink process fed by a source process,
default settings but the frame size) run twice, the raw blast then STT, each with Linux
``perf`` attached to both processes once they have started (``perf`` must be installed and
allowed to sample this user's processes). The samples taken from ``WARMUP`` s after the
start until the sending ends (the steady transfer: no start-up, no handshake, no close) are
sorted by what their stacks were doing (:mod:`stt_bench.perf_samples`) and reported in µs of
CPU per MB received: a cpu-clock sample is 1/frequency s of CPU, and the MB are the sink's
rate over that span.

The goodput ratio follows from these costs: two processes that each have a core of their own
and are busy all the time move data at the rate of the one that needs the most CPU per MB, so
the ratio the CPU allows is raw's largest cost per MB over STT's. The report prints it beside
the ratio the profiled runs measured, and what STT's sender and receiver spend beyond the
blast's, kind by kind: what bounds the ratio. Profiling slows both transfers (perf copies each
sample's stack); the costs per MB are what the report is for.
"""

from __future__ import annotations

import operator
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import twoproc
from .headline import stt_settings
from .perf_samples import (
    KINDS,
    PerfRecorder,
    profile_parser,
    read_samples,
    require_perf,
    run_command,
    tally,
)

# s from the source's start: what the transfer's CPU shares leave out (imports, handshake),
# and the first windows as well, which a profile of the steady transfer should not sample
WARMUP = twoproc.BUSY_FROM + 0.5
ROLES = ("source", "sink")


def profile_transfer(runtime: str, kind: str, frame: int, seconds: float,
                     frequency: int) -> dict[str, Any]:
    """One transfer (``kind`` "raw" or "stt") under perf: the sink's rate, the span sampled
    and the samples of the source and the sink counted by kind."""
    require_perf()
    roles: dict[int, str] = {}
    span: list[float] = []
    with tempfile.TemporaryDirectory() as folder:
        perf = PerfRecorder(Path(folder) / "perf.data", frequency)

        def ready(pids: list[int]) -> None:
            started = time.perf_counter()  # CLOCK_MONOTONIC, as perf is told to stamp
            roles.update({pids[0]: "sink", pids[1]: "source"})
            span.extend((started + WARMUP, started + seconds))
            perf.attach(pids)

        try:
            rate = twoproc.goodput(runtime, kind, seconds, frame=frame,
                                   settings=stt_settings(frame, None), on_ready=ready)
        finally:
            perf.stop()
        samples = read_samples(perf.data)
    start, end = span
    counts = tally(samples, roles, start, end)
    return {"kind": kind, "rate": rate, "seconds": end - start,
            "counts": {role: dict(kinds) for role, kinds in counts.items()}}


def profile_bulk(runtime: str, frame: int, seconds: float, frequency: int) -> dict[str, Any]:
    """The raw blast and STT, one after the other, each profiled (:func:`profile_transfer`)."""
    if seconds <= WARMUP + 0.5:
        raise ValueError(f"a transfer of {seconds:g} s leaves nothing after the "
                         f"{WARMUP:g} s of warm-up")
    return {"runtime": runtime, "frame": frame, "frequency": frequency,
            "raw": profile_transfer(runtime, "raw", frame, seconds, frequency),
            "stt": profile_transfer(runtime, "stt", frame, seconds, frequency)}


def costs(transfer: dict[str, Any], frequency: int) -> dict[str, Counter[str]]:
    """µs of CPU per MB received, by role and kind, of one profiled transfer."""
    megabytes = transfer["rate"] * transfer["seconds"] / 1e6
    per = 1e6 / frequency / megabytes if megabytes > 0 else 0.0
    return {role: Counter({kind: count * per for kind, count in
                           transfer["counts"].get(role, {}).items()})
            for role in ROLES}


def report(profile: dict[str, Any]) -> str:
    """The table of µs per MB by kind for both processes of both transfers, STT's extra over
    the blast, and the goodput ratio the CPU allows beside the one measured."""
    frequency = profile["frequency"]
    raw, stt = costs(profile["raw"], frequency), costs(profile["stt"], frequency)
    lines = [f"{profile['runtime']}, {profile['frame']:,}-byte frames, two processes under perf "
             f"(cpu-clock at {frequency:,} Hz; {profile['raw']['seconds']:.1f} s and "
             f"{profile['stt']['seconds']:.1f} s of steady transfer)",
             f"{'µs of CPU per MB':<22}"
             + "".join(f"{title:>10}" for title in ("raw src", "STT src", "extra",
                                                    "raw sink", "STT sink", "extra"))]

    def row(name: str, cost: Callable[[Counter[str]], float]) -> str:
        cells: list[float] = []
        for role in ROLES:
            theirs, ours = cost(raw[role]), cost(stt[role])
            cells += [theirs, ours, ours - theirs]
        return f"{name:<22}" + "".join(f"{cell:>10,.0f}" for cell in cells)

    for kind in KINDS:
        if any(side[role][kind] for side in (raw, stt) for role in ROLES):
            lines.append(row(kind, operator.itemgetter(kind)))
    lines.append(row("all samples", lambda kinds: sum(kinds.values())))
    totals = {(name, role): sum(side[role].values())
              for name, side in (("raw", raw), ("stt", stt)) for role in ROLES}
    measured = profile["stt"]["rate"] / profile["raw"]["rate"] if profile["raw"]["rate"] else 0.0
    raw_busiest = max(totals["raw", role] for role in ROLES)
    stt_busiest = max(totals["stt", role] for role in ROLES)
    allowed = raw_busiest / stt_busiest if stt_busiest else 0.0
    lines.append(
        f"Goodput under perf: raw {profile['raw']['rate'] / 1e6:,.0f} MB/s, STT "
        f"{profile['stt']['rate'] / 1e6:,.0f} MB/s ({measured:.2f} x). With a core for each "
        f"process, busy all the time, the CPU per MB allows STT {allowed:.2f} x the blast "
        f"(raw's busiest process {raw_busiest:,.0f} µs per MB, STT's {stt_busiest:,.0f}).")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = profile_parser("python -m stt_bench.bulk_profile", __doc__, "trio", 999)
    parser.add_argument("--frame", type=int, default=65000, help="datagram bytes")
    parser.add_argument("--seconds", type=float, default=4.0, help="each transfer's length")
    run_command(parser, argv, lambda args: report(
        profile_bulk(args.runtime, args.frame, args.seconds, args.frequency)))


__all__ = ["WARMUP", "costs", "main", "profile_bulk", "profile_transfer", "report"]


if __name__ == "__main__":
    main()
