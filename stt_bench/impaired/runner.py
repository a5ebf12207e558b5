"""Goodput through an impaired link on real sockets, in separate processes: a receiver, one
sender per flow, and the link between them (:class:`stt_runtime.impair.ImpairedLink` in a
process of its own), each a fresh ``python -m stt_bench.impaired.end`` (see there).

Goodput is the application bytes the receiver counted over the span from the moment the sender
began to send (after the handshake) to the arrival of the last byte, both read from the
system-wide monotonic clock; it is reported as a fraction of the bottleneck rate. The link's
counters tell queue drops (the sender's own overshoot) from random ones.
"""

from __future__ import annotations

import os
import signal
import statistics
import time
from typing import Any

import attrs

from stt_runtime.impair import impairment, parse_duration, parse_rate

from ..twoproc import Peer, PeerError, peer_environment
from . import series

MiB = 1 << 20
PROCESS_TIMEOUT = 30.0
# On it a process of the run writes every thread's stack (the link also its counters) to its
# stderr, even with its loop stuck (stt_bench.impaired.end); see Proc.dump.
DUMP_SIGNAL = signal.SIGUSR1


@attrs.frozen(slots=True)
class Case:
    """One impaired-link measurement: the link (each way), the ends and the transfer."""

    rate: str = "100mbit"
    delay: str = "25ms"  # one way
    loss: str = "0%"
    queue: str = "1bdp"
    jitter: str = "0"
    size: int = 32 * MiB  # per flow, unless ``seconds`` is given
    seconds: float | None = None  # send for this long instead of ``size`` bytes
    message: int = MiB
    runtime: str = "uvloop"
    build: str = "compiled"  # or "pure": STT_PURE=1 in the ends' environment
    frame: int | None = 1400  # the ends' max_frame_size (a path MTU); None: the default
    buffer: int | None = None  # both ends' socket buffers (recv and send); None: the default
    flows: int = 1
    seed: int | None = None

    @property
    def rate_bps(self) -> float:
        rate = parse_rate(self.rate)
        if rate is None:
            raise ValueError("an impaired-link run needs a bottleneck rate")
        return rate

    @property
    def base_rtt(self) -> float:
        return 2 * parse_duration(self.delay)

    def settings(self) -> dict[str, Any]:
        """The ends' STTNode settings: the defaults but for what the case names."""
        settings: dict[str, Any] = {}
        if self.frame is not None:
            settings["max_frame_size"] = self.frame
        if self.buffer is not None:
            settings["recv_buffer_size"] = settings["send_buffer_size"] = self.buffer
        return settings

    def label(self) -> str:
        parts = [self.rate, self.delay, f"loss {self.loss}", f"queue {self.queue}",
                 f"{self.size // MiB} MiB" if self.seconds is None else f"{self.seconds:g} s",
                 self.runtime, self.build]
        if self.frame:
            parts.append(f"frame {self.frame}")
        if self.buffer:
            parts.append(f"buffers {self.buffer // MiB} MiB")
        if self.flows > 1:
            parts.append(f"{self.flows} flows")
        return ", ".join(parts)


@attrs.frozen(slots=True)
class Flow:
    """One sender's transfer, as the receiver counted it and the sender timed it."""

    bytes: int
    seconds: float  # from the sender's first send to the receiver's last byte
    goodput_bps: float  # application bits/s over that span
    arrivals: tuple[tuple[float, int], ...]  # (seconds since the first start, cumulative bytes)
    received: tuple[tuple[float, int], ...]  # the same, wire bytes received, every 10 ms
    sender: dict[str, Any]  # the sender's report: times and the summary of its series


