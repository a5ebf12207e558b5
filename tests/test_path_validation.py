"""Path validation: a session follows its peer to a new address only after a PATH_CHALLENGE
sent there is echoed. A NAT rebinding mid-transfer still completes byte-exact; a spoofed or
copied packet from a victim's address gets the victim a challenge at most (issue 21, item 2)."""

from __future__ import annotations

import hashlib
from typing import Any, cast

import pytest

from stt_proto import DeterministicRandom, Endpoint, Session, SessionConfig, SessionTerminated
from stt_proto import frames as F
from stt_proto.errors import DecodeError
from stt_proto.packet import DATA_KEY_PHASE, parse_data_header
from stt_proto.path import (
    AMPLIFICATION_FACTOR,
    CHALLENGES_PER_ATTEMPT,
    PathValidator,
)
from stt_proto.sim import LinkProfile, Network

from .conftest import A, B, Pair, make_pair
from .transfer import Transfer, mixed_messages, run_transfers

A2 = ("10.0.0.1", 4999)  # the client's address after its NAT rebinds
VICTIM = ("192.0.2.66", 80)
MiB = 1024 * 1024


def _sha(chunks: list[bytes]) -> str:
    return hashlib.sha256(b"".join(chunks)).hexdigest()


def _open(session: Session, datagram: bytes) -> list[F.Frame]:
    """The frames of a DATA packet sealed for ``session`` (decrypted with its current key)."""
    assert DATA_KEY_PHASE.get(datagram[1]) is not None, "not a DATA packet"
    pn, pos = parse_data_header(datagram, len(datagram))
    keys = session._recv_keys
    assert keys is not None
    view = memoryview(datagram)
    return F.parse_frames(keys.current.open_sealed(pn, view[:pos], view[pos:]))


def _to(net: Network, address: tuple[str, int]) -> list[bytes]:
    return [data for _, _, dst, data in net.trace if dst == address]


class _OldMapping:
    """The NAT's previous mapping, still open inbound: forwards what reaches it to the client
    (which now sends from its new address). The simulator drives it like an endpoint."""

    def __init__(self, client: Endpoint) -> None:
        self.client = client

    def receive_datagram(self, data: bytes, addr: tuple[str, int], now: float) -> None:
        self.client.receive_datagram(data, addr, now)

    def datagrams_to_send(self, now: float) -> list[Any]:
        return []

    def get_timer(self) -> None:
        return None

    def handle_timer(self, now: float) -> None:
        pass


KEEP_ALIVE = SessionConfig().keep_alive_interval


def _rebind(pair: Pair, *, old_mapping_open: bool) -> None:
    """The client's NAT maps it to a new port: it sends from A2 from now on. Packets to its
    old address are lost unless ``old_mapping_open``."""
    net = pair.net
    net.endpoints[A2] = net.endpoints.pop(A)
    if old_mapping_open:
        net.endpoints[A] = cast(Endpoint, _OldMapping(pair.client))


# -- frames -----------------------------------------------------------------------------------


@pytest.mark.parametrize("cls", [F.PathChallengeFrame, F.PathResponseFrame])
def test_path_frames_round_trip_and_reject_truncation(cls: Any) -> None:
    frame = cls(bytes(range(1, 9)))
    encoded = F.encode_frames([frame, F.PingFrame()])
    assert encoded[0] == (0x1A if cls is F.PathChallengeFrame else 0x1B)
    assert F.parse_frames(encoded) == [frame, F.PingFrame()]
    for cut in range(1, 9):
        with pytest.raises(DecodeError):
            F.parse_frames(encoded[:cut])
    with pytest.raises(ValueError):
        F.encode_frames([cls(b"short")])


# -- the validator on its own -----------------------------------------------------------------


