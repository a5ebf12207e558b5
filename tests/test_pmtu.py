"""Path-MTU discovery (stt_proto/pmtu.py): the search's rules, and sessions over simulated paths
whose MTU is smaller than max_frame_size (larger datagrams dropped, as with don't-fragment set or
a middlebox dropping IP fragments), found, followed when it shrinks, and shown in the stats."""

from __future__ import annotations

import hashlib

import pytest

from stt_proto import Session
from stt_proto.dataplane import DataPlane
from stt_proto.pmtu import BASE, COMPLETE, CONFIRM_PROBES, RAISE_INTERVAL, SEARCHING, PathMtu
from stt_proto.sim import LinkProfile

from .conftest import A, B, Pair, make_pair
from .transfer import Transfer, mixed_messages, run_transfers

MiB = 1024 * 1024


def _round(pmtu: PathMtu, path_mtu: int, now: float, pn: list[int]) -> list[int]:
    """One round of probes over a path carrying ``path_mtu``: each acknowledged or lost."""
    pmtu.start()
    pmtu.want()
    sizes = pmtu.sizes_to_probe(now) if pmtu.due(now) else []
    sent = []
    for size in sizes:
        pn[0] += 1
        pmtu.on_probe_sent(pn[0], size)
        sent.append((pn[0], size))
    for number, size in sent:
        (pmtu.on_probe_acked if size <= path_mtu else pmtu.on_probe_lost)(number)
    return sizes


def test_the_first_round_probes_the_ceiling_and_the_common_path_sizes() -> None:
    pmtu = PathMtu(16384)
    assert pmtu.current == BASE and pmtu.state == SEARCHING
    assert pmtu.sizes_to_probe(0.0) == [16384, 8972, 1472, 1252]
    ipv6 = PathMtu(16384, ipv6=True)
    assert ipv6.sizes_to_probe(0.0) == [16384, 8952, 1452, 1232]
    assert PathMtu(1200).state == COMPLETE and PathMtu(1200).sizes_to_probe(0.0) == []


def test_loopback_reaches_the_ceiling_in_one_round() -> None:
    pmtu, pn = PathMtu(65507), [0]
    _round(pmtu, 65507, 0.0, pn)
    assert pmtu.current == 65507
    assert pmtu.sizes_to_probe(0.0) == [] and pmtu.state == COMPLETE


def test_an_ethernet_path_is_found_and_refused_sizes_are_tried_three_times() -> None:
    pmtu, pn = PathMtu(16384), [0]
    _round(pmtu, 1472, 0.0, pn)
    assert pmtu.current == 1472  # after one round trip
    assert _round(pmtu, 1472, 0.1, pn) == [16384, 8972]  # more tries: one loss proves little
    assert _round(pmtu, 1472, 0.1, pn) == [16384, 8972]
    refined = []
    while pmtu.state == SEARCHING:
        sizes = _round(pmtu, 1472, 0.2, pn)
        assert len(sizes) <= 1
        refined += sizes
    assert pmtu.current == 1472 and len(refined) <= 8  # halving 1472..8972 to within 64 bytes
    assert all(size > 1472 for size in refined)


def test_an_odd_path_size_is_found_to_within_the_refinement_gap() -> None:
    pmtu, pn = PathMtu(16384), [0]
    while pmtu.state == SEARCHING:
        _round(pmtu, 4000, 0.0, pn)
    assert 4000 - 64 <= pmtu.current <= 4000


def test_no_probe_before_the_handshake_is_confirmed_and_larger_packets_are_wanted() -> None:
    pmtu = PathMtu(16384)
    assert not pmtu.due(0.0)
    pmtu.start()
    assert not pmtu.due(0.0)  # confirmed, but nothing queued needs more than 1,200 bytes
    pmtu.want()
    assert pmtu.due(0.0)
    early = PathMtu(16384)
    early.want()  # data queued before the handshake is confirmed
    assert not early.due(0.0)
    early.start()
    assert early.due(0.0)


