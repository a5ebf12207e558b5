"""Balanced placement of new sessions over ``workers=N`` (issue 27): a worker holding clearly
more than the least-loaded one answers a new INITIAL with a RETRY whose source id names that
worker and whose token is bound to it; the initiator follows (once), the other worker admits
the token. Unit tests of the rule and the redirect, then whole groups of endpoints behind the
steering program in the simulator."""

from __future__ import annotations

import random
import time
from types import SimpleNamespace
from typing import Any

import pytest

from stt_proto import DeterministicRandom, Endpoint, EndpointConfig
from stt_proto.cids import cid_worker_index, worker_cid
from stt_proto.events import Address
from stt_proto.packet import Datagram, PacketType, build_long_packet, parse_packet
from stt_proto.placement import (
    ABSENT,
    MIN_GAP,
    PENDING_LIFETIME,
    LoadBalancer,
    over_share,
    redirect_target,
)
from stt_proto.sim import LinkProfile, Network
from stt_proto.stats import DropReason
from stt_runtime import steering
from stt_runtime.workers import WorkerGroup, WorkerPool, shared_loads

from .conftest import A, B, make_pair

KEY = bytes(range(32))


class Always:
    """A placement that sends every new session to one worker."""

    def __init__(self, target: int | None) -> None:
        self.target = target
        self.counts: list[int] = []

    def count(self, sessions: int) -> None:
        self.counts.append(sessions)

    def redirect(self, now: float) -> int | None:
        return self.target


class SteeredGroup:
    """``count`` endpoints on one address, each datagram handed to the one the steering
    program picks (what the kernel does for a ``workers=N`` node), sharing one load array."""

    def __init__(self, count: int, seed: int, config: EndpointConfig | None = None,
                 balance: bool = True) -> None:
        config = config or EndpointConfig()
        self.loads = [0] * count
        first = Endpoint(config, rng=DeterministicRandom(seed))
        self.workers = [first] + [Endpoint(config, identity=first.identity,
                                           rng=DeterministicRandom(seed + i))
                                  for i in range(1, count)]
        for index, endpoint in enumerate(self.workers):
            placement = LoadBalancer(self.loads, index) if balance else None
            endpoint.join_workers((index, count), placement, KEY)

    def receive_datagram(self, data: bytes | bytearray | memoryview, addr: Address,
                         now: float) -> None:
        self.workers[steering.select(data, len(self.workers))].receive_datagram(data, addr, now)

    def datagrams_to_send(self, now: float,
                          max_datagrams: int | None = None) -> list[tuple[Datagram, Address]]:
        return [out for w in self.workers for out in w.datagrams_to_send(now, max_datagrams)]

    def get_timer(self) -> float | None:
        timers = [t for t in (w.get_timer() for w in self.workers) if t is not None]
        return min(timers) if timers else None

    def handle_timer(self, now: float) -> None:
        for worker in self.workers:
            timer = worker.get_timer()
            if timer is not None and timer <= now:
                worker.handle_timer(now)

    def per_worker(self) -> list[int]:
        return [len(w.sessions) for w in self.workers]


def _burst(workers: int, clients: int, sessions: int, seed: int,
           balance: bool = True) -> tuple[SteeredGroup, Network, list[Any]]:
    """``clients`` client endpoints (one address each) open ``sessions`` sessions each to a
    group, all at once; returns when every one is confirmed (or after 30 virtual seconds)."""
    net = Network(seed=seed, default_profile=LinkProfile(latency=0.005, jitter=0.002),
                  record_trace=False)
    group = net.add_endpoint(SteeredGroup(workers, seed, balance=balance), B)
    opened = []
    for c in range(clients):
        client = net.add_endpoint(Endpoint(EndpointConfig(), rng=DeterministicRandom(
            seed * 1000 + c)), (f"10.1.0.{c + 1}", 4000))
        opened += [client.connect(B, group.workers[0].identity.node_id, 0.0)
                   for _ in range(sessions)]
    assert net.run_until(lambda: all(s.confirmed for s in opened), 30.0)
    net.run(0.2)
    return group, net, opened


# -- the rule -------------------------------------------------------------------------------------

def test_the_rule_needs_a_clear_gap_to_the_least_loaded_worker() -> None:
    assert not over_share(2, 0, 1.0) and over_share(3, 0, 1.0)  # MIN_GAP == 3
    assert not over_share(20, 15, 16.0) and over_share(20, 14, 16.0)  # a third of the mean
    assert not over_share(1040, 1000, 1010.0)  # a busy server's hash spread: stays