def test_validator_keeps_three_times_the_bytes_received_and_never_spins() -> None:
    path = PathValidator()
    rng = DeterministicRandom(5)
    path.on_packet(VICTIM, 47, True, 0.0, 0.1)
    sent = 0
    for step in range(20):
        now = step * 0.1
        data = path.challenge(now, rng, 43)
        if data is not None:
            path.on_sent(bytes(43))
            sent += 43
        path.on_timer(now)
        timer = path.timer()
        assert timer is None or timer > now, "a due timer that does nothing would spin"
    assert sent <= AMPLIFICATION_FACTOR * 47
    assert path.candidate is None and path.failed == 1 and path.validated == 0
    assert [address for _, address in path.take_outbox()] == [VICTIM] * (sent // 43)


def test_validator_waits_for_more_bytes_when_the_limit_is_reached() -> None:
    path = PathValidator()
    rng = DeterministicRandom(6)
    path.on_packet(A2, 20, True, 0.0, 0.5)  # room for one 43-byte challenge (60 bytes)
    assert path.challenge(0.0, rng, 43) is not None
    path.on_sent(bytes(43))
    assert path.challenge(0.5, rng, 43) is None  # 86 > 60: blocked, no timer armed for it
    assert path.timer() == path.deadline
    path.on_packet(A2, 40, False, 0.6, 0.5)  # more from the candidate: 180 bytes of room
    challenge = path.challenge(0.6, rng, 43)
    assert challenge is not None
    assert path.on_response(b"\0" * 8) is None  # echoes nothing we sent
    assert path.on_response(challenge) == A2
    assert path.candidate is None and path.validated == 1


def test_echoes_owed_are_bounded() -> None:
    path = PathValidator()
    for i in range(10):
        path.on_challenge(bytes([i]) * 8)
    assert path.responses == [bytes([i]) * 8 for i in range(6, 10)]


def test_only_the_newest_packet_starts_an_attempt() -> None:
    path = PathValidator()
    path.on_packet(VICTIM, 1000, False, 0.0, 0.1)
    assert path.candidate is None and path.timer() is None


# -- sessions in the simulator ----------------------------------------------------------------


@pytest.mark.parametrize("old_mapping_open", [False, True])
@pytest.mark.parametrize("direction", ["upload", "download", "both"])
def test_nat_rebinding_mid_transfer_completes_byte_exact(direction: str,
                                                         old_mapping_open: bool) -> None:
    profile = LinkProfile(latency=0.01, bandwidth=50e6, queue_limit=MiB)
    pair = make_pair(seed=4, profile=profile)
    client, server = pair.established()
    transfers = []
    if direction in ("upload", "both"):
        transfers.append(Transfer(pair.net, client, server, mixed_messages(2 * MiB, seed=1)))
    if direction in ("download", "both"):
        transfers.append(Transfer(pair.net, server, client, mixed_messages(2 * MiB, seed=2)))
    run_transfers(pair.net, transfers, timeout=0.1)
    assert not any(t.done for t in transfers), "the rebinding must come mid-transfer"
    rebound_at = pair.net.now
    _rebind(pair, old_mapping_open=old_mapping_open)
    assert run_transfers(pair.net, transfers, timeout=60.0)
    if direction == "download" and not old_mapping_open:
        # The client only receives, and what was on its way went to the dead mapping: the
        # server learns the new address from the client's next packet, an ACK owed at the
        # moment of the rebinding (by chance of timing) or else its keep-alive PING.
        assert pair.net.now - rebound_at < KEEP_ALIVE + 2.0
    else:
        assert pair.net.now - rebound_at < 2.0  # a round trip to validate, no stall
    for transfer in transfers:
        assert _sha(transfer.received) == _sha(transfer.messages)
    assert server.remote_address == A2
    path = server.path
    assert path is not None and path.candidate is None
    stats = server.get_stats()
    assert stats.paths_validated == 1 and stats.path_validations_failed == 0
    assert not server.is_closed and not client.is_closed


@pytest.mark.parametrize("seed", range(3))
def test_nat_rebinding_under_loss_completes_byte_exact(seed: int) -> None:
    """Lost challenges and echoes: the challenge is sent again, or a later packet from the
    new address starts a new attempt. The old mapping is dead, so a download may wait for
    the client's next packet (a keep-alive at worst) before the server learns the address."""
    profile = LinkProfile(latency=0.01, bandwidth=50e6, queue_limit=MiB, loss=0.1)
    pair = make_pair(seed=20 + seed, profile=profile)
    client, server = pair.established(timeout=20.0)
    transfers = [Transfer(pair.net, client, server, mixed_messages(MiB, seed=seed)),
                 Transfer(pair.net, server, client, mixed_messages(MiB, seed=seed + 1))]
    run_transfers(pair.net, transfers, timeout=0.05)
    _rebind(pair, old_mapping_open=False)
    assert run_transfers(pair.net, transfers, timeout=120.0)
    for transfer in transfers:
        assert _sha(transfer.received) == _sha(transfer.messages)
    assert server.remote_address == A2 and server.get_stats().paths_validated >= 1


def test_the_server_probes_the_new_path_at_once_after_validating_it() -> None:
    """A download whose client only speaks again at its keep-alive: once the server has
    validated the new address it probes there at once, not after the backoff its probe
    timer built up while everything went to the dead old address."""
    pair = make_pair(seed=4, profile=LinkProfile(latency=0.01, bandwidth=50e6))
    client, server = pair.established()
    transfer = Transfer(pair.net, server, client, mixed_messages(4 * MiB, seed=2))
    run_transfers(pair.net, [transfer], timeout=0.1)
    # The old mapping dies inbound: the server's data is lost, the client falls silent, and
    # the server's probe backoff grows.
    pair.net.tamper = lambda src, dst, data: None if dst == A else data
    run_transfers(pair.net, [transfer], timeout=3.0)
    assert server.data is not None and server.data.recovery.pto_count >= 3
    _rebind(pair, old_mapping_open=False)
    client.send_ping()  # as its keep-alive would: the server learns the new address
    assert pair.net.run_until(lambda: server.remote_address == A2, 1.0)
    validated_at = pair.net.now
    remaining = sum(map(len, transfer.messages)) - sum(map(len, transfer.received))
    assert run_transfers(pair.net, [transfer], timeout=60.0)
    # what was left crosses at about the link's rate (a restarted window included), not
    # after seconds of backed-off probe timer
    assert pair.net.now - validated_at < 0.5 + 1.5 * remaining * 8 / 50e6
    assert _sha(transfer.received) == _sha(transfer.messages)


def _copy_first(net: Network, *, every: bool) -> dict[str, int]:
    """An on-path attacker: copies the client's DATA packets (the first, or ``every`` one)
    and sends each copy from the victim's address so that it arrives before the original
    (which the server then drops as a replay)."""
    copied = {"packets": 0, "bytes": 0}

    def tamper(src: tuple[str, int], dst: tuple[str, int], data: bytes) -> bytes:
        if src == A and dst == B and DATA_KEY_PHASE.get(data[1]) is not None and (
                every or not copied["packets"]):
            copied["packets"] += 1
            copied["bytes"] += len(data)
            net.send(VICTIM, B, data)  # queued first, so delivered first
        return data

    net.tamper = tamper
    return copied


@pytest.mark.parametrize("scenario", ["idle", "one", "every"])
def test_a_copied_packet_from_a_victim_gets_the_victim_only_challenges(scenario: str) -> None:
    """``idle``: the copy is of the ACK that ends an exchange, then a download starts (before
    the fix all of it went to the victim until the client's next keep-alive, 32 KB from one
    35-byte packet here: issue 21's 589 KB in 10 s). ``one``: one ACK copied mid-download.
    ``every``: every packet the client sends is copied and arrives first."""
    pair = make_pair(seed=9)
    client, server = pair.established()
    messages = mixed_messages(3 * MiB, seed=5)
    copied = _copy_first(pair.net, every=scenario == "every")
    if scenario == "idle":  # the copy is of the client's ACK for a short message
        assert run_transfers(pair.net, [Transfer(pair.net, server, client, [b"hi"])], 1.0)
        pair.net.run(0.5)
        assert copied["packets"] == 1
    transfer = Transfer(pair.net, server, client, messages)  # a download: the client ACKs
    if scenario == "one":
        pair.net.tamper = None
        run_transfers(pair.net, [transfer], timeout=0.05)  # a few round trips in
        assert not transfer.done
        copied = _copy_first(pair.net, every=False)
    assert run_transfers(pair.net, [transfer], timeout=60.0)
    assert _sha(transfer.received) == _sha(messages)
    assert copied["packets"] >= 1
    to_victim = _to(pair.net, VICTIM)
    assert sum(map(len, to_victim)) <= AMPLIFICATION_FACTOR * copied["bytes"]
    assert to_victim, "the server should have challenged the victim's address"
    for datagram in to_victim:
        frames = _open(client, datagram)
        assert [type(f) for f in frames] == [F.PathChallengeFrame], frames
    if scenario != "every":
        assert len(to_victim) <= CHALLENGES_PER_ATTEMPT
    assert server.remote_address == A
    pair.net.tamper = None
    pair.net.run(3.0)  # past the attempt's deadline
    path = server.path
    assert path is not None and path.validated == 0 and path.failed >= 1
    assert path.candidate is None and server.remote_address == A
    assert server.counters.bytes_sent_wire > 100 * sum(map(len, to_victim))


def test_a_failed_validation_leaves_the_session_on_its_path() -> None:
    pair = make_pair(seed=12)
    client, server = pair.established()
    copied = _copy_first(pair.net, every=False)
    client.send_ping()
    pair.net.run(0.05)
    assert copied["packets"] == 1
    path = server.path
    assert path is not None and path.candidate == VICTIM
    assert server.get_timer() is not None and server.get_timer() <= path.deadline  # type: ignore[operator]
    pair.net.run(5.0)
    assert path.candidate is None and path.failed == 1 and path.validated == 0
    assert server.remote_address == A
    client.send_ping()
    pair.net.run(0.1)
    assert not server.is_closed and server.counters.packets_received > 2


def test_a_response_echoing_no_challenge_is_ignored() -> None:
    pair = make_pair(seed=13)
    client, server = pair.established()
    _copy_first(pair.net, every=False)
    client.send_ping()
    pair.net.run(0.015)  # the copy has arrived: a challenge is on its way to the victim
    path = server.path
    assert path is not None and path.candidate == VICTIM
    client._path().on_challenge(b"\x01" * 8)  # a wrong echo, authenticated by the client
    client.send_ping()
    pair.net.run(0.05)
    assert server.remote_address == A and path.candidate == VICTIM and not server.is_closed


def _seal_from_client(pair: Pair, client: Session, server: Session, payload: bytes) -> None:
    keys = client._send_keys
    assert keys is not None
    pair.net.send(A, B, keys.cipher.seal(server.local_cid, client._next_pn, keys.phase, payload))
    client._next_pn += 1


@pytest.mark.parametrize("payload", [b"\x1a\x01\x02", b"\x1b", b"\x01\x1a" + bytes(7)])
def test_a_truncated_path_frame_closes_only_that_session(payload: bytes) -> None:
    pair = make_pair(seed=14)
    client, server = pair.established()
    other = pair.connect()
    pair.net.run(0.2)
    _seal_from_client(pair, client, server, payload)
    pair.net.run(0.05)
    ends = [e for e in iter(server.next_event, None) if isinstance(e, SessionTerminated)]
    assert ends and "path frame needs 8 bytes" in ends[-1].reason
    assert server.is_closed and other.is_established


def test_many_challenges_in_one_packet_get_a_bounded_answer() -> None:
    pair = make_pair(seed=15)
    client, server = pair.established()
    challenges = [bytes([i]) * 8 for i in range(1, 41)]
    _seal_from_client(pair, client, server,
                      F.encode_frames([F.PathChallengeFrame(d) for d in challenges]))
    before = len(pair.net.trace)
    pair.net.run(0.05)
    answers = [f for _, src, dst, data in pair.net.trace[before:] if src == B and dst == A
               for f in _open(client, data) if isinstance(f, F.PathResponseFrame)]
    assert [f.data for f in answers] == challenges[-4:]
    assert not server.is_closed and server.remote_address == A
