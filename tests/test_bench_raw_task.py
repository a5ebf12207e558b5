"""Two-process benchmark ends: the second raw ping-pong baseline (raw UDP echoed by a task
that awaits a future per datagram, ``raw_task``, beside the reader-callback echo ``raw``),
and the goodput ends' per-run diagnostics (``"stats": true``)."""

from __future__ import annotations

import os
import time

from stt_bench import twoproc


def test_raw_task_echo_answers_every_ping() -> None:
    times = twoproc.ping_pong("asyncio", "raw_task", 50)
    assert len(times) == 50
    assert all(0 < t < 1.0 for t in times)


def test_goodput_ends_report_their_counters_when_asked() -> None:
    base = {"runtime": "asyncio", "kind": "stt", "settings": {"max_frame_size": 16384},
            "frame": 16384, "datagram": None, "key": os.urandom(32).hex(), "stats": True}
    with twoproc.Peer({**base, "role": "sink"}) as sink:
        ready = sink.read()
        with twoproc.Peer({**base, "role": "source", "seconds": 0.3, **ready}) as source:
            done = source.read()
        time.sleep(0.1)
        sink.tell("report")
        got = sink.read()
    sent, received = done["stats"], got["stats"]
    assert got["bytes"] > 0
    assert sent["session"]["packets_sent"] >= received["datagrams_in"] - 10 > 0
    assert received["datagrams_in"] > 0 and "dropped" in received
    assert sent["send_blocked_s"] >= 0 and sent["gc_s"] >= 0
    assert sent["cpu_user_s"] > 0 and received["switches_voluntary"] >= 0