def test_a_balancer_redirects_to_the_least_loaded_running_worker() -> None:
    loads = [10, 2, ABSENT, 5]
    balancer = LoadBalancer(loads, 0)
    assert balancer.redirect(0.0) == 1
    loads[1] = ABSENT  # a worker that is not running is never chosen
    assert balancer.redirect(0.0) == 3
    loads[3] = 9
    assert balancer.redirect(0.0) is None  # within the gap of every running worker
    loads[3] = ABSENT
    assert balancer.redirect(0.0) is None  # alone
    balancer.count(7)
    assert loads[0] == 7


def test_redirects_on_their_way_count_so_a_burst_is_spread() -> None:
    loads = [12, 0, 0, 0]
    balancer = LoadBalancer(loads, 0)
    targets = [balancer.redirect(0.0) for _ in range(6)]
    assert targets == [1, 2, 3, 1, 2, 3]  # not six to worker 1, which has counted none yet
    loads[1] = 2  # both arrived: worker 1's own count; the others' are still on their way
    assert [balancer.redirect(0.1) for _ in range(4)] == [1, 2, 3, 1]
    # those that never arrive are forgotten after PENDING_LIFETIME
    assert balancer.redirect(0.1 + PENDING_LIFETIME + 0.1) == 2


def test_equal_workers_are_taken_in_turn_from_the_redirecting_one() -> None:
    loads = [0, 0, 9, 9]
    assert LoadBalancer(loads, 2).redirect(0.0) == 0
    assert LoadBalancer(loads, 3).redirect(0.0) == 0
    loads[:] = [9, 0, 9, 0]
    assert LoadBalancer(loads, 0).redirect(0.0) == 1
    assert LoadBalancer(loads, 2).redirect(0.0) == 3  # the next after itself: no herd on 1


def test_redirect_target_ignores_itself_and_workers_outside_the_group() -> None:
    assert redirect_target(None, (0, 4), 0.0) is None
    assert redirect_target(Always(2), None, 0.0) is None
    assert redirect_target(Always(2), (0, 4), 0.0) == 2
    assert redirect_target(Always(0), (0, 4), 0.0) is None
    assert redirect_target(Always(4), (0, 4), 0.0) is None
    assert redirect_target(Always(-1), (0, 4), 0.0) is None
    with pytest.raises(ValueError):
        LoadBalancer([0, 0], 2)


def test_the_shared_array_starts_with_only_worker_zero_running() -> None:
    loads = shared_loads(4)
    assert list(loads) == [0, ABSENT, ABSENT, ABSENT]
    balancer = LoadBalancer(loads, 0)
    balancer.count(50)
    assert balancer.redirect(0.0) is None  # before serve(): nobody to send to
    loads[3] = 1
    assert balancer.redirect(0.0) == 3


# -- the redirect on the wire ---------------------------------------------------------------------

def _redirecting_pair(target: int | None, **server_config: Any) -> Any:
    pair = make_pair(seed=11, server_config=server_config or None)
    placement = Always(target)
    pair.server.join_workers((0, 4), placement, KEY)
    return pair, placement


def _long_packets(pair: Any, ptype: PacketType) -> list[Any]:
    return [parse_packet(bytes(p)) for _, _, _, p in pair.net.trace
            if parse_packet(bytes(p)).type is ptype]


def test_an_initiator_follows_a_redirect_and_the_token_admits_it() -> None:
    pair, placement = _redirecting_pair(2)
    client, served = pair.established()
    retry, = _long_packets(pair, PacketType.RETRY)
    first, second = _long_packets(pair, PacketType.INITIAL)
    assert cid_worker_index(retry.scid, 4) == 2 and retry.scid != first.dcid
    assert retry.dcid == first.scid == client.local_cid
    # the second INITIAL goes to the id the RETRY named (where the kernel steers it), with
    # the token, and is admitted although the placement still says "worker 2": never twice
    assert second.dcid == retry.scid and second.token == retry.token and not first.token
    server = pair.server
    assert server.redirects_sent == 1 and server.get_stats().retries_sent == 1
    assert served.original_dcid == retry.scid
    assert placement.counts[-1] == 1 == server.inbound
    # a plain RETRY is the same size: the redirect adds no amplification
    plain = build_long_packet(PacketType.RETRY, retry.dcid, first.dcid, token=retry.token)
    assert len(plain) == len(bytes(retry.header) + bytes(retry.body))
    client.close(0, "done", pair.net.now)
    assert pair.net.run_until(lambda: not server.sessions, 5.0)
    assert placement.counts[-1] == 0 == server.inbound