def test_a_probe_lost_beside_lost_data_is_not_a_refusal() -> None:
    pmtu = PathMtu(16384)
    pmtu.start()
    pmtu.want()
    for _ in range(5):
        for number, size in enumerate(pmtu.sizes_to_probe(0.0)):
            pmtu.on_probe_sent(number, size)
            pmtu.on_probe_lost(number, congested=True)
    assert pmtu.sizes_to_probe(0.0)[0] == 16384 and pmtu.state == SEARCHING


def test_a_probe_in_flight_holds_the_next_round() -> None:
    pmtu = PathMtu(16384)
    pmtu.start()
    pmtu.want()
    pmtu.on_probe_sent(7, pmtu.sizes_to_probe(0.0)[0])
    assert pmtu.probing and pmtu.is_probe(7) and not pmtu.due(0.0)
    assert pmtu.sizes_to_probe(0.0) == []


def test_the_search_runs_again_after_the_raise_interval() -> None:
    pmtu, pn = PathMtu(16384), [0]
    pmtu.start()
    pmtu.want()
    while pmtu.state == SEARCHING:
        _round(pmtu, 1472, 1.0, pn)
    assert not pmtu.due(1.0 + RAISE_INTERVAL - 1)
    assert pmtu.due(1.0 + RAISE_INTERVAL + 1)
    _round(pmtu, 9000, 1.0 + RAISE_INTERVAL + 1, pn)  # the path grew
    assert pmtu.current == 8972


def _suspect(pmtu: PathMtu) -> None:
    """Full-size losses after a probe timeout: a suspected black hole."""
    assert not pmtu.on_packet_lost(16384, pto_count=0, now=1.0)  # congestion: no PTO
    pmtu.on_packets_acked(16384)
    for _ in range(2):
        assert not pmtu.on_packet_lost(16384, pto_count=1, now=1.0)
    assert pmtu.on_packet_lost(16384, pto_count=1, now=1.0)


def _confirmation_probe(pmtu: PathMtu, pn: list[int]) -> int:
    assert pmtu.due(1.0) and pmtu.sizes_to_probe(1.0) == [16384]  # one at a time
    pn[0] += 1
    pmtu.on_probe_sent(pn[0], 16384)
    assert not pmtu.due(1.0) and pmtu.sizes_to_probe(1.0) == []
    return pn[0]


def test_full_size_losses_after_a_probe_timeout_are_a_black_hole_once_confirmed() -> None:
    """Packets drop to the base size at once; the size is given up (a black hole, the search
    again) only when CONFIRM_PROBES probes of it, one after another, are all lost."""
    pmtu, pn = PathMtu(16384), [0]
    _round(pmtu, 16384, 0.0, pn)
    assert pmtu.sizes_to_probe(0.0) == []  # settled
    assert pmtu.current == 16384 and pmtu.state == COMPLETE
    _suspect(pmtu)
    assert pmtu.current == BASE and pmtu.confirm_size == 16384 and pmtu.black_holes == 0
    assert not pmtu.on_packet_lost(16384, pto_count=3, now=1.0)  # in flight before: no news
    for _ in range(CONFIRM_PROBES):
        assert pmtu.black_holes == 0
        pmtu.on_probe_lost(_confirmation_probe(pmtu, pn), congested=True)  # counted anyway
    assert pmtu.current == BASE and pmtu.state == SEARCHING and pmtu.black_holes == 1
    assert pmtu.confirm_size == 0 and pmtu.sizes_to_probe(1.0)[0] == 16384  # the search
    assert not pmtu.on_packet_lost(BASE, pto_count=5, now=1.0)  # small ones say nothing


