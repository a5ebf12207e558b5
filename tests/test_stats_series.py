"""The sender's stats for a time series (bytes in flight, pacing rate, latest RTT, app-limited,
controller phase), checked against the protocol state they report, for each controller."""

from __future__ import annotations

import pytest

from stt_proto.sim import LinkProfile

from .conftest import make_pair
from .transfer import Transfer, run_transfers

MiB = 1024 * 1024


@pytest.mark.parametrize(("cc", "phases"), [
    ("bbr", {"startup", "drain", "probe_bw", "probe_rtt"}),
    ("cubic", {"slow_start", "congestion_avoidance"}),
    ("newreno", {"slow_start", "congestion_avoidance"}),
])
def test_a_bulk_sender_reports_its_window_in_use_and_its_phase(cc: str, phases: set[str]) -> None:
    profile = LinkProfile(latency=0.025, bandwidth=20e6, queue_limit=128 * 1024)
    pair = make_pair(seed=3, profile=profile, client_config={"congestion_control": cc})
    client, server = pair.established()
    idle = client.get_stats()
    assert idle.bytes_in_flight == 0 and idle.app_limited is True  # nothing to send yet
    assert idle.rtt_latest_ms == pytest.approx(client.rtt.latest * 1000)
    transfer = Transfer(pair.net, client, server, [bytes(8 * MiB)])
    run_transfers(pair.net, [transfer], timeout=0.6)
    busy = client.get_stats()
    assert busy.bytes_in_flight == client.data.recovery.bytes_in_flight > 0
    assert busy.app_limited is False  # a queue of 8 MiB: the window limits, not the application
    assert busy.pacing_rate_mbps == pytest.approx(client.data.cc.pacing_rate(client.rtt) * 8e-6)
    assert busy.pacing_rate_mbps > 0
    assert busy.congestion_state in phases
    assert 50 <= busy.rtt_latest_ms < 1000  # 50 ms of propagation plus the queue
    assert run_transfers(pair.net, [transfer], timeout=30.0)
    pair.net.run(0.5)
    assert client.get_stats().bytes_in_flight == 0
