"""``python -m stt_bench.impaired``: runs of one impaired-link case, median and minimum.

    python -m stt_bench.impaired --rate 100mbit --delay 25ms --loss 1% --queue 1bdp \\
        --size 32MiB --runtime uvloop --runs 5 [--build pure] [--buffer 16MiB] \\
        [--flows 2 --seconds 20] [--series run.jsonl] [--json]

Each run is fresh processes (receiver, sender(s), link). Timing figures: hold the bench lock
(``flock /tmp/stt-bench.lock python -m stt_bench.impaired ...``).
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
from typing import Any

from .runner import Case, MiB, RunResult, fairness, run_once

SIZE = re.compile(r"^(\d+(?:\.\d+)?)\s*(B|KiB|MiB|GiB)?$")
UNITS = {None: 1, "B": 1, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30}


def parse_size(text: str) -> int:
    """Bytes from ``32MiB``, ``512KiB``, ``1048576``."""
    match = SIZE.match(text.strip())
    if match is None:
        raise argparse.ArgumentTypeError(f"expected a size such as 32MiB or 65536, got {text!r}")
    return int(float(match.group(1)) * UNITS[match.group(2)])


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m stt_bench.impaired", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rate", default="100mbit", help="bottleneck rate each way (100mbit)")
    p.add_argument("--delay", default="25ms", help="one-way delay each way (25ms)")
    p.add_argument("--jitter", default="0", help="uniform extra delay 0..JITTER (0)")
    p.add_argument("--loss", default="0%", help="random loss each way (1%%)")
    p.add_argument("--queue", default="1bdp", help="drop-tail queue: 1bdp, 8bdp, 64KiB (1bdp)")
    p.add_argument("--size", type=parse_size, default=32 * MiB, help="bytes per flow (32MiB)")
    p.add_argument("--seconds", type=float, default=None,
                   help="send for this long instead of --size bytes")
    p.add_argument("--message", type=parse_size, default=MiB, help="message size (1MiB)")
    p.add_argument("--runtime", choices=("asyncio", "uvloop", "trio"), default="uvloop")
    p.add_argument("--build", choices=("compiled", "pure"), default="compiled",
                   help="pure: STT_PURE=1 in the ends' environment")
    p.add_argument("--frame", type=int, default=1400,
                   help="the ends' max_frame_size, a path MTU (1400; 0: the node's default)")
    p.add_argument("--buffer", type=parse_size, default=None,
                   help="both ends' socket buffer sizes (default: the node's)")
    p.add_argument("--flows", type=int, default=1, help="concurrent sender processes (1)")
    p.add_argument("--runs", type=int, default=1)
    p.add_argument("--seed", type=int, default=None, help="the link's random fates")
    p.add_argument("--series", default=None,
                   help="the first run's sender time series (JSON lines) to this file")
    p.add_argument("--json", action="store_true",
                   help="one JSON document per run, then the summary")
    return p


def line(i: int, result: RunResult) -> str:
    doc = result.as_dict()
    q = doc["queue_delay_ms"]
    flows = result.flows[0].sender.get("summary", {})
    text = (f"run {i}: goodput {doc['goodput_mbps']:.2f} Mbit/s = {doc['ratio']:.3f} of the "
            f"bottleneck in {max(f.seconds for f in result.flows):.2f} s; link drops: queue "
            f"{doc['queue_drops']}, random {doc['random_drops']}; queueing delay median "
            f"{q['median']:.1f} ms, p95 {q['p95']:.1f} ms; the (first) sender lost "
            f"{flows.get('packets_lost')} of {flows.get('packets_sent')} packets")
    if result.compiled != (result.case.build == "compiled"):
        text += f"; NOTE: the ends ran the {'compiled' if result.compiled else 'pure'} core"
    if len(result.flows) > 1:
        rates, spread = fairness(result)
        text += ("; second half per flow " + ", ".join(f"{r / 1e6:.2f}" for r in rates)
                 + f" Mbit/s (spread {spread:.1%})")
    return text


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    case = Case(rate=args.rate, delay=args.delay, loss=args.loss, queue=args.queue,
                jitter=args.jitter, size=args.size, seconds=args.seconds, message=args.message,
                runtime=args.runtime, build=args.build, frame=args.frame or None,
                buffer=args.buffer, flows=args.flows, seed=args.seed)
    print(f"case: {case.label()}", flush=True)
    ratios: list[float] = []
    spreads: list[float] = []
    for i in range(1, args.runs + 1):
        result = run_once(case, args.series if i == 1 else None)
        ratios.append(result.ratio)
        if case.flows > 1:
            spreads.append(fairness(result)[1])
        if args.json:
            print(json.dumps(result.as_dict()), flush=True)
        print(line(i, result), flush=True)
    summary: dict[str, Any] = {"runs": len(ratios), "median": statistics.median(ratios),
                               "min": min(ratios)}
    text = (f"goodput / bottleneck over {len(ratios)} runs: median {summary['median']:.3f}, "
            f"min {summary['min']:.3f}")
    if spreads:
        summary["fairness_spread_median"] = statistics.median(spreads)
        text += f"; fairness spread median {summary['fairness_spread_median']:.1%}"
    print(text)
    if args.json:
        print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
