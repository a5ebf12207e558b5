"""Session-id steering for ``workers=N`` without sockets: the ids a worker's endpoint chooses
name it, the classic BPF program the kernel runs (executed here by a small cBPF interpreter)
finds the destination id in every packet type and puts junk on worker 0, and a NAT rebinding
in the simulator keeps every packet of the session on its worker (issue 27)."""

from __future__ import annotations

import hashlib
import random
import socket
from collections import deque

import pytest

from stt_proto import Endpoint
from stt_proto.cids import cid_worker_index, worker_cid
from stt_proto.events import Address
from stt_proto.packet import (
    CID_LEN,
    VERSION,
    Datagram,
    PacketType,
    build_long_packet,
    parse_packet,
)
from stt_proto.sim import LinkProfile
from stt_runtime import steering
from stt_runtime.udp_io import UdpIO

from .conftest import A, B, make_pair
from .transfer import Transfer, mixed_messages, run_transfers

A2 = ("10.0.0.1", 4999)  # the client's address after its NAT rebinds
MiB = 1024 * 1024


def run_cbpf(instructions: list[steering.Instruction], payload: bytes) -> int:
    """What the kernel's classic BPF machine returns for ``payload`` (the UDP payload, which
    is where a reuseport program's packet starts): the subset of opcodes a program may use
    here, with the kernel's rule that a load past the end ends the program returning 0."""
    acc = 0
    pc = 0
    while True:
        code, jt, jf, k = instructions[pc]
        pc += 1
        cls = code & 0x07
        if cls == 0x00:  # BPF_LD
            mode, size = code & 0xE0, code & 0x18
            if mode == 0x80:  # BPF_LEN
                acc = len(payload)
                continue
            assert mode == 0x20, f"unsupported load {code:#x}"  # BPF_ABS
            width = {0x00: 4, 0x08: 2, 0x10: 1}[size]
            if k + width > len(payload):
                return 0
            acc = int.from_bytes(payload[k:k + width], "big")
        elif cls == 0x04:  # BPF_ALU with a constant
            op = code & 0xF0
            assert code & 0x08 == 0 and op == 0x90, f"unsupported ALU op {code:#x}"
            acc = acc % k
        elif cls == 0x05:  # BPF_JMP with a constant
            op = code & 0xF0
            taken = {0x10: acc == k, 0x20: acc > k, 0x30: acc >= k}[op]
            pc += jt if taken else jf
        elif cls == 0x06:  # BPF_RET
            return acc if code & 0x18 == 0x10 else k
        else:
            raise AssertionError(f"unsupported opcode {code:#x}")


@pytest.mark.parametrize("count", [1, 2, 3, 7, 16, 256])
def test_a_worker_id_names_its_worker_and_keeps_the_rest_random(count: int) -> None:
    rng = random.Random(count)
    for _ in range(500):
        raw = rng.randbytes(CID_LEN)
        index = rng.randrange(count)
        cid = worker_cid(raw, (index, count))
        assert len(cid) == CID_LEN and cid[4:] == raw[4:]
        assert cid_worker_index(cid, count) == index
        assert steering.select(bytes((VERSION, 6)) + cid + b"\x00" * 20, count) == index
    assert worker_cid(b"\xff" * CID_LEN, (0, 7)) != b"\xff" * CID_LEN  # the top wraps down
    assert cid_worker_index(worker_cid(b"\xff" * CID_LEN, (6, 7)), 7) == 6
    assert worker_cid(b"12345678", None) == b"12345678"  # one process: untouched
    with pytest.raises(ValueError):
        worker_cid(b"12345678", (count, count))


def test_an_endpoint_chooses_ids_that_name_its_worker_and_stays_random_otherwise() -> None:
    pair = make_pair(seed=3)
    pair.server.cid_worker = (2, 5)
    pair.client.cid_worker = (4, 5)
    for _ in range(20):
        pair.connect()
    assert pair.net.run_until(lambda: len(pair.server.sessions) == 20, 10.0)
    assert all(cid_worker_index(cid, 5) == 2 for cid in pair.server.sessions)
    assert all(cid_worker_index(cid, 5) == 4 for cid in pair.client.sessions)
    plain = Endpoint(pair.server.config)
    ids = {plain._new_cid() for _ in range(64)}
    assert len({cid_worker_index(cid, 5) for cid in ids}) > 1  # no worker: random ids


