"""``stt bench`` against a real peer (``--serve`` / ``--to``), ``--json`` on every form, and a
bench server that hostile requests do not stop. Everything on loopback, short durations."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from click.testing import CliRunner

from stt_bench.remote.serve import BenchProtocolError, parse_request
from stt_cli.main import main

pytestmark = pytest.mark.filterwarnings("ignore:the kernel granted:RuntimeWarning")
ENV = {**os.environ, "PYTHONWARNINGS": "ignore::RuntimeWarning", "COLUMNS": "200"}


def _start(*args: str) -> tuple[subprocess.Popen[str], list[str]]:
    """``stt bench --serve ARGS`` in a subprocess, and its first stdout lines."""
    process = subprocess.Popen([sys.executable, "-m", "stt_cli", "bench", "--serve",
                                "--host", "127.0.0.1", *args],
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                               env=ENV)
    assert process.stdout is not None
    lines = [process.stdout.readline().strip()]
    if "--json" not in args:
        lines += [process.stdout.readline().strip() for _ in range(2 - ("--no-raw" in args))]
    return process, lines


def _stop(process: subprocess.Popen[str]) -> None:
    process.kill()
    process.wait()
    if process.stdout is not None:
        process.stdout.close()


@pytest.fixture(scope="module")
def server() -> Iterator[dict[str, Any]]:
    process, lines = _start()
    try:
        assert lines[0].startswith("listening on 127.0.0.1:"), lines
        assert lines[1].startswith("node id "), lines
        assert lines[2].startswith("raw UDP baseline on port "), lines
        host, port = lines[0].split()[-1].rsplit(":", 1)
        yield {"to": f"{host}:{port}", "address": (host, int(port)),
               "peer_id": lines[1].split()[-1], "raw_port": int(lines[2].split()[-1]),
               "process": process}
    finally:
        _stop(process)


def _client(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "stt_cli", "bench", *args],
                          capture_output=True, text=True, env=ENV, timeout=timeout)


def test_remote_json_has_goodput_both_ways_latency_and_raw_baselines(
        server: dict[str, Any]) -> None:
    result = _client("--to", server["to"], "--peer-id", server["peer_id"], "--json",
                     "--seconds", "0.5", "--count", "50")
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)  # nothing but the JSON on stdout
    assert doc["kind"] == "all" and doc["peer"]["peer_id"] == server["peer_id"]
    rows = {row["direction"]: row for row in doc["goodput"]}
    assert set(rows) == {"up", "down"}
    for row in rows.values():
        assert row["frame_size"] == 16384
        assert row["stt_bytes_per_s"] > 0 and row["raw_bytes_per_s"] > 0
        assert row["ratio"] == pytest.approx(row["stt_bytes_per_s"] / row["raw_bytes_per_s"])
    latency = doc["latency"]
    assert latency["count"] == 50
    assert 0 < latency["stt"]["p50_us"] <= latency["stt"]["p99_us"]
    assert 0 < latency["raw"]["p50_us"] <= latency["raw"]["p99_us"]
    assert doc["raw_note"] is None


def test_remote_tables_on_trio(server: dict[str, Any]) -> None:
    result = CliRunner().invoke(main, ["bench", "--to", server["to"], "--peer-id",
                                       server["peer_id"], "--seconds", "0.3", "--count", "20",
                                       "--runtime", "trio"])
    assert result.exit_code == 0, result.output
    words = " ".join(result.output.split())
    assert f"Goodput with {server['to']} (trio" in words
    assert f"Ping-pong with {server['to']} (trio" in words
    assert "up" in words and "down" in words and "ratio" in words


def test_remote_sessions(server: dict[str, Any]) -> None:
    result = CliRunner().invoke(main, ["bench", "sessions", "--to", server["to"], "--peer-id",
                                       server["peer_id"], "--count", "20", "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["sessions"]["sessions"] == 20 and doc["sessions"]["handshakes_per_s"] > 0


def test_a_wrong_peer_id_is_a_one_line_error(server: dict[str, Any]) -> None:
    result = _client("--to", server["to"], "--peer-id", "ab" * 32, "--json", timeout=60)
    assert result.returncode == 1
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert server["peer_id"] in lines[0] and "ab" * 32 in lines[0]  # both ids named


@pytest.mark.parametrize("args", [["--to", "127.0.0.1:1"],  # no --peer-id
                                  ["--serve", "core"],
                                  ["--serve", "--to", "127.0.0.1:1", "--peer-id", "ab" * 32],
                                  ["--to", "127.0.0.1:1", "--peer-id", "abc"],
                                  ["--to", "nonsense", "--peer-id", "ab" * 32]])
def test_usage_errors_exit_2(args: list[str]) -> None:
    assert CliRunner().invoke(main, ["bench", *args]).exit_code == 2


@pytest.mark.parametrize("ends", ["two processes", "one process"])
def test_local_json_forms(ends: str) -> None:
    extra = ["--one-process"] if ends == "one process" else []
    for args in (["latency", "--count", "20"],
                 ["throughput", "--seconds", "0.1", "--frame-size", "16384"],
                 ["sessions", "--count", "10"],
                 ["core", "--seconds", "0.05", "--frame-size", "1200"]):
        result = CliRunner().invoke(main, ["bench", *args, *extra, "--json"])
        assert result.exit_code == 0, result.output
        doc = json.loads(result.stdout)
        assert doc["kind"] == args[0] and doc["peer"] is None
        assert doc["ends"] == (None if args[0] == "core" else ends)
        if args[0] == "latency":
            assert doc["latency"]["raw"]["p50_us"] > 0 and doc["latency"]["stt"]["p50_us"] > 0
        elif args[0] == "throughput":
            (row,) = doc["goodput"]
            assert row["frame_size"] == 16384 and row["stt_bytes_per_s"] > 0
        elif args[0] == "sessions":
            assert doc["sessions"]["handshakes_per_s"] > 0
        else:
            assert len(doc["packet_protection"]) == 2 and doc["handshakes_per_s"] > 0


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
@pytest.mark.parametrize("flags", [[], ["--heap-tuning"]])
def test_stt_bench_measures_untuned_processes_unless_asked(flags: list[str]) -> None:
    """``stt`` used to tune its heap for every command, ``bench`` included, so its default
    figures came from a tuned process: the user's configuration is untuned. ``--heap-tuning``
    still gives a tuned figure, labelled so (a subprocess each: tuning is process-wide)."""
    env = {k: v for k, v in ENV.items() if not k.startswith("MALLOC_")}
    result = subprocess.run([sys.executable, "-m", "stt_cli", *flags, "bench", "throughput",
                             "--seconds", "0.1", "--frame-size", "16384"],
                            capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    words = " ".join(result.stdout.split())
    assert "two processes" in words
    assert ("heap tuned" in words) is bool(flags) and ("default heap" in words) is not flags


def test_serve_json_without_raw_baseline_and_the_client_says_so() -> None:
    process, (line,) = _start("--json", "--no-raw")
    try:
        announced = json.loads(line)
        assert announced["raw_udp_port"] is None
        result = CliRunner().invoke(main, ["bench", "throughput", "--to",
                                           announced["listening"], "--peer-id",
                                           announced["node_id"], "--seconds", "0.2", "--json"])
        assert result.exit_code == 0, result.output
        doc = json.loads(result.stdout)
        assert all(row["raw_bytes_per_s"] is None and row["ratio"] is None
                   and row["stt_bytes_per_s"] > 0 for row in doc["goodput"])
        assert "no raw UDP baseline" in doc["raw_note"]
    finally:
        _stop(process)


def test_parse_request_rejects_what_is_not_a_request() -> None:
    for data in (b"\xff\xfe", b"[1, 2]", b'{"op": 3}', b"{}", b"x" * 5000, b"nul"):
        with pytest.raises(BenchProtocolError):
            parse_request(data)
    assert parse_request(b'{"op": "hello"}') == {"op": "hello"}


async def _hostile(server: dict[str, Any]) -> list[Any]:
    """Bad requests on one session, garbage on the raw port, an unproven raw blast request:
    each answered with an error; then a hello still works on a new session."""
    from stt_asyncio import STTNode

    replies: list[Any] = []
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    for junk in (b"", b"H", b"H" * 48, b"P" * 9, os.urandom(1500), b"C" * 33):
        sock.sendto(junk, ("127.0.0.1", server["raw_port"]))
    sock.close()
    peer_id = bytes.fromhex(server["peer_id"])
    async with STTNode(host="127.0.0.1") as node:
        session = await node.connect(server["address"], peer_id, timeout=10)
        for request in (b"not json", b'{"op": "nope"}', b'{"op": "source", "seconds": 1e9, '
                        b'"frame_size": 16384}', b'{"op": "source", "seconds": 1, '
                        b'"frame_size": 5}', b'{"op": "raw", "token": "zz", "key": ""}'):
            stream = session.open_stream()
            await stream.send(request)
            replies.append(json.loads(await asyncio.wait_for(stream.receive(), 10)))
        stream = session.open_stream()  # raw registration, never proven
        await stream.send(json.dumps({"op": "raw", "token": "00" * 16,
                                      "key": "11" * 32}).encode())
        replies.append(json.loads(await asyncio.wait_for(stream.receive(), 10)))
        await stream.send(b'{"op": "source", "seconds": 1, "frame_size": 1200}')
        replies.append(json.loads(await asyncio.wait_for(stream.receive(), 10)))
        await stream.send(b'{"op": "prove", "nonce": "' + b"00" * 16 + b'"}')
        replies.append(json.loads(await asyncio.wait_for(stream.receive(), 10)))
        await session.close()
        session = await node.connect(server["address"], peer_id, timeout=10)
        stream = session.open_stream()
        await stream.send(b'{"op": "hello"}')
        replies.append(json.loads(await asyncio.wait_for(stream.receive(), 10)))
    return replies


def test_the_server_answers_hostile_requests_with_errors_and_keeps_serving(
        server: dict[str, Any]) -> None:
    replies = asyncio.run(_hostile(server))
    assert [sorted(reply) for reply in replies[:5]] == [["error"]] * 5
    assert "seconds" in replies[2]["error"] and "frame_size" in replies[3]["error"]
    assert replies[5] == {"port": server["raw_port"]}
    assert "not proven" in replies[6]["error"]  # no blast to an address nobody proved
    assert "nonce" in replies[7]["error"]
    assert replies[8]["raw_udp_port"] == server["raw_port"] and replies[8]["version"] == 1
    assert server["process"].poll() is None


async def _in_process(server: Any, kind: str) -> dict[str, Any]:
    """``run_remote`` from one node against ``server`` (a BenchServer) on another, both here."""
    from stt_asyncio import STTNode
    from stt_bench.remote.client import run_remote

    async with STTNode(host="127.0.0.1", no_delay=True) as far, \
            STTNode(host="127.0.0.1") as near:
        serving = asyncio.ensure_future(far.serve(server.handle_session))
        try:
            return await run_remote(near, far.address, far.node_id, kind, (16384,), 0.2, 5,
                                    True, lambda text: None)
        finally:
            serving.cancel()
            await asyncio.gather(serving, return_exceptions=True)


def test_an_unreachable_raw_port_leaves_the_raw_figures_out_with_a_note() -> None:
    from stt_bench.remote.serve import BenchServer, open_raw_socket

    sock = open_raw_socket("127.0.0.1", 0)
    server = BenchServer(sock)  # announces the port, but nothing will ever answer on it
    sock.close()
    doc = asyncio.run(_in_process(server, "latency"))
    assert doc["latency"]["stt"]["p50_us"] > 0
    assert doc["latency"]["raw"] is None and doc["latency"]["ratio"] is None
    assert doc["raw_note"].startswith("raw UDP baseline left out")


def test_a_server_that_stops_answering_is_a_one_line_error(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import stt_bench.remote.client as client
    from stt_bench.remote.serve import BenchServer

    class Silent(BenchServer):
        async def dispatch(self, session: Any, stream: Any, request: dict[str, Any]) -> None:
            if request["op"] == "echo":
                await asyncio.sleep(3600)  # reads the request, never echoes
            await super().dispatch(session, stream, request)

    monkeypatch.setattr(client, "REPLY_TIMEOUT", 0.5)
    with pytest.raises(client.RemoteError, match="stopped answering during the STT ping-pong"):
        asyncio.run(_in_process(Silent(None), "latency"))


@pytest.mark.parametrize("grouped", [False, True])
def test_a_refusal_from_the_bench_server_is_stts_one_line_failure(
        monkeypatch: pytest.MonkeyPatch, grouped: bool) -> None:
    """stt_bench does not import the command-line tool, so its RemoteError is no CLIError: the
    command turns it into one (also when a task group wraps it), not an "internal error"."""
    import stt_bench.remote.client as client

    async def refused(*args: Any) -> dict[str, Any]:
        error = client.RemoteError("the bench server refused: no more [bold]room")
        if grouped:
            raise ExceptionGroup("a task group", [error])
        raise error

    monkeypatch.setattr(client, "run_remote", refused)
    result = CliRunner().invoke(main, ["bench", "--to", "127.0.0.1:9", "--peer-id", "ab" * 32])
    assert result.exit_code == 1
    assert result.output.strip() == "stt: the bench server refused: no more [bold]room"


def test_an_interrupt_beside_a_refusal_stays_an_interrupt() -> None:
    from stt_bench.remote.client import RemoteError
    from stt_cli.bench_command import _remote_failure

    refusal = RemoteError("refused")
    assert _remote_failure(refusal, RemoteError) is refusal
    assert _remote_failure(ExceptionGroup("g", [refusal, ValueError()]), RemoteError) is refusal
    assert _remote_failure(ValueError("x"), RemoteError) is None
    assert _remote_failure(BaseExceptionGroup("g", [refusal, KeyboardInterrupt()]),
                           RemoteError) is None
