"""The DHT beside the endpoint, not inside it (issue 24 item 4): ``stt_proto.Node`` composes an
``Endpoint`` (sessions only) and the DHT service; the endpoint hands DHT-purpose sessions to
the service through its hook, and a bare endpoint, having none, refuses them."""

from __future__ import annotations

import ast
from pathlib import Path

from stt_proto import (
    DeterministicRandom,
    Endpoint,
    EndpointConfig,
    Node,
    SessionTerminated,
)
from stt_proto.admission import SESSION_LIMIT_CODE
from stt_proto.dht import DHTConfig
from stt_proto.dht.ids import Contact
from stt_proto.errors import DHTError
from stt_proto.handshake_payload import Purpose
from stt_proto.sim import LinkProfile, Network

ROOT = Path(__file__).resolve().parent.parent
CLIENT, SERVER = ("10.0.0.1", 4000), ("10.0.0.2", 4000)


def _net() -> Network:
    return Network(seed=5, default_profile=LinkProfile(latency=0.01), record_trace=False)


def test_the_endpoint_imports_nothing_of_the_dht() -> None:
    tree = ast.parse((ROOT / "stt_proto" / "endpoint.py").read_text(encoding="utf-8"))
    imported = {node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    imported |= {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import)
                 for alias in node.names}
    assert not {name for name in imported
                if name == "dht" or name.startswith(("dht.", "stt_proto.dht"))}
    assert not hasattr(Endpoint(EndpointConfig(), rng=DeterministicRandom(1)), "dht")


def test_a_bare_endpoint_refuses_inbound_dht_sessions() -> None:
    net = _net()
    client = net.add_endpoint(Endpoint(EndpointConfig(), rng=DeterministicRandom(1)), CLIENT)
    server = net.add_endpoint(Endpoint(EndpointConfig(), rng=DeterministicRandom(2)), SERVER)
    session = client.connect(SERVER, server.identity.node_id, 0.0, Purpose.DHT)
    net.run(2.0)
    ends = [e for e in iter(session.next_event, None) if isinstance(e, SessionTerminated)]
    assert len(ends) == 1 and ends[0].by_peer and ends[0].error_code == SESSION_LIMIT_CODE
    assert "no service" in ends[0].reason
    assert server.next_event() is None  # never offered to accept()
    stats = server.get_stats()
    assert stats.sessions_open == 0 and stats.handshakes_failed == 1 and stats.dht == {}
    # an application session still goes through
    app = client.connect(SERVER, server.identity.node_id, net.now)
    assert net.run_until(lambda: app.confirmed, 2.0)
    assert server.next_event() is not None


def test_the_node_serves_dht_sessions_and_keeps_them_from_the_application() -> None:
    net = _net()
    client = net.add_endpoint(Node(EndpointConfig(), rng=DeterministicRandom(1)), CLIENT)
    server = net.add_endpoint(Node(EndpointConfig(), rng=DeterministicRandom(2)), SERVER)
    client.dht.port = server.dht.port = 4000
    op = client.dht.bootstrap([Contact(server.identity.node_id, SERVER)], 0.0)
    assert net.run_until(lambda: op.done, 5.0) and op.error is None
    assert len(client.sessions) == 1 and len(server.sessions) == 1
    (dht_session,) = server.sessions.values()
    assert dht_session.purpose is Purpose.DHT
    assert server.next_event() is None
    assert server.take_touched() == []  # the links read the DHT's sessions, not the runtime
    assert server.get_stats().dht["dht_sessions"] == 1
    assert server.get_stats().dht["dht_requests_served"] >= 1
    # the endpoint underneath sees every session it ran, whatever its purpose
    dht_session.close(0, "done", net.now)
    net.flush()
    assert dht_session in server.endpoint.take_touched()


def test_the_node_folds_the_dht_deadline_into_its_timer() -> None:
    """The runtime arms one timer, the node's: it must cover the DHT's deadlines (an RPC's
    timeout here), which the endpoint alone knows nothing of."""
    node = Node(EndpointConfig(), rng=DeterministicRandom(1), dht_config=DHTConfig(rpc_timeout=1.0))
    assert node.get_timer() is None
    op = node.dht.bootstrap([Contact(bytes(range(32)), ("10.0.0.9", 4000))], 0.0)
    assert node.endpoint.get_timer() is None  # no session yet: the DHT's deadline only
    timer = node.get_timer()
    assert timer == node.dht.get_timer() == 1.0
    node.handle_timer(timer)
    assert op.done and isinstance(op.error, DHTError)