def _packets_of_every_type() -> dict[str, bytes]:
    """One packet of each type as an endpoint sends it, and the destination id it carries."""
    pair = make_pair(seed=5)
    pair.server.cid_worker = (1, 3)
    _, server = pair.established()
    by_type: dict[str, bytes] = {}
    for _, _, _, payload in pair.net.trace:
        name = parse_packet(bytes(payload)).type.name
        by_type.setdefault(name, bytes(payload))
    dcid, scid = server.remote_cid, server.local_cid
    by_type["RETRY"] = build_long_packet(PacketType.RETRY, dcid, scid, token=b"t" * 24)
    by_type["REFUSE"] = build_long_packet(PacketType.REFUSE, dcid, scid, refuse_code=1)
    return by_type


def test_the_program_finds_the_destination_id_in_every_packet_type() -> None:
    packets = _packets_of_every_type()
    assert set(packets) == {t.name for t in PacketType}
    for count in (1, 2, 3, 5, 8):
        program = steering.program(count)
        for name, payload in packets.items():
            dcid = parse_packet(payload).dcid
            expected = cid_worker_index(dcid, count)
            assert run_cbpf(program, payload) == expected == steering.select(payload, count), name


@pytest.mark.parametrize("payload", [b"", b"\x01", b"\x01\x06\x00\x00", b"\x01\x06" + b"\xff" * 7,
                                     b"\x02\x06" + b"\xff" * 30, b"\x00" * 40])
def test_short_or_foreign_datagrams_go_to_worker_zero(payload: bytes) -> None:
    for count in (2, 3, 16):
        assert run_cbpf(steering.program(count), payload) == 0 == steering.select(payload, count)


def test_the_program_never_names_a_socket_outside_the_group() -> None:
    rng = random.Random(7)
    for count in (1, 2, 3, 4, 9, 255):
        program = steering.program(count)
        for _ in range(300):
            payload = bytes((VERSION, rng.randrange(256))) + rng.randbytes(rng.randrange(60))
            assert 0 <= run_cbpf(program, payload) < count
    with pytest.raises(ValueError):
        steering.program(0)


def test_a_nat_rebinding_keeps_every_packet_of_the_session_on_its_worker() -> None:
    """In the simulator: the server is worker 2 of 3; the client's address changes
    mid-transfer; every packet the client sends the server, from either address, is steered
    to worker 2 (but the INITIAL, which goes where the client's random id says)."""
    profile = LinkProfile(latency=0.01, bandwidth=50e6, queue_limit=MiB)
    pair = make_pair(seed=4, profile=profile)
    pair.server.cid_worker = (2, 3)
    client, server = pair.established()
    transfers = [Transfer(pair.net, client, server, mixed_messages(MiB, seed=1)),
                 Transfer(pair.net, server, client, mixed_messages(MiB, seed=2))]
    run_transfers(pair.net, transfers, timeout=0.1)
    assert not any(t.done for t in transfers), "the rebinding must come mid-transfer"
    net = pair.net
    net.endpoints[A2] = net.endpoints.pop(A)  # the client's NAT maps it to a new port
    assert run_transfers(net, transfers, timeout=60.0)
    for transfer in transfers:
        assert hashlib.sha256(b"".join(transfer.received)).digest() == \
            hashlib.sha256(b"".join(transfer.messages)).digest()
    assert server.remote_address == A2 and server.get_stats().paths_validated == 1
    program = steering.program(3)
    sent = [(src, bytes(p)) for _, src, dst, p in net.trace if dst == B]
    assert {src for src, _ in sent} == {A, A2}
    later = [p for _, p in sent if p[1] != PacketType.INITIAL]
    assert len(later) > 100
    assert all(run_cbpf(program, p) == 2 for p in later)
    assert cid_worker_index(server.local_cid, 3) == 2


def test_a_gso_run_carries_one_session_only() -> None:
    """The receiver's kernel steers a whole GSO run by its first datagram, so runs to one
    address break where the destination id changes (stt_runtime/udp_io.py)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        udp = UdpIO(sock)
        udp.gso = True
        first, second = (bytes((VERSION, 6)) + worker_cid(bytes(8), (i, 2)) for i in range(2))
        out: deque[tuple[Datagram, Address]] = deque()
        for header in (first, first, first, second, second):
            out.append((header + bytes(1190), ("127.0.0.1", 9)))
        assert udp._run_length(out) == 3
        for _ in range(3):
            out.popleft()
        assert udp._run_length(out) == 2
        out[1] = (memoryview(bytearray(out[1][0])), out[1][1])  # views compare by content
        assert udp._run_length(out) == 2
    finally:
        sock.close()
