"""One process of an impaired-link run, started by :mod:`stt_bench.impaired.runner`:

    python -m stt_bench.impaired.end '{"role": "sender", "runtime": "uvloop", ...}'

Roles: ``receiver`` and ``sender`` (STT nodes on the runtime named, default settings unless the
spec gives some) and ``link`` (an :class:`stt_runtime.impair.ImpairedLink` in a process of its
own, so that it shares no interpreter lock with either end). Each talks to its starter in JSON
lines on stdout and plain lines on stdin, as :mod:`stt_bench.peer` does.
"""

from __future__ import annotations

import faulthandler
import json
import signal
import sys
import warnings
from typing import TYPE_CHECKING, Any

import attrs

from ..peer import run_roles
from ..workloads.lines import emit, read_line
from .runner import DUMP_SIGNAL

if TYPE_CHECKING:
    from stt_runtime.impair import ImpairedLink


def _link_counters(running: ImpairedLink) -> dict[str, Any]:
    """The link's counters as the starter reads them."""
    stats = running.stats()
    return {"forward": attrs.asdict(stats.forward), "back": attrs.asdict(stats.back),
            "clients": stats.clients, "send_errors": stats.send_errors,
            "late_mean": stats.late_mean, "late_max": stats.late_max}


def link(spec: dict[str, Any]) -> None:
    """Forward from a free port on 127.0.0.1 to the receiver until the input ends; the
    counters on "report", and on :data:`DUMP_SIGNAL` to stderr with every thread's stack."""
    from stt_runtime.impair import ImpairedLink, impairment

    profile = impairment(rate=spec["rate"], delay=spec["delay"], jitter=spec.get("jitter", 0),
                         loss=spec["loss"], queue=spec["queue"])
    host, port = spec["target"]
    with ImpairedLink(("127.0.0.1", 0), (str(host), int(port)), profile,
                      seed=spec.get("seed")) as running:
        def dump(*_: object) -> None:
            faulthandler.dump_traceback(sys.stderr, all_threads=True)
            print(f"link counters: {json.dumps(_link_counters(running))}", file=sys.stderr,
                  flush=True)

        signal.signal(DUMP_SIGNAL, dump)
        emit({"address": running.address, "queue": profile.queue_limit})
        while True:
            line = read_line()
            if line == "report":
                emit(_link_counters(running))
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
    # every thread's stack to stderr on the starter's signal, even with the loop stuck
    faulthandler.register(DUMP_SIGNAL, file=sys.stderr, all_threads=True)
    return run_roles(spec, "stt_bench.impaired.end_asyncio", "stt_bench.impaired.end_trio")


if __name__ == "__main__":
    sys.exit(main())