@attrs.frozen(slots=True)
class RunResult:
    """One run: each flow, the link's counters, and the bottleneck rate they compare with."""

    case: Case
    flows: tuple[Flow, ...]
    link: dict[str, Any]

    @property
    def goodput_bps(self) -> float:
        """All flows' bytes over the span from the first start to the last arrival."""
        span = max(flow.seconds for flow in self.flows)
        return sum(flow.bytes for flow in self.flows) * 8 / span

    @property
    def ratio(self) -> float:
        return self.goodput_bps / self.case.rate_bps

    @property
    def compiled(self) -> bool:
        """Whether every sender ran the compiled core (not so for build "compiled" when the
        compiled modules are stale or absent: the sources then run, with a warning)."""
        return all(bool(flow.sender.get("compiled")) for flow in self.flows)

    def queue_delay_ms(self) -> tuple[float, float]:
        """Median and 95th percentile of (latest RTT sample - base RTT) over the senders'
        series, the queueing the flows built (ACK delay included)."""
        base = self.case.base_rtt * 1e3
        samples = sorted(max(0.0, rtt - base) for flow in self.flows
                         for rtt in flow.sender.get("rtts_ms", []))
        if not samples:
            return 0.0, 0.0
        return (statistics.median(samples),
                samples[min(len(samples) - 1, int(len(samples) * 0.95))])

    def as_dict(self) -> dict[str, Any]:
        forward = self.link.get("forward", {})
        median_q, p95_q = self.queue_delay_ms()
        return {"case": attrs.asdict(self.case), "compiled": self.compiled,
                "goodput_mbps": self.goodput_bps / 1e6,
                "ratio": self.ratio,
                "flows": [{"bytes": f.bytes, "seconds": f.seconds,
                           "goodput_mbps": f.goodput_bps / 1e6,
                           "summary": f.sender.get("summary", {})} for f in self.flows],
                "queue_drops": forward.get("queue_drops", 0),
                "random_drops": forward.get("lost", 0),
                "queue_delay_ms": {"median": median_q, "p95": p95_q}, "link": self.link}


class Proc(Peer):
    """One process of a run (``stt_bench.impaired.end``): JSON lines from its stdout, lines to
    its stdin, as a suite peer's."""

    def __init__(self, spec: dict[str, Any], env: dict[str, str]) -> None:
        super().__init__(spec, module="stt_bench.impaired.end", env=env)

    def __enter__(self) -> Proc:
        return self

    def read(self, timeout: float = PROCESS_TIMEOUT) -> dict[str, Any]:
        return super().read(timeout)

    def dump(self, wait: float = 0.5) -> str:
        """What the process is doing, for a failure's message: the tail of its stderr
        ``wait`` seconds after :data:`DUMP_SIGNAL`."""
        if self.process.poll() is None:
            os.kill(self.process.pid, DUMP_SIGNAL)
            time.sleep(wait)
        self._stderr.seek(0)
        return self._stderr.read()[-4000:].decode(errors="replace").strip()


def environment(build: str) -> dict[str, str]:
    """A process's environment: the caller's (no allocator tuning), with STT_PURE=1 for the
    pure-Python build and without it for the compiled one."""
    if build not in ("compiled", "pure"):
        raise ValueError(f"build must be 'compiled' or 'pure', got {build!r}")
    env = peer_environment(tuned=False)
    env.pop("STT_PURE", None)
    if build == "pure":
        env["STT_PURE"] = "1"
    return env


def transfer_timeout(case: Case) -> float:
    """How long a transfer may take before the run is declared stuck: ten times its time at
    the bottleneck rate, plus startup."""
    ideal = (case.seconds if case.seconds is not None
             else case.size * case.flows * 8 / case.rate_bps)
    return 20.0 + 10 * ideal