def test_a_suspected_black_hole_whose_confirmation_probe_is_acknowledged_was_loss() -> None:
    """RFC 8899's confirmation: random losses that looked like a black hole. (Before it, the
    size dropped to the base and the search ran again at each such burst: at 30 % loss one
    to eight times per 32 MiB.)"""
    pmtu, pn = PathMtu(16384), [0]
    _round(pmtu, 16384, 0.0, pn)
    assert pmtu.sizes_to_probe(0.0) == []  # settled
    _suspect(pmtu)
    pmtu.on_probe_lost(_confirmation_probe(pmtu, pn))
    pmtu.on_black_hole(1.5)  # suspected again meanwhile (a second probe timeout): one check
    pmtu.on_probe_acked(_confirmation_probe(pmtu, pn))
    assert pmtu.current == 16384 and pmtu.state == COMPLETE and pmtu.confirm_size == 0
    assert pmtu.black_holes == 0 and pmtu.black_holes_refuted == 1
    assert not pmtu.due(2.0)  # settled: no search
    _suspect(pmtu)  # a later burst starts a confirmation of its own
    assert pmtu.confirm_size == 16384 and pmtu.current == BASE


def _plane(session: Session) -> DataPlane:
    """An established session's data plane."""
    assert session.data is not None
    return session.data


def _pair(mtu: int | None, latency: float = 0.025, loss: float = 0.0, ipv6: bool = False,
          **config: object) -> Pair:
    profile = LinkProfile(latency=latency, bandwidth=100e6, queue_limit=2 * MiB, mtu=mtu,
                          loss=loss)
    return make_pair(seed=5, profile=profile, client_config=dict(config),
                     server_config=dict(config))


@pytest.mark.parametrize("mtu", [1232, 1472, 8972])
def test_a_session_finds_its_path_size_within_a_second_on_a_50_ms_path(mtu: int) -> None:
    pair = _pair(mtu)
    start = pair.net.now  # from the first handshake packet
    client, _ = pair.established()
    client.send_message(client.open_stream(), bytes(8 * MiB))  # what makes larger packets pay
    assert pair.net.run_until(lambda: _plane(client).max_datagram >= mtu - 64, 5.0)
    assert pair.net.now - start < 1.0  # found (the search may still be ruling out larger)
    assert pair.net.run_until(lambda: _plane(client).pmtu.state == COMPLETE, 5.0)
    assert pair.net.now - start < 3.0
    assert mtu - 64 <= _plane(client).max_datagram <= mtu
    stats = client.get_stats()
    assert stats.path_mtu == _plane(client).max_datagram and stats.path_mtu_state == "complete"
    assert stats.packets_lost == 0  # probes are not the application's losses


def test_a_transfer_over_a_1500_byte_path_that_drops_larger_datagrams_completes() -> None:
    pair = _pair(1472, loss=0.01)
    client, server = pair.established()
    messages = mixed_messages(8 * MiB, seed=2, largest=MiB)
    transfer = Transfer(pair.net, client, server, messages)
    assert run_transfers(pair.net, [transfer], timeout=120.0)
    digest = hashlib.sha256(b"".join(transfer.received)).hexdigest()
    assert digest == hashlib.sha256(b"".join(messages)).hexdigest()
    assert _plane(client).max_datagram == 1472
    assert pair.net._links[(A, B)].counters.too_big <= 16  # probes only: no data was cut


def _mid_transfer() -> tuple[Pair, Session, DataPlane, list[bytes], Transfer]:
    """24 MiB under way over a 16 KiB path, half a second in (some delivered, some not); the
    client, and its established data plane."""
    pair = _pair(None)
    client, server = pair.established()
    messages = [bytes([n % 251]) * MiB for n in range(24)]
    transfer = Transfer(pair.net, client, server, messages)
    run_transfers(pair.net, [transfer], timeout=0.5)
    data = _plane(client)
    assert data.max_datagram == 16384 and 0 < len(transfer.received) < 24
    return pair, client, data, messages, transfer


