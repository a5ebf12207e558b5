"""The stt command line."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import stt_proto
from stt_cli.main import main
from stt_proto import Identity

pytestmark = pytest.mark.filterwarnings("ignore:the kernel granted:RuntimeWarning")


def test_keygen_writes_a_private_identity(tmp_path: Path) -> None:
    path = tmp_path / "node.key"
    result = CliRunner().invoke(main, ["keygen", str(path)])
    assert result.exit_code == 0, result.output
    assert Identity.load(path).node_id.hex() in result.output
    again = CliRunner().invoke(main, ["keygen", str(path)])
    assert again.exit_code != 0 and "--force" in again.output


# the core benchmark runs no event loop: once is enough
BENCH_CASES = [(kind, runtime) for kind in ("throughput", "latency", "sessions")
               for runtime in ("asyncio", "uvloop", "trio")] + [("core", "asyncio")]


@pytest.mark.parametrize(("kind", "runtime"), BENCH_CASES)
def test_bench_runs_and_prints_ratios(kind: str, runtime: str) -> None:
    if runtime == "uvloop":
        pytest.importorskip("uvloop")
    args = ["bench", kind, "--seconds", "0.2", "--frame-size", "16384", "--count", "50",
            "--runtime", runtime]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    if kind != "core":
        assert runtime in result.output
    if kind in ("throughput", "latency"):  # and the title says which core ran
        words = " ".join(result.output.split())  # the title may wrap
        assert ("compiled core" if stt_proto.COMPILED else "pure-Python core") in words
    if kind in ("throughput", "latency", "core"):
        assert "ratio" in result.output
    else:
        assert "/s" in result.output


@pytest.mark.parametrize("preset", ["low_latency", "balanced", "high_throughput"])
def test_bench_with_a_preset_measures_the_presets_frame_size(preset: str) -> None:
    result = CliRunner().invoke(main, ["bench", "throughput", "--seconds", "0.2",
                                       "--preset", preset])
    assert result.exit_code == 0, result.output
    size = {"low_latency": 4096, "balanced": 16384, "high_throughput": 65507}[preset]
    assert str(size) in result.output
    assert preset in result.output


def test_send_and_receive_a_file_through_the_cli(tmp_path: Path) -> None:
    import os

    source = tmp_path / "payload.bin"
    source.write_bytes(os.urandom(3 * 1024 * 1024 + 17))
    out = tmp_path / "out"
    out.mkdir()
    receiver, line = _start_server("receive", "--output", str(out), "--allow-any")
    try:
        words = line.split()
        address, node_id = words[2], words[5]
        result = CliRunner().invoke(main, ["send", str(source), "--to", address,
                                           "--peer-id", node_id])
        assert result.exit_code == 0, result.output
        assert "sha256" in result.output and "throughput" in result.output
        assert receiver.wait(timeout=30) == 0
        assert (out / "payload.bin").read_bytes() == source.read_bytes()
    finally:
        receiver.kill()
        receiver.wait()


def test_listen_with_two_workers_receives_files_and_stops_its_workers(tmp_path: Path) -> None:
    import os
    import signal
    import time

    out = tmp_path / "out"
    out.mkdir()
    listener, line = _start_server("listen", "--workers", "2", "--output", str(out),
                                    "--allow-any")
    try:
        assert "2 worker processes" in line
        words = line.split()
        address, node_id = words[2], words[5]
        workers: list[int] = []
        for _ in range(200):  # the spawned worker, once it has started
            workers = [int(p) for p in os.listdir("/proc") if p.isdigit()
                       and _parent_of(int(p)) == listener.pid]
            if workers:
                break
            time.sleep(0.05)
        assert workers
        time.sleep(1.0)  # let it bind
        sources = []
        for index in range(4):  # new nodes, new source ports: spread over both workers
            source = tmp_path / f"payload{index}.bin"
            source.write_bytes(os.urandom(256 * 1024 + index))
            sources.append(source)
            result = CliRunner().invoke(main, ["send", str(source), "--to", address,
                                               "--peer-id", node_id])
            assert result.exit_code == 0, result.output
        for source in sources:
            for _ in range(100):
                if (out / source.name).exists() and \
                        (out / source.name).stat().st_size == source.stat().st_size:
                    break
                time.sleep(0.05)
            assert (out / source.name).read_bytes() == source.read_bytes()
        listener.send_signal(signal.SIGINT)
        listener.wait(timeout=30)
        for _ in range(100):
            if not any(_parent_of(pid) is not None for pid in workers):
                break
            time.sleep(0.05)
        assert not any(_parent_of(pid) is not None for pid in workers)  # no worker left
    finally:
        listener.kill()
        listener.wait()
        if listener.stdout is not None:
            listener.stdout.close()


def _parent_of(pid: int) -> int | None:
    """The parent pid of a live (not zombie) process, None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return None if fields[0] == "Z" else int(fields[1])


def _start_server(*args: str) -> tuple[Any, str]:
    """``python -m stt_cli ARGS`` in a subprocess, and its "listening on" line."""
    import os
    import subprocess
    import sys

    process = subprocess.Popen([sys.executable, "-m", "stt_cli", *args],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               env={**os.environ, "COLUMNS": "200"})
    assert process.stdout is not None
    line = process.stdout.readline()
    while line and "listening on" not in line:
        line = process.stdout.readline()
    return process, line
