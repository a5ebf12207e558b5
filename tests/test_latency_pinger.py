"""The headline ping-pong measures the round trip, not its own timeout: the pinger's loop makes
no task (asyncio) and no cancel scope (trio) per round trip, for STT as for raw UDP. Before,
``asyncio.wait_for(stream.receive(), 5)`` wrapped every STT receive in a new task on Python
3.11 (raw UDP's future got none), and trio opened a ``fail_after`` scope per round trip."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import trio

from stt_bench.workloads import ends_asyncio, ends_trio

pytestmark = pytest.mark.filterwarnings("ignore:the kernel granted:RuntimeWarning")
ROUNDS = 60


def _capture(module: Any, monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    lines: list[dict[str, Any]] = []
    monkeypatch.setattr(module, "emit", lines.append)
    return lines


@pytest.mark.parametrize("kind", ["raw", "stt"])
def test_asyncio_pinger_makes_no_task_per_round_trip(
        kind: str, monkeypatch: pytest.MonkeyPatch) -> None:
    lines = _capture(ends_asyncio, monkeypatch)

    async def main() -> int:
        loop = asyncio.get_running_loop()
        done = asyncio.Event()

        async def line() -> str:
            await done.wait()
            return ""

        monkeypatch.setattr(ends_asyncio, "_line", line)
        spec = {"kind": kind, "settings": {}, "count": ROUNDS}
        echo = asyncio.create_task(ends_asyncio.echo(dict(spec)))
        while not lines:
            await asyncio.sleep(0.01)
        ready = lines.pop()
        created = [0]

        def factory(loop: asyncio.AbstractEventLoop, coro: Any) -> asyncio.Task[Any]:
            created[0] += 1
            return asyncio.Task(coro, loop=loop)

        loop.set_task_factory(factory)  # type: ignore[arg-type]
        await ends_asyncio.pinger({**spec, **ready})
        loop.set_task_factory(None)
        done.set()
        await echo
        return created[0]

    created = asyncio.run(main())
    assert len(lines[-1]["times"]) == ROUNDS
    # the node's own tasks (connect, close) but nothing per round trip (was ROUNDS + a few)
    assert created < ROUNDS // 4


@pytest.mark.parametrize("kind", ["raw", "stt"])
def test_trio_pinger_opens_no_cancel_scope_per_round_trip(
        kind: str, monkeypatch: pytest.MonkeyPatch) -> None:
    lines = _capture(ends_trio, monkeypatch)
    opened = [0]
    original = trio.fail_after

    def counted(seconds: float) -> Any:
        opened[0] += 1
        return original(seconds)

    async def main() -> None:
        done = trio.Event()

        async def line() -> str:
            await done.wait()
            return ""

        monkeypatch.setattr(ends_trio, "_line", line)
        spec = {"kind": kind, "settings": {}, "count": ROUNDS}
        async with trio.open_nursery() as nursery:
            nursery.start_soon(ends_trio.echo, dict(spec))
            while not lines:
                await trio.sleep(0.01)
            ready = lines.pop()
            monkeypatch.setattr(trio, "fail_after", counted)
            await ends_trio.pinger({**spec, **ready})
            monkeypatch.setattr(trio, "fail_after", original)
            done.set()

    trio.run(main)
    assert len(lines[-1]["times"]) == ROUNDS
    assert opened[0] <= 1  # one for the whole run (was one per round trip)
