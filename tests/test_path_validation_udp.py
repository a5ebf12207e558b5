"""Path validation over real loopback UDP with the asyncio runtime: a relay plays the client's
NAT. A copy of an authenticated packet sent first from a third socket gets that socket only
challenges; a rebinding of the relay's outside port mid-transfer is followed."""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import Callable

import pytest

from stt_asyncio import Session, STTNode
from stt_proto.packet import DATA_KEY_PHASE
from stt_proto.path import AMPLIFICATION_FACTOR, CHALLENGES_PER_ATTEMPT

pytestmark = pytest.mark.filterwarnings("ignore:the kernel granted:RuntimeWarning")

Address = tuple[str, int]
MESSAGES = [os.urandom(64 * 1024) for _ in range(64)]  # 4 MiB, sent by the server


class _Socket(asyncio.DatagramProtocol):
    def __init__(self, on_datagram: Callable[[bytes, Address], None]) -> None:
        self.on_datagram = on_datagram
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: Address) -> None:
        self.on_datagram(data, addr)

    def send(self, data: bytes, addr: Address) -> None:
        assert self.transport is not None
        self.transport.sendto(data, addr)

    @property
    def address(self) -> Address:
        assert self.transport is not None
        host, port = self.transport.get_extra_info("sockname")[:2]
        return host, port


async def _bind(on_datagram: Callable[[bytes, Address], None]) -> _Socket:
    loop = asyncio.get_running_loop()
    _, protocol = await loop.create_datagram_endpoint(
        lambda: _Socket(on_datagram), local_addr=("127.0.0.1", 0))
    return protocol


class _Nat:
    """The client talks to ``inside``; the server sees the client at ``outside``. After
    :meth:`rebind` a new outside port is used, and the old one drops what reaches it."""

    def __init__(self, server: Address) -> None:
        self.server = server
        self.client: Address | None = None
        self.from_client: Callable[[bytes], None] | None = None  # an attacker's hook
        self.sockets: list[_Socket] = []

    async def start(self) -> None:
        self.inside = await _bind(self._on_inside)
        await self.rebind()

    async def rebind(self) -> None:
        mapping = len(self.sockets)
        self.outside = await _bind(lambda data, addr: self._on_outside(data, addr, mapping))
        self.sockets.append(self.outside)

    def _on_inside(self, data: bytes, addr: Address) -> None:
        self.client = addr
        if self.from_client is not None:
            self.from_client(data)
        self.outside.send(data, self.server)

    def _on_outside(self, data: bytes, addr: Address, mapping: int) -> None:
        if self.client is not None and addr == self.server and mapping == len(self.sockets) - 1:
            self.inside.send(data, self.client)  # an old mapping's traffic is lost

    def close(self) -> None:
        for sock in [self.inside, *self.sockets]:
            if sock.transport is not None:
                sock.transport.close()


async def _transfer(server: STTNode, client: STTNode, nat: _Nat,
                    midway: Callable[[], object]) -> Session:
    """The server sends MESSAGES to the client through the NAT; ``midway`` runs after a
    quarter of them has arrived. Returns the server's session."""
    async def serve() -> Session:
        session = await server.accept()
        stream = session.open_stream()
        for message in MESSAGES:
            await stream.send(message)
        await stream.close()
        await stream.flush()
        return session

    server_task = asyncio.create_task(serve())
    session = await client.connect(nat.inside.address, server.node_id)
    stream = await session.accept_stream()
    digest = hashlib.sha256()
    count = 0
    async for message in stream:
        digest.update(message)
        count += 1
        if count == len(MESSAGES) // 4:
            result = midway()
            if asyncio.iscoroutine(result):
                await result
    assert digest.hexdigest() == hashlib.sha256(b"".join(MESSAGES)).hexdigest()
    return await server_task


def test_a_copy_from_another_socket_gets_it_only_challenges() -> None:
    async def main() -> None:
        victim_got: list[bytes] = []
        victim = await _bind(lambda data, addr: victim_got.append(data))
        copied: list[bytes] = []
        async with STTNode() as server, STTNode() as client:
            nat = _Nat(("127.0.0.1", server.address[1]))
            await nat.start()

            def copy_next(data: bytes) -> None:
                if not copied and DATA_KEY_PHASE.get(data[1]) is not None:
                    copied.append(data)
                    victim.send(data, nat.server)  # reaches the server before the original

            def arm() -> None:
                nat.from_client = copy_next

            try:
                server_session = await _transfer(server, client, nat, arm)
                await asyncio.sleep(1.5)  # past the validation's deadline
                stats = server_session.get_stats()
                assert server_session.remote_address == nat.outside.address
            finally:
                nat.close()
                assert victim.transport is not None
                victim.transport.close()
        assert len(copied) == 1
        assert 1 <= len(victim_got) <= CHALLENGES_PER_ATTEMPT
        assert sum(map(len, victim_got)) <= AMPLIFICATION_FACTOR * len(copied[0])
        assert stats.paths_validated == 0 and stats.path_validations_failed == 1

    asyncio.run(asyncio.wait_for(main(), 60))


def test_a_rebinding_mid_transfer_is_followed() -> None:
    async def main() -> None:
        async with STTNode() as server, STTNode() as client:
            nat = _Nat(("127.0.0.1", server.address[1]))
            await nat.start()
            first = nat.outside
            try:
                server_session = await _transfer(server, client, nat, nat.rebind)
                stats = server_session.get_stats()
                moved_to = server_session.remote_address
            finally:
                nat.close()
        assert moved_to == nat.outside.address != first.address
        assert stats.paths_validated == 1

    asyncio.run(asyncio.wait_for(main(), 60))
