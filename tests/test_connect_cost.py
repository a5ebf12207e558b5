"""What a connect costs the runtime besides the handshake (issue 25, handshakes/s): no second
task for its timeout, and the loopback check of its addresses parsed once per pair."""

from __future__ import annotations

import asyncio
import ipaddress
import os
from typing import Any

import pytest

from stt_asyncio import STTNode
from stt_proto import HandshakeTimeout, UsageError
from stt_runtime import node_core


def test_connect_with_a_timeout_makes_no_second_task() -> None:
    """asyncio.wait_for wrapped each connect in a Task of its own (Python 3.11); a deadline on
    the caller's task does the same without one."""

    async def main() -> None:
        async with STTNode(handshake_timeout=5.0) as server, STTNode() as client:
            made: list[Any] = []
            loop = asyncio.get_running_loop()
            factory = loop.get_task_factory()

            def counting(loop: asyncio.AbstractEventLoop, coro: Any, **kwargs: Any) -> Any:
                made.append(coro)
                if factory is not None:
                    return factory(loop, coro, **kwargs)
                return asyncio.Task(coro, loop=loop, **kwargs)

            loop.set_task_factory(counting)
            try:
                session = await client.connect(server.address, server.node_id, timeout=5.0)
            finally:
                loop.set_task_factory(factory)
            assert session.peer_id == server.node_id
            assert [getattr(c, "__qualname__", "") for c in made
                    if "wait_confirmed" in getattr(c, "__qualname__", "")] == []

    asyncio.run(main())


def test_dial_check_parses_a_pair_once(monkeypatch: pytest.MonkeyPatch) -> None:
    node_core._check_dial.cache_clear()
    calls = 0
    original = ipaddress.ip_address

    def counted(address: Any) -> Any:
        nonlocal calls
        calls += 1
        return original(address)

    monkeypatch.setattr(ipaddress, "ip_address", counted)
    for _ in range(50):
        node_core._check_dial("127.0.0.1", "127.0.0.2")
    assert calls == 2  # the bind host and the peer, once
    for _ in range(3):  # a refusal is never cached: it raises every time
        with pytest.raises(UsageError, match="loopback"):
            node_core._check_dial("127.0.0.1", "192.0.2.1")
    node_core._check_dial.cache_clear()


def test_connect_timeout_still_raises_handshake_timeout() -> None:
    async def main() -> None:
        async with STTNode(handshake_timeout=5.0) as client:
            with pytest.raises(HandshakeTimeout, match=r"within 0\.2 s"):
                await client.connect(("127.0.0.1", 9), os.urandom(32), timeout=0.2)

    asyncio.run(main())
