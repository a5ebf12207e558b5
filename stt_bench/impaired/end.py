"""One process of an impaired-link run, started by :mod:`stt_bench.impaired.runner`:

    python -m stt_bench.impaired.end '{"role": "sender", "runtime": "uvloop", ...}'

Roles: ``receiver`` and ``sender`` (STT nodes on the runtime named, default settings unless the
spec gives some) and ``link`` (an :class:`stt_runtime.impair.ImpairedLink` in a process of its
own, so that it shares no interpreter lock with either end). Each talks to its starter in JSON
lines on stdout and plain lines on stdin, as :mod:`stt_bench.peer` does.
"""

from __future__ import annotations

import json
import sys
import warnings
from typing import Any

import attrs

from ..peer import run_roles
from ..workloads.lines import emit, read_line


def link(spec: dict[str, Any]) -> None:
    """Forward from a free port on 127.0.0.1 to the receiver until the input ends; the
    counters on "report"."""
    from stt_runtime.impair import ImpairedLink, impairment

    profile = impairment(rate=spec["rate"], delay=spec["delay"], jitter=spec.get("jitter", 0),
                         loss=spec["loss"], queue=spec["queue"])
    host, port = spec["target"]
    with ImpairedLink(("127.0.0.1", 0), (str(host), int(port)), profile,
                      seed=spec.get("seed")) as running:
        emit({"address": running.address, "queue": profile.queue_limit})
        while True:
            line = read_line()
            if line == "report":
                stats = running.stats()
                emit({"forward": attrs.asdict(stats.forward), "back": attrs.asdict(stats.back),
                      "clients": stats.clients, "send_errors": stats.send_errors,
                      "late_mean": stats.late_mean, "late_max": stats.late_max})
            elif not line:
                return


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    spec: dict[str, Any] = json.loads(args[0])
    # the node warns when the kernel grants smaller socket buffers than asked: the starter
    # reports the settings, this is not worth a line on stderr
    warnings.simplefilter("ignore", RuntimeWarning)
    if spec["role"] == "link":
        link(spec)
        return 0
    return run_roles(spec, "stt_bench.impaired.end_asyncio", "stt_bench.impaired.end_trio")


if __name__ == "__main__":
    sys.exit(main())
