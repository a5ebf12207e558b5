"""Every Python sample of the manual's performance chapter (docs/manual/), run as typed.

The samples are fragments of a user's program: they use ``node``, ``session`` and ``stream``
from the text around them. This harness supplies those (a node connected to a peer in another
process), executes each block unchanged with top-level ``await`` allowed (as ``python -m asyncio``
does), then calls the functions the chapter defines, the way the chapter describes.
"""

from __future__ import annotations

import ast
import inspect
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import anyio
import pytest

import seigr_toolset_transmissions
import stt_proto

from .conftest import Peer
from .runtimes import Runtime

MANUAL = Path(__file__).resolve().parents[2] / "docs" / "manual"
CHAPTER = MANUAL / "performance-and-optimization.md"
BLOCKS = [code for lang, code in re.findall(r"```(\w+)\n(.*?)```", CHAPTER.read_text(), re.S)
          if lang == "python"]
# Two samples change the whole process (uvloop.install) or start their own loop (cProfile with
# asyncio.run): they run in tests of their own below.
PROCESS_WIDE = ("uvloop.install()", "cProfile.run(")


async def _execute(code: str, namespace: dict[str, Any]) -> None:
    compiled = compile(code, "<chapter sample>", "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
    result = eval(compiled, namespace)
    if inspect.iscoroutine(result):
        await result


def test_the_chapter_has_its_samples() -> None:
    assert len(BLOCKS) == 18
    assert sum(any(mark in block for mark in PROCESS_WIDE) for block in BLOCKS) == 2


def test_every_sample_runs_as_typed(rt: Runtime, peer: Peer,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    async def body(rt: Runtime) -> None:
        client = rt.node(host="127.0.0.1")
        await client.start()
        nodes = [client]
        session = await client.connect(peer.address, peer.node_id)
        namespace: dict[str, Any] = {
            "STTNode": rt.package.STTNode, "node": client, "session": session,
            "peer_addr": peer.address, "peer_id": peer.node_id,
            "stc": seigr_toolset_transmissions.stc, "PoolMissError": stt_proto.PoolMissError,
            "initial_content": b"chapter one", "related_content": b"chapter two",
            "large_dataset": [os.urandom(2048) for _ in range(3)],
        }
        try:
            with anyio.fail_after(60):
                for code in BLOCKS:
                    if any(mark in code for mark in PROCESS_WIDE):
                        continue
                    before = namespace.get("node")
                    await _execute(code, namespace)
                    if namespace.get("node") is not before:  # a sample built a node: use it
                        await namespace["node"].start()
                        nodes.append(namespace["node"])
                # The functions the chapter defines, called as it describes.
                echo = session.open_stream()
                for index in range(10):
                    await echo.send(b"batch %d" % index)
                batch = await namespace["receive_batch"](echo)
                assert batch == [b"batch %d" % index for index in range(10)]
                await namespace["benchmark_throughput"](session, data_size=8 * 1024 * 1024)
                await namespace["benchmark_latency"](session, iterations=50)
        finally:
            for node in nodes:
                await node.close()

    rt.run(body)
    printed = capsys.readouterr().out
    for line in ("Bytes sent:", "RTT:", "Loss rate:", "Throughput:", "P99 latency:"):
        assert line in printed


def test_the_uvloop_sample_installs_uvloop(tmp_path: Path) -> None:
    pytest.importorskip("uvloop")
    sample = next(block for block in BLOCKS if "uvloop.install()" in block)
    program = sample + textwrap.dedent("""
        import asyncio

        async def loop_name():
            return type(asyncio.get_running_loop()).__module__

        print(asyncio.run(loop_name()))
    """)
    out = subprocess.run([sys.executable, "-W", "ignore::DeprecationWarning", "-c", program],
                         capture_output=True, text=True, timeout=60, check=True).stdout
    assert out.strip().startswith("uvloop")


def test_the_profiling_sample_profiles_an_stt_program(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    import asyncio

    from stt_asyncio import STTNode

    sample = next(block for block in BLOCKS if "cProfile.run(" in block)
    define, analyse = sample.split("# Analyze")

    async def my_stt_function() -> None:
        async with STTNode(host="127.0.0.1") as server, STTNode(host="127.0.0.1") as client:
            session = await client.connect(server.address, server.node_id)
            stream = session.open_stream()
            await stream.send(b"profiled")
            incoming = await (await server.accept()).accept_stream()
            assert await incoming.receive() == b"profiled"

    monkeypatch.chdir(tmp_path)
    # cProfile.run evaluates its string in __main__, where a user's script defines these.
    main = sys.modules["__main__"]
    monkeypatch.setattr(main, "asyncio", asyncio, raising=False)
    monkeypatch.setattr(main, "my_stt_function", my_stt_function, raising=False)
    namespace: dict[str, Any] = {}
    exec(define, namespace)
    namespace["profile_session"]()  # what the chapter runs before "Analyze"
    exec(analyse, namespace)
    assert (tmp_path / "profile_stats").exists()
    report = capsys.readouterr().out
    assert "function calls" in report and "stt_asyncio" in report  # it profiled STT
