"""A stream whose last event is the peer's FIN alone is forgotten by the core.

Found while moving the answering side's sends earlier (docs/latency.md): the core forgets a
stream on a read, an acknowledgement or a reset, once both halves are done. When our data and
FIN were acknowledged and every message read before the peer's FIN arrived in a packet of its
own (the peer closed a while after its last send), no read or acknowledgement followed, and
the stream stayed in the session's table until the session ended."""

from __future__ import annotations

from .conftest import make_pair


def test_a_late_fin_alone_finishes_and_forgets_the_stream() -> None:
    pair = make_pair()
    client, server = pair.established()
    sid = client.open_stream()
    client.send_message(sid, b"request")
    client.close_stream(sid)  # our half: data and FIN
    pair.net.run(0.1)
    assert server.receive_message(sid) == b"request"
    server.send_message(sid, b"answer")  # the answer, without the FIN yet
    pair.net.run(0.1)
    assert client.receive_message(sid) == b"answer"  # everything read
    assert client.stream_state(sid)[1]  # our FIN acknowledged
    assert client.is_stream_open(sid)  # the peer's half is still open
    server.close_stream(sid)  # the FIN, alone, a while later
    pair.net.run(0.1)
    assert client.stream_state(sid)[0]  # the peer finished, everything read
    assert not client.is_stream_open(sid)  # and the core forgot it
    assert client.get_stats().streams_open == 0