def run_once(case: Case, series_path: str | None = None) -> RunResult:
    """One run of ``case`` in fresh processes; ``series_path``: where the (first) sender
    writes its time series (JSON lines; ``.N`` appended for further flows)."""
    impairment(rate=case.rate, delay=case.delay, loss=case.loss, queue=case.queue,
               jitter=case.jitter)  # a bad value fails here, not in a child
    env = environment(case.build)
    base = {"runtime": case.runtime, "settings": case.settings()}
    timeout = transfer_timeout(case)
    with Proc({**base, "role": "receiver", "flows": case.flows}, env) as receiver:
        ready = receiver.read()
        link_spec = {"role": "link", "rate": case.rate, "delay": case.delay, "loss": case.loss,
                     "queue": case.queue, "jitter": case.jitter, "seed": case.seed,
                     "target": ready["address"]}
        with Proc(link_spec, environment("compiled")) as link:
            through = link.read()
            senders: list[Proc] = []
            try:
                for i in range(case.flows):
                    path = series_path if i == 0 or series_path is None else f"{series_path}.{i}"
                    header = {"case": attrs.asdict(case), "flow": i,
                              "rate_mbps": case.rate_bps / 1e6,
                              "base_rtt_ms": case.base_rtt * 1e3,
                              "queue_bytes": through["queue"]}
                    senders.append(Proc({
                        **base, "role": "sender", "address": through["address"],
                        "node_id": ready["node_id"], "size": case.size, "seconds": case.seconds,
                        "message": case.message, "series": path, "header": header,
                        "wait_go": True}, env))
                for sender in senders:
                    sender.read()
                for sender in senders:
                    sender.tell("go")
                try:
                    reports = [sender.read(timeout) for sender in senders]
                    counted = receiver.read(timeout)
                except PeerError as error:
                    raise PeerError(f"{error}\n--- the receiver's state:\n{receiver.dump()}"
                                    f"\n--- the link's state:\n{link.dump()}") from error
                link.tell("report")
                counters = link.read()
            finally:
                for sender in senders:
                    sender.close()
        receiver.tell("done")
    result = _result(case, reports, counted["flows"], counters)
    for flow in result.flows:
        path = flow.sender.get("series")
        if path:
            offset = flow.sender["start"] - min(f.sender["start"] for f in result.flows)
            series.append_received(path, ((t - offset, b) for t, b in flow.received))
    return result


def _result(case: Case, reports: list[dict[str, Any]], flows: list[dict[str, Any]],
            counters: dict[str, Any]) -> RunResult:
    """Pair each sender with the receiver's flow of the same size and start (flows are
    accepted in arrival order, not the order the senders were started)."""
    start = min(report["start"] for report in reports)
    unmatched = list(reports)
    result: list[Flow] = []
    for flow in sorted(flows, key=lambda f: f.get("accepted", 0.0)):
        report = min(unmatched, key=lambda r: (r["bytes"] != flow["bytes"],
                                               abs(r["start"] - flow.get("accepted", 0.0))))
        unmatched.remove(report)
        last = flow["arrivals"][-1][0] if flow["arrivals"] else report["start"]
        span = max(last - report["start"], 1e-9)
        result.append(Flow(bytes=flow["bytes"], seconds=last - start,
                           goodput_bps=flow["bytes"] * 8 / span,
                           arrivals=tuple((t - start, b) for t, b in flow["arrivals"]),
                           received=tuple((t - start, b) for t, b in flow["received"]),
                           sender=report))
    return RunResult(case=case, flows=tuple(result), link=counters)


def fairness(result: RunResult) -> tuple[list[float], float]:
    """Each flow's goodput (bit/s) over the second half of the span in which every flow was
    sending, and the largest relative difference between two of them (0: equal shares).
    Counted in whole messages: use messages much smaller than a flow's bytes per half."""
    end = min(flow.arrivals[-1][0] for flow in result.flows if flow.arrivals)
    middle = end / 2
    rates = []
    for flow in result.flows:
        before = max((b for t, b in flow.arrivals if t <= middle), default=0)
        by_end = max((b for t, b in flow.arrivals if t <= end), default=0)
        rates.append((by_end - before) * 8 / (end - middle))
    spread = (max(rates) - min(rates)) / max(rates) if max(rates) > 0 else 1.0
    return rates, spread
