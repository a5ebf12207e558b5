"""docs/api.md's DHT, content-affinity pool, psk, WebSocket and serve() promises, in every
runtime."""

from __future__ import annotations

import os
from typing import Any

import anyio
import pytest

from stt_proto import (
    ContentAffinityPool,
    HandshakeError,
    PoolMissError,
    SessionClosed,
    hash_data,
)

from .runtimes import Runtime

TIMEOUT = 20


def test_dht_put_get_and_get_all(rt: Runtime) -> None:
    async def body(rt: Runtime) -> None:
        async with rt.node(host="127.0.0.1") as a, rt.node(host="127.0.0.1") as b, \
                rt.node(host="127.0.0.1") as c:
            with anyio.fail_after(TIMEOUT):
                for node in (b, c):
                    await node.dht.bootstrap([(*a.address, a.node_id)])
                key = hash_data(b"shared key")
                await b.dht.put(key, b"from b")
                await anyio.sleep(0.01)  # a later put by another publisher
                await c.dht.put(key, b"from c")
                assert await a.dht.get(key) == b"from c"  # the freshest publisher's value
                records = await a.dht.get_all(key)
                assert {(r.publisher, r.value) for r in records} == {
                    (b.node_id, b"from b"), (c.node_id, b"from c")}
                assert await a.dht.get(key, publisher=b.node_id) == b"from b"
                assert await a.dht.get(hash_data(b"nobody put this")) is None
                found = await b.dht.find_node(c.node_id)
                assert c.node_id in {contact.node_id for contact in found}
                assert len(b.dht.routing_table) >= 1

    rt.run(body)


def test_the_content_affinity_pool(rt: Runtime) -> None:
    async def body(rt: Runtime) -> None:
        async with rt.node(host="127.0.0.1") as server, rt.node(host="127.0.0.1") as client:
            pool = ContentAffinityPool(dht=client.dht, max_pool_size=2)
            content = hash_data(b"movie.mkv")
            with pytest.raises(PoolMissError):
                pool.get_session_for_content(content)
            session = await client.connect(server.address, server.node_id)
            pool.add_session(session, content)
            assert pool.get_session_for_content(content) is session
            await session.close()
            with pytest.raises(PoolMissError):  # closed sessions leave the pool
                pool.get_session_for_content(content)

    rt.run(body)


def test_a_psk_closes_the_network(rt: Runtime) -> None:
    async def body(rt: Runtime) -> None:
        psk = os.urandom(32)
        async with rt.node(host="127.0.0.1", psk=psk) as server, \
                rt.node(host="127.0.0.1", psk=psk) as member, \
                rt.node(host="127.0.0.1", psk=os.urandom(32)) as stranger, \
                rt.node(host="127.0.0.1") as outsider:
            with anyio.fail_after(TIMEOUT):
                session = await member.connect(server.address, server.node_id)
                assert not session.is_closed
                for node in (stranger, outsider):
                    with pytest.raises(HandshakeError):
                        await node.connect(server.address, server.node_id, timeout=5)

    rt.run(body)


def test_websocket_transport_carries_the_same_api(rt: Runtime) -> None:
    async def body(rt: Runtime) -> None:
        async with rt.node(host="127.0.0.1", transport="websocket") as server, \
                rt.node(host="127.0.0.1", transport="websocket") as client:
            with anyio.fail_after(TIMEOUT):
                session = await client.connect(server.address, server.node_id)
                stream = session.open_stream()
                await stream.send(b"over websocket")
                peer = await server.accept()
                assert await (await peer.accept_stream()).receive() == b"over websocket"

    rt.run(body)


def test_a_failing_serve_handler_closes_its_session(rt: Runtime) -> None:
    async def body(rt: Runtime) -> None:
        async def handler(session: Any) -> None:
            raise RuntimeError("the handler broke")

        async with rt.node(host="127.0.0.1") as server, rt.node(host="127.0.0.1") as client, \
                anyio.create_task_group() as group:
            group.start_soon(server.serve, handler)
            with anyio.fail_after(TIMEOUT):
                session = await client.connect(server.address, server.node_id)
                with pytest.raises(SessionClosed) as closed:
                    await session.accept_stream()
            assert closed.value.error_code != 0 and "RuntimeError" in closed.value.reason
            group.cancel_scope.cancel()

    rt.run(body)
