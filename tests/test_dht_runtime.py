"""node.dht and ContentAffinityPool over real loopback sockets, in both runtimes and across
processes (asyncio <-> trio, UDP and WebSocket)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import anyio
import pytest

import stt_anyio
import stt_asyncio
from stt_proto import ContentAffinityPool, DHTError, PoolMissError, UsageError, hash_data
from stt_proto.dht import DHTConfig
from stt_proto.dht.ids import distance

PEER = Path(__file__).with_name("dht_peer.py")
pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")  # small socket buffers


def seed_of(node: Any) -> tuple[str, int, bytes]:
    return ("127.0.0.1", node.address[1], node.node_id)


async def exercise(nodes: list[Any], gather: Any) -> None:
    """Bootstrap a small network, then find_node / put / get from different members."""
    first = nodes[0]
    counts = await gather([n.dht.bootstrap([seed_of(first)]) for n in nodes[1:]])
    assert all(c >= 1 for c in counts)
    assert len(first.dht.routing_table) == len(nodes) - 1
    target = nodes[-1].node_id
    found = await nodes[1].dht.find_node(target)
    assert found[0].node_id == target
    ids = sorted((n.node_id for n in nodes if n is not nodes[1]), key=lambda i: distance(i, target))
    assert [c.node_id for c in found] == ids
    key = hash_data(b"runtime value")
    before_put = int(time.time() * 1000)
    assert await nodes[2].dht.put(key, b"hello dht") == len(nodes)
    assert await nodes[-1].dht.get(key) == b"hello dht"
    # get_all: each publisher's verified record, stamped with its publisher's wall clock
    assert await nodes[3].dht.put(key, b"second publisher") == len(nodes)
    records = await nodes[-1].dht.get_all(key)
    assert [(r.publisher, r.value) for r in records] == [
        (nodes[3].node_id, b"second publisher"), (nodes[2].node_id, b"hello dht")]
    assert before_put <= records[1].timestamp_ms <= records[0].timestamp_ms
    assert records[0].timestamp_ms <= time.time() * 1000
    assert await nodes[1].dht.get(key) == b"second publisher"
    assert await nodes[1].dht.get(key, publisher=nodes[2].node_id) == b"hello dht"
    assert await nodes[1].dht.get_all(hash_data(b"absent")) == []
    assert await nodes[1].dht.get(hash_data(b"absent")) is None
    stats = first.get_stats()
    assert stats["dht_contacts"] == len(nodes) - 1 and stats["dht_records"] == 2
    assert stats["dht_bad_records"] == 0
    assert stats["dht_sessions"] >= 1
    with pytest.raises(UsageError, match="32 bytes"):
        await first.dht.get(b"not a hash")


async def pool_with_real_sessions(client: Any, server: Any, accept: Any) -> None:
    pool = ContentAffinityPool(dht=client.dht, max_pool_size=2)
    first = await client.connect(server.address, server.node_id)
    await accept()
    content = hash_data(b"movie part 1")
    pool.add_session(first, content)
    related = content[:4] + hash_data(b"movie part 2")[4:]  # same cluster
    assert pool.get_session_for_content(related) is first
    with pytest.raises(PoolMissError):
        pool.get_session_for_content(hash_data(b"something else"))
    known = sorted((c.node_id for c in client.dht.routing_table),
                   key=lambda i: distance(i, content))
    assert [c.node_id for c in pool.nearest_peers(content, 2)] == known[:2]
    await first.close()
    with pytest.raises(PoolMissError):
        pool.get_session_for_content(related)
    assert len(pool) == 0


def test_asyncio_dht_and_pool() -> None:
    async def main() -> None:
        nodes = [stt_asyncio.STTNode() for _ in range(6)]
        for node in nodes:
            await node.start()
        try:
            async def gather(coros: list[Any]) -> list[Any]:
                return list(await asyncio.gather(*coros))

            await asyncio.wait_for(exercise(nodes, gather), 30)
            await asyncio.wait_for(pool_with_real_sessions(nodes[0], nodes[1], nodes[1].accept),
                                   10)
            for node in nodes:  # DHT sessions never reach accept()
                assert not node._accepted
        finally:
            for node in nodes:
                await node.close()

    stt_asyncio.run(main())


@pytest.mark.parametrize("backend", ["trio", "asyncio"])
def test_anyio_dht_and_pool(backend: str) -> None:
    async def main() -> None:
        nodes = [stt_anyio.STTNode() for _ in range(5)]
        for node in nodes:
            await node.start()
        try:
            async def gather(coros: list[Any]) -> list[Any]:
                results: list[Any] = [None] * len(coros)

                async def one(i: int, coro: Any) -> None:
                    results[i] = await coro

                async with anyio.create_task_group() as group:
                    for i, coro in enumerate(coros):
                        group.start_soon(one, i, coro)
                return results

            with anyio.fail_after(30):
                await exercise(nodes, gather)
                await pool_with_real_sessions(nodes[0], nodes[1], nodes[1].accept)
        finally:
            for node in reversed(nodes):
                await node.close()

    anyio.run(main, backend=backend)


def test_failures_cancellation_and_close_are_clean() -> None:
    async def main() -> None:
        async with stt_asyncio.STTNode() as node, stt_asyncio.STTNode() as other:
            node._require_endpoint().dht.config = DHTConfig(rpc_timeout=0.3)
            nobody = ("127.0.0.1", 9, hash_data(b"nobody"))  # the discard port: no answer
            with pytest.raises(DHTError, match="none of the seeds"):
                await asyncio.wait_for(node.dht.bootstrap([nobody]), 5)
            wrong_id = ("127.0.0.1", other.address[1], hash_data(b"not its id"))
            with pytest.raises(DHTError):
                await asyncio.wait_for(node.dht.bootstrap([wrong_id]), 5)
            # a cancelled call leaves nothing waiting
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(node.dht.bootstrap([nobody]), 0.05)
            assert not node.dht._waiters
            # a call waiting when the node closes fails clearly
            task = asyncio.create_task(node.dht.bootstrap([nobody]))
            await asyncio.sleep(0.05)
            await node.close()
            with pytest.raises(UsageError):
                await task
            assert await other.dht.get(hash_data(b"x")) is None  # alone: nobody to ask

    stt_asyncio.run(main())


CROSS = [("stt_asyncio", "trio", "udp"), ("trio", "stt_asyncio", "udp"),
         ("stt_asyncio", "trio", "websocket")]


@pytest.mark.parametrize(("client", "peer_kind", "transport"), CROSS)
def test_dht_across_processes_and_runtimes(client: str, peer_kind: str, transport: str) -> None:
    """A value put by one runtime is read by the other, through a peer in another process."""
    peer = subprocess.Popen([sys.executable, str(PEER), peer_kind, transport],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert peer.stdout is not None and peer.stdin is not None
        ready = peer.stdout.readline().split()
        assert ready[0] == "READY", ready
        port, peer_id = int(ready[1]), bytes.fromhex(ready[2])
        key = hash_data(f"{client}-{peer_kind}-{transport}".encode())

        def ask(line: str) -> list[str]:
            assert peer.stdin is not None and peer.stdout is not None
            peer.stdin.write(line + "\n")
            peer.stdin.flush()
            return peer.stdout.readline().split()

        async def body(node: Any) -> None:
            assert await node.dht.bootstrap([("127.0.0.1", port, peer_id)]) == 1
            assert await node.dht.put(key, b"across") == 2
            # the peer reads it (stored at itself), then stores its own and we read that
            assert await anyio.to_thread.run_sync(ask, f"GET {key.hex()}") == \
                ["VALUE", b"across".hex()]
            other = hash_data(key)
            assert await anyio.to_thread.run_sync(
                ask, f"PUT {other.hex()} {b'back'.hex()}") == ["STORED", "2"]
            assert await node.dht.get(other) == b"back"
            # every publisher's record, across runtimes: the peer's and then ours, verified there
            assert await node.dht.put(other, b"mine too") == 2
            assert await anyio.to_thread.run_sync(ask, f"ALL {other.hex()}") == [
                "RECORDS", f"{node.node_id.hex()}:{b'mine too'.hex()}",
                f"{peer_id.hex()}:{b'back'.hex()}"]
            assert [c.node_id for c in await node.dht.find_node(peer_id)] == [peer_id]

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if client == "stt_asyncio":
                async def run_asyncio() -> None:
                    async with stt_asyncio.STTNode(transport=transport) as node:
                        await asyncio.wait_for(body(node), 30)

                stt_asyncio.run(run_asyncio())
            else:
                async def run_trio() -> None:
                    async with stt_anyio.STTNode(transport=transport) as node:
                        with anyio.fail_after(30):
                            await body(node)

                anyio.run(run_trio, backend="trio")
        peer.stdin.close()
        assert peer.wait(timeout=15) == 0
    finally:
        peer.kill()
        peer.wait()
        if peer.stdout is not None:
            peer.stdout.close()