def test_a_plain_retry_keeps_the_destination_id() -> None:
    pair, _ = _redirecting_pair(None, retry_threshold=0)
    pair.established()
    retry, = _long_packets(pair, PacketType.RETRY)
    first, second = _long_packets(pair, PacketType.INITIAL)
    assert retry.scid == first.dcid == second.dcid and second.token == retry.token
    assert pair.server.redirects_sent == 0


def test_the_token_is_bound_to_the_id_the_retry_named() -> None:
    pair, _ = _redirecting_pair(3)
    session = pair.connect()
    pair.net.tamper = lambda src, dst, payload: (
        None if dst == B and parse_packet(payload).token else payload)  # hold the 2nd INITIAL
    pair.net.run(0.05)
    retry, = _long_packets(pair, PacketType.RETRY)
    first, = _long_packets(pair, PacketType.INITIAL)
    assert session.remote_cid == retry.scid
    server, now = pair.server, pair.net.now
    body = bytes(first.body)
    for dcid, addr in ((first.dcid, A),  # the id before the redirect
                       (retry.scid, ("10.0.0.9", 4000)),  # another address
                       (worker_cid(bytes(8), (3, 4)), A)):  # another id of the same worker
        before = server.dropped[DropReason.UNEXPECTED.value]
        server.receive_datagram(build_long_packet(PacketType.INITIAL, dcid, first.scid, body,
                                                  token=retry.token), addr, now)
        assert server.dropped[DropReason.UNEXPECTED.value] == before + 1
    assert not server.sessions
    pair.net.tamper = None
    assert pair.net.run_until(lambda: session.confirmed, 5.0)  # its resend is admitted


def test_a_second_retry_is_not_followed() -> None:
    pair, _ = _redirecting_pair(1)
    session = pair.connect()
    held: list[bytes] = []

    def hold(src: Address, dst: Address, payload: bytes) -> bytes | None:
        if parse_packet(payload).type is PacketType.RETRY:
            held.append(payload)
            return None
        return payload

    pair.net.tamper = hold
    pair.net.run(0.05)
    retry = parse_packet(held[0])
    session.receive_packet(retry, len(held[0]), B, pair.net.now)
    assert session.remote_cid == retry.scid
    other = build_long_packet(PacketType.RETRY, retry.dcid, worker_cid(bytes(8), (2, 4)),
                              token=b"x" * 24)
    reason = session.receive_packet(parse_packet(other), len(other), B, pair.net.now)
    assert reason is DropReason.UNEXPECTED and session.remote_cid == retry.scid


def test_hostile_retries_are_dropped_and_never_raise() -> None:
    pair = make_pair(seed=12)
    session = pair.connect()
    pair.net.run(0.001)
    client, now, cid = pair.client, pair.net.now, session.local_cid
    original = session.remote_cid
    hostile = [
        build_long_packet(PacketType.RETRY, cid, bytes(8)),  # no token
        build_long_packet(PacketType.RETRY, bytes(8), bytes(8), token=b"t" * 24),  # no session
        build_long_packet(PacketType.RETRY, cid, bytes(8), token=b"t" * 24)[:19],  # truncated
    ]
    for datagram in hostile:
        client.receive_datagram(datagram, B, now)
    assert session.remote_cid == original and not session.is_terminated
    assert client.dropped[DropReason.MALFORMED.value] == 1
    assert client.dropped[DropReason.UNKNOWN_SESSION.value] == 1
    assert pair.net.run_until(lambda: session.confirmed, 5.0)
    late = build_long_packet(PacketType.RETRY, cid, bytes(8), token=b"t" * 24)
    client.receive_datagram(late, B, pair.net.now)  # after the handshake: dropped
    assert session.remote_cid != bytes(8) and session.confirmed


def test_over_the_retry_budget_a_redirected_session_stays_here() -> None:
    pair, _ = _redirecting_pair(1, max_half_open_per_address=1)  # one RETRY a second
    first = pair.connect()
    second = pair.connect()
    assert pair.net.run_until(lambda: first.confirmed and second.confirmed, 5.0)
    assert pair.server.redirects_sent == 1 and len(_long_packets(pair, PacketType.RETRY)) == 1


# -- groups in the simulator ----------------------------------------------------------------------

def test_a_group_places_a_burst_within_half_the_mean() -> None:
    group, _, opened = _burst(4, 4, 16, seed=1)
    counts = group.per_worker()
    assert sum(counts) == 64 and min(counts) >= 64 / 4 / 2, counts
    redirected = sum(w.redirects_sent for w in group.workers)
    assert 0 < redirected < 32
    for index, worker in enumerate(group.workers):
        assert all(cid_worker_index(cid, 4) == index for cid in worker.sessions)
        assert worker.inbound == len(worker.sessions) == group.loads[index]
    assert all(s.confirmed and not s.is_terminated for s in opened)


