"""The protocol core alone, with no socket and no event loop: two ``stt_proto`` endpoints
handing datagrams to each other in memory, packet protection, and handshakes in the
simulator. What the core costs before any runtime adds its own."""

from __future__ import annotations

import os
import statistics
import time

from stt_proto import DeterministicRandom, Endpoint, EndpointConfig, Identity
from stt_proto.packet import PacketCipher, parse_packet
from stt_proto.sim import LinkProfile, Network

from ..common import MiB


async def core_goodput(frame_size: int, seconds: float) -> float:
    """Bytes/s of one stream between two ``stt_proto`` endpoints handing datagrams to each
    other in memory: no sockets, no event loop. The ceiling of the protocol core alone; a
    coroutine only so that ``run_on`` can run it, it never awaits."""
    config = EndpointConfig.build(max_frame_size=frame_size, recv_buffer_size=8 * MiB,
                              send_buffer_size=8 * MiB)
    a, b = Endpoint(config, Identity.generate()), Endpoint(config, Identity.generate())
    a_addr, b_addr = ("10.0.0.1", 1), ("10.0.0.2", 2)
    now = time.monotonic

    def pump() -> None:
        for source, sink, address in ((a, b, a_addr), (b, a, b_addr)):
            moment = now()
            timer = source.get_timer()
            if timer is not None and timer <= moment:
                source.handle_timer(moment)
            while batch := source.datagrams_to_send(moment, 32):
                for datagram, _ in batch:
                    sink.receive_datagram(datagram, address, moment)

    sender = a.connect(b_addr, b.identity.node_id, now())
    while not sender.confirmed:
        pump()
    pump()
    receiver = next(iter(b.sessions.values()))
    stream = sender.open_stream()
    message = os.urandom(MiB)
    received = 0
    start = now()
    while now() - start < seconds:
        while sender.send_message(stream, message):
            pass
        pump()
        for endpoint in (a, b):
            while endpoint.next_event() is not None:
                pass
        for session in (sender, receiver):
            while session.next_event() is not None:
                pass
        while (got := receiver.receive_message(stream)) is not None:
            received += len(got)
    return received / (now() - start)


def packet_rate(cipher: str, size: int, seconds: float) -> float:
    """STT packet protection: seal into a packet, parse the header, open. Bytes per second."""
    send, recv = PacketCipher(cipher, bytes(32)), PacketCipher(cipher, bytes(32))
    payload = bytes(size)
    cid = bytes(8)
    n = 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        recv.open(parse_packet(send.seal(cid, n, 0, payload)))
        n += 1
    return n * size / (time.perf_counter() - start)


def simulator_handshakes(count: int) -> tuple[float, float]:
    """Complete ``count`` handshakes between two endpoints in the simulator (no link delay);
    returns (handshakes per second of CPU, median virtual handshake time)."""
    net = Network(seed=1, default_profile=LinkProfile(latency=0.0), record_trace=False)
    a, b = ("10.0.0.1", 1), ("10.0.0.2", 2)
    client = net.add_endpoint(Endpoint(EndpointConfig.build(max_sessions=count + 1),
                                       rng=DeterministicRandom(1)), a)
    server = net.add_endpoint(Endpoint(EndpointConfig.build(max_sessions=count + 1,
                                                  retry_threshold=count + 1),
                                       rng=DeterministicRandom(2)), b)
    start = time.perf_counter()
    sessions = [client.connect(b, server.identity.node_id, net.now) for _ in range(count)]
    net.run_until(lambda: all(s.confirmed for s in sessions), 10.0)
    elapsed = time.perf_counter() - start
    done = sum(s.confirmed for s in sessions)
    return done / elapsed, statistics.median(s.rtt.smoothed for s in sessions)
