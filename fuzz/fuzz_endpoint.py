"""Fuzz an endpoint holding a live session with arbitrary datagrams.

The first input byte picks how the rest is delivered: as a raw datagram, as the body of a DATA
packet for the live session (reaching the AEAD check), sealed with the session's real key (so
arbitrary frames reach the session's frame handling), or as an INITIAL. Nothing may raise;
the endpoint must stay usable. Run: ``python fuzz/fuzz_endpoint.py -max_total_time=60``.
"""

from __future__ import annotations

from stt_proto import DeterministicRandom, Endpoint, EndpointConfig, Session
from stt_proto.packet import PacketType, build_long_packet
from stt_proto.sim import Network

CLIENT = ("10.1.0.1", 1111)
SERVER = ("10.1.0.2", 2222)


def _setup() -> tuple[Network, Endpoint, Session, Session]:
    net = Network(seed=5, record_trace=False)
    client = net.add_endpoint(Endpoint(EndpointConfig(), rng=DeterministicRandom(11)), CLIENT)
    server = net.add_endpoint(Endpoint(EndpointConfig(), rng=DeterministicRandom(12)), SERVER)
    session = client.connect(SERVER, server.identity.node_id, 0.0)
    net.run(0.2)
    accepted = server.next_event()
    if accepted is None or not session.confirmed:
        raise RuntimeError("fuzz fixture failed to connect")
    return net, server, session, server.sessions[accepted.session_id]


def TestOneInput(data: bytes) -> None:  # atheris calls it by this name
    if not data:
        return
    net, server, client_session, server_session = _setup()
    mode, body = data[0] % 4, data[1:]
    now = net.now
    if mode == 0:
        datagram = body
    elif mode == 1:
        datagram = b"\x01\x06" + server_session.local_cid + body
    elif mode == 2:
        keys = client_session._send_keys
        if keys is None or not body:
            return
        datagram = bytes(keys.cipher.seal(server_session.local_cid, client_session._next_pn,
                                          keys.phase, body))
        client_session._next_pn += 1
    else:
        datagram = build_long_packet(PacketType.INITIAL, body[:8].ljust(8, b"\0"),
                                     body[8:16].ljust(8, b"\0"), body[16:].ljust(1200, b"\0"))
    server.receive_datagram(datagram, CLIENT, now)
    server.handle_timer(now)
    server.datagrams_to_send(now)
    net.run(1.0)  # the endpoint keeps running: timers, replies, closes
    server.get_stats()


if __name__ == "__main__":
    from fuzz.runner import fuzz

    fuzz(TestOneInput)
