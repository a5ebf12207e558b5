"""A poll that sends several batches gives each batch the clock's time when it is built, so a
packet's send time (and the RTT sample taken from it) does not include the batches before it."""

from __future__ import annotations

import asyncio
from typing import Any

from stt_asyncio import STTNode


class BatchesEndpoint:
    """Stands in for the endpoint in ``_poll``: three full batches, then a short one."""

    def __init__(self, address: tuple[str, int]) -> None:
        self.address = address
        self.nows: list[float] = []

    def get_timer(self) -> float | None:
        return None

    def datagrams_to_send(self, now: float, limit: int) -> list[tuple[bytes, Any]]:
        self.nows.append(now)
        count = limit if len(self.nows) <= 3 else 1
        return [(b"x", self.address)] * count


def test_each_batch_of_a_poll_is_built_at_its_own_time() -> None:
    async def main() -> list[float]:
        async with STTNode(host="127.0.0.1") as node, STTNode(host="127.0.0.1") as sink:
            ticks = iter(float(n) for n in range(100))
            node._now = lambda: next(ticks)  # type: ignore[method-assign]
            fake = BatchesEndpoint(sink.address)
            node._poll(fake, False)  # type: ignore[arg-type]
            return fake.nows

    nows = asyncio.run(main())
    assert len(nows) == 4  # three full batches of SEND_BATCH, then the short one
    assert nows == sorted(set(nows)), "a later batch reused an earlier batch's time"