def test_without_placement_the_same_burst_follows_the_hash() -> None:
    group, _, _ = _burst(4, 4, 16, seed=1, balance=False)
    assert sum(w.redirects_sent for w in group.workers) == 0
    assert sum(group.per_worker()) == 64


@pytest.mark.parametrize("workers", [4, 8])
def test_bursts_of_64_sessions_never_leave_a_worker_under_half_the_mean(workers: int) -> None:
    """20 bursts per group size, each 4 clients x 16 sessions at once: the hash alone leaves
    some worker under half the mean in 1.7 % (4 workers) and 25 % (8) of runs."""
    started = time.perf_counter()
    shares = []
    for seed in range(20):
        group, _, _ = _burst(workers, 4, 16, seed=100 + seed)
        counts = group.per_worker()
        assert sum(counts) == 64
        shares.append(min(counts) / (64 / workers))
    assert min(shares) >= 0.5, shares
    assert time.perf_counter() - started < 120


def test_the_model_of_worst_case_bursts_meets_the_target() -> None:
    """The rule alone, 2,000 bursts per size, where every redirect lands only after all the
    first INITIALs were handled (the most workers redirect to one before it counts them)."""
    rng = random.Random(5)
    for workers in (4, 8):
        failures = redirected = 0
        for _ in range(2000):
            loads = [0] * workers
            balancers = [LoadBalancer(loads, i) for i in range(workers)]
            late = []
            for _ in range(64):
                worker = rng.randrange(workers)
                target = balancers[worker].redirect(0.0)
                if target is None:
                    loads[worker] += 1
                else:
                    late.append(target)
            for target in late:
                loads[target] += 1
            redirected += len(late)
            failures += min(loads) < 64 / workers / 2
        assert failures == 0
        assert redirected / (2000 * 64) < 0.3
    assert MIN_GAP >= 2


@pytest.mark.parametrize("shared_clock", [True, False])
def test_a_token_made_by_one_worker_is_checked_on_the_clock_all_share(
        shared_clock: bool) -> None:
    """Each worker's loop has its own clock (trio's starts at a random offset): the tokens use
    the machine's, or the worker a RETRY names would drop the redirected INITIAL (it did)."""
    config = EndpointConfig()
    first = Endpoint(config, rng=DeterministicRandom(1))
    other = Endpoint(config, identity=first.identity, rng=DeterministicRandom(2))
    first.join_workers((0, 2), Always(1), KEY, clock_offset=5000.0)  # its clock: 5000 behind
    other.join_workers((1, 2), None, KEY, clock_offset=-3000.0 if shared_clock else 0.0)
    client = Endpoint(config, rng=DeterministicRandom(3))
    session = client.connect(B, first.identity.node_id, 0.0)
    (initial, _), = client.datagrams_to_send(0.0)
    first.receive_datagram(initial, A, 10.0)  # shared clock: 5010
    (retry, _), = first.datagrams_to_send(10.0)
    client.receive_datagram(retry, B, 0.01)
    (again, _), = client.datagrams_to_send(0.01)
    assert steering.select(again, 2) == 1 and session.remote_cid == parse_packet(retry).scid
    other.receive_datagram(again, A, 8010.2)  # shared clock: 5010.2 with its offset
    assert len(other.sessions) == (1 if shared_clock else 0)
    assert other.dropped[DropReason.UNEXPECTED.value] == (0 if shared_clock else 1)


class _Exited:
    """A worker process that has exited."""

    pid = None
    exitcode = -9

    def is_alive(self) -> bool:
        return False

    def join(self, timeout: float | None = None) -> None:
        pass


def test_a_worker_that_exits_or_stops_is_never_chosen() -> None:
    loads = shared_loads(3)
    group = WorkerGroup(0, 3, {}, steering.ADDRESS_HASH, loads=loads)
    specs: list[Any] = [SimpleNamespace(index=1), SimpleNamespace(index=2)]
    pool = WorkerPool(lambda *args: None, specs, group)
    loads[0], loads[1], loads[2] = 2, 0, 6  # all running
    assert LoadBalancer(loads, 2).redirect(0.0) == 1
    pool.processes = {1: _Exited()}  # worker 1 has died; it is replaced after the backoff
    pool._started_at = {1: time.monotonic(), 2: time.monotonic()}
    assert pool.replace_dead() == 0 and loads[1] == ABSENT
    assert LoadBalancer(loads, 2).redirect(0.0) == 0  # not to the dead one, however idle
    pool.processes = {2: _Exited()}
    loads[1] = 0  # its replacement started
    pool.stop()
    assert list(loads)[1:] == [ABSENT, ABSENT]
