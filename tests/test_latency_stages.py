"""stt_bench/stages.py's analysis on made-up stamps: each interval of a round trip is found at
the right end, in order, even where a sender's ``sendto`` returns after the other end has
answered (a synchronous wake-up runs the receiver first), and counts go per round trip."""

from __future__ import annotations

import pytest

from stt_bench.stages import INTERVALS, breakdown, cpu_per_round


def _round(start: int, late_sendto: bool) -> tuple[list[tuple[str, int]],
                                                    list[tuple[str, int]], int]:
    """One round trip's stamps from ``start`` (us -> ns): client, server, and its end."""
    us = 1000
    client = [("send called", start), ("service", start + 1 * us), ("sealed", start + 10 * us),
              ("datagram", 0), ("sendto returned", start + 12 * us)]
    server = [("readable", start + 20 * us), ("read", start + 25 * us),
              ("opened", start + 40 * us), ("drained", start + 45 * us),
              ("service", start + 46 * us), ("signal set", start + 50 * us),
              ("resumed", start + 60 * us), ("send called", start + 61 * us),
              ("kick", start + 62 * us), ("service", start + 70 * us),
              ("sealed", start + 80 * us), ("datagram", 0)]
    end = start + 130 * us
    if not late_sendto:
        server.append(("sendto returned", start + 85 * us))
    client += [("readable", start + 95 * us), ("read", start + 100 * us),
               ("opened", start + 115 * us), ("drained", start + 120 * us),
               ("signal set", start + 125 * us), ("resumed", end)]
    if late_sendto:  # the server's sendto returned after the client had its answer
        server.append(("sendto returned", end + 5 * us))
    return client, server, end


def test_breakdown_finds_every_interval_in_order() -> None:
    clients, servers, windows = [], [], []
    for index in range(5):
        start = (index + 1) * 1_000_000  # (a stamp of 0 is a counter)
        client, server, end = _round(start, late_sendto=index % 2 == 1)
        clients += client
        servers += server
        windows.append((start, end))
    result = breakdown(clients, windows, servers)
    assert result["complete"] == 5
    assert result["round_trip"] == 130
    stages = dict(result["stages"])
    assert [label for label, _, _ in INTERVALS] == list(stages)
    assert stages["wire: client sealed -> server readable"] == 10
    assert stages["server: read -> opened"] == 15
    assert stages["server: send called -> sealed"] == 19
    assert stages["server: sealed -> sendto returned"] in (5, 55)
    assert stages["wire: server sealed -> client readable"] == 15
    assert stages["client: signal set -> resumed"] == 5
    # the chain without the sendto lines adds up to the round trip
    chain = sum(value for label, value in stages.items() if "sendto returned" not in label)
    assert chain == 130
    counts = result["counts"]
    assert counts["server kick"] == 1 and counts["server service"] == 2
    assert counts["client datagram"] == 1 and counts["server datagram"] == 1


def test_a_round_trip_missing_a_stage_is_left_out() -> None:
    client, server, end = _round(1_000_000, late_sendto=False)
    server = [stamp for stamp in server if stamp[0] != "signal set"]
    assert breakdown(client, [(1_000_000, end)], server)["complete"] == 0


def test_cpu_per_round_divides_by_the_round_trips_between_marks() -> None:
    windows = [(index * 1000, index * 1000 + 500) for index in range(10)]
    marks = [(start - 10, 7_000 * index) for index, (start, _) in enumerate(windows)]
    marks.append((windows[-1][1] + 10, 7_000 * 10))
    assert cpu_per_round(marks, windows) == pytest.approx(7.0)