def test_a_path_that_shrinks_mid_transfer_is_detected_and_the_transfer_completes() -> None:
    pair, client, data, messages, transfer = _mid_transfer()
    shrunk = LinkProfile(latency=0.025, bandwidth=100e6, queue_limit=2 * MiB, mtu=1472)
    pair.net.set_link(A, B, shrunk)
    pair.net.set_link(B, A, shrunk)
    changed = pair.net.now
    assert pair.net.run_until(lambda: data.pmtu.black_holes == 1, 3.0)
    assert pair.net.now - changed < 3.0
    assert run_transfers(pair.net, [transfer], timeout=60.0)
    assert transfer.received == messages
    assert data.max_datagram == 1472
    assert client.get_stats().path_mtu_black_holes == 1


def test_an_outage_mid_transfer_is_no_black_hole() -> None:
    """Every datagram lost both ways for 0.4 s (a burst of random losses at its worst): two
    probe timeouts pass with nothing acknowledged, so a black hole is suspected, but a
    probe of the size in use gets through once the outage ends, and the size stays.
    (Before the confirmation, the size dropped to the base and the search ran again.)"""
    pair, client, data, messages, transfer = _mid_transfer()
    clear = LinkProfile(latency=0.025, bandwidth=100e6, queue_limit=2 * MiB)
    for link in ((A, B), (B, A)):
        pair.net.set_link(*link, LinkProfile(latency=0.025, bandwidth=100e6,
                                             queue_limit=2 * MiB, loss=1.0))
    run_transfers(pair.net, [transfer], timeout=0.4)
    for link in ((A, B), (B, A)):
        pair.net.set_link(*link, clear)
    assert run_transfers(pair.net, [transfer], timeout=60.0)
    assert transfer.received == messages
    pmtu = data.pmtu
    assert pmtu.black_holes_refuted >= 1  # suspected, and refuted
    assert pmtu.black_holes == 0 and client.get_stats().path_mtu_black_holes == 0
    assert data.max_datagram == 16384


def test_a_datagram_larger_than_the_path_is_dropped_and_counted() -> None:
    pair = _pair(1472)
    client, _ = pair.established()
    client.send_datagram(bytes(4000))  # fits max_frame_size, not the path: starts the search
    client.send_datagram(b"small")
    assert pair.net.run_until(lambda: _plane(client).pmtu.state == COMPLETE, 5.0)
    pair.net.run(0.2)
    stats = client.get_stats()
    assert stats.datagrams_dropped_by_reason["larger_than_path"] == 1
    assert stats.datagrams_dropped == 1


def test_no_probe_on_a_session_whose_frames_are_the_base_size() -> None:
    pair = _pair(None, max_frame_size=1200)
    client, _ = pair.established()
    pair.net.run(0.5)
    assert _plane(client).pmtu.probes_sent == 0 and _plane(client).max_datagram == 1200


def test_sessions_that_exchange_only_small_messages_never_probe() -> None:
    """Probing starts when the session has more to send than a 1,200-byte packet holds: a
    request-response session or thousands confirming at once pay no padding."""
    pair = _pair(None)
    client, server = pair.established()
    stream = client.open_stream()
    for n in range(40):
        client.send_message(stream, b"ping %d" % n)
        pair.net.run(0.06)
    pair.net.run(1.0)
    for session in (client, server):
        assert _plane(session).pmtu.probes_sent == 0 and _plane(session).max_datagram == 1200
        assert session.get_stats().path_mtu_state == "idle"
    client.send_message(stream, bytes(MiB))
    assert pair.net.run_until(lambda: _plane(client).max_datagram == 16384, 1.0)
    assert _plane(server).pmtu.probes_sent == 0  # it only acknowledges: 1,200 bytes suffice


def test_the_suites_path_mtu_figures_meet_the_issues_targets() -> None:
    """What `python -m stt_bench` prints for issue 28 (simulator half): a 1,472-byte path on a
    50 ms path found within 1 s, a path shrunk mid-transfer recovered from within 3 s."""
    from stt_bench.workloads import path_mtu

    figures = path_mtu.simulated()
    assert figures["found_s"] < 1.0
    assert figures["black_hole_recovered_s"] < 3.0 and figures["black_holes"] == 1
