"""Every error ``stt`` reports is one line naming the cause, with exit 1 (failure), 2 (usage)
or 130 (Ctrl-C, temporary files removed); ``--debug`` shows the traceback. Keys: ``stt id``
and ``stt keygen``'s output."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from stt_proto import Identity
from tests.cli_peer import (
    ENV,
    files_in,
    header,
    key,
    one_line_error,
    raw_sender,
    server,
    stt,
    stt_command,
)

pytestmark = pytest.mark.filterwarnings("ignore:the kernel granted:RuntimeWarning")
PSK_A, PSK_B = "11" * 32, "22" * 32


@pytest.fixture
def payload(tmp_path: Path) -> Path:
    path = tmp_path / "payload.bin"
    path.write_bytes(os.urandom(20_000))
    return path


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_keygen_prints_the_path_and_the_id_one_line_each_and_id_reads_it_back(
        tmp_path: Path) -> None:
    path = tmp_path / "node.key"
    result = stt("keygen", str(path))
    assert result.returncode == 0, result.stderr
    node_id = Identity.load(path).node_id.hex()
    assert result.stdout.splitlines() == [f"key: {path}", f"node id: {node_id}"]
    shown = stt("id", str(path))
    assert shown.returncode == 0 and shown.stdout == node_id + "\n"
    again = stt("keygen", str(path))
    assert again.returncode == 2 and "--force" in one_line_error(again)


def test_keygen_to_an_unwritable_path_fails_in_one_line(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    result = stt("keygen", str(blocker / "node.key"))
    assert result.returncode == 1
    assert f"cannot write {blocker / 'node.key'}" in one_line_error(result)


@pytest.mark.parametrize("content", [None, b"garbage"])
def test_id_of_a_missing_or_bad_key_fails_in_one_line(tmp_path: Path,
                                                       content: bytes | None) -> None:
    path = tmp_path / "node.key"
    if content is not None:
        path.write_bytes(content)
    result = stt("id", str(path))
    assert result.returncode == 1
    assert str(path) in one_line_error(result)


def test_a_wrong_peer_id_names_the_node_that_answered(tmp_path: Path, payload: Path) -> None:
    wrong = "9b" * 32
    with server("listen", "--output", str(tmp_path), "--allow-any") as srv:
        result = stt("send", str(payload), "--to", srv.address, "--peer-id", wrong)
    assert result.returncode == 1
    line = one_line_error(result)
    assert f"wrong peer id: the node at {srv.address} is {srv.node_id}, not {wrong}" in line


@pytest.mark.parametrize("peer_id", ["xyz", "abcd", "ab" * 33])
def test_a_malformed_or_short_id_is_a_usage_error(payload: Path, peer_id: str) -> None:
    result = stt("send", str(payload), "--to", "127.0.0.1:9", "--peer-id", peer_id)
    assert result.returncode == 2
    assert "--peer-id" in one_line_error(result)


def test_a_bad_to_address_and_psk_are_usage_errors(payload: Path) -> None:
    for args in (["--to", "nowhere"], ["--to", "127.0.0.1:9", "--psk", "abc"]):
        result = stt("send", str(payload), "--peer-id", "ab" * 32, *args)
        assert result.returncode == 2
        one_line_error(result)


def test_nobody_at_the_port_is_said_in_one_line(payload: Path) -> None:
    port = _free_udp_port()
    start = time.monotonic()
    result = stt("send", str(payload), "--to", f"127.0.0.1:{port}", "--peer-id", "ab" * 32,
                 "--timeout", "1")
    assert result.returncode == 1
    assert f"nobody answered at 127.0.0.1:{port} within 1 s" in one_line_error(result)
    assert time.monotonic() - start < 10


def test_a_psk_mismatch_fails_in_one_line(tmp_path: Path, payload: Path) -> None:
    with server("listen", "--output", str(tmp_path), "--allow-any", "--psk", PSK_A) as srv:
        result = stt("send", str(payload), "--to", srv.address, "--peer-id", srv.node_id,
                     "--psk", PSK_B, "--timeout", "1")
    assert result.returncode == 1
    assert "--psk" in one_line_error(result)


def test_an_occupied_port_is_said_in_one_line(tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        result = stt("listen", "--host", "127.0.0.1", "--port", str(port), "--output",
                     str(tmp_path), "--allow-any")
    assert result.returncode == 1
    assert f"port {port} is in use" in one_line_error(result)


def test_a_missing_output_directory_refuses_to_start(tmp_path: Path) -> None:
    result = stt("receive", "--output", str(tmp_path / "nope"), "--allow-any")
    assert result.returncode == 2
    assert "does not exist" in one_line_error(result)


def test_an_unwritable_output_directory_refuses_to_start(tmp_path: Path) -> None:
    if os.geteuid() == 0:
        output = Path("/proc")  # root may write anywhere else
    else:
        output = tmp_path / "locked"
        output.mkdir(mode=0o500)
    result = stt("listen", "--output", str(output), "--allow-any")
    assert result.returncode == 1
    assert f"cannot write to the output directory {output}" in one_line_error(result)


def test_an_output_directory_that_vanishes_fails_the_sender_at_once(tmp_path: Path,
                                                                   payload: Path) -> None:
    """The receiver's failure reaches the sender as one line: no bar stuck at 100 %."""
    out = tmp_path / "out"
    out.mkdir()
    with server("listen", "--output", str(out), "--allow-any") as srv:
        shutil.rmtree(out)
        start = time.monotonic()
        result = stt("send", str(payload), "--to", srv.address, "--peer-id", srv.node_id)
    assert result.returncode == 1
    assert "cannot store payload.bin" in one_line_error(result)
    assert time.monotonic() - start < 10


def test_debug_shows_the_traceback(tmp_path: Path) -> None:
    result = stt("--debug", "id", str(tmp_path / "missing.key"))
    assert result.returncode == 1
    assert "Traceback" in result.stderr


def test_ctrl_c_on_the_receiver_exits_130_and_removes_its_temporary_file(
        tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    with server("receive", "--output", str(out), "--allow-any") as srv:
        async def midway(session: Any, stream: Any) -> None:
            await stream.send(header("half.bin", 100_000))
            await stream.receive()
            await stream.send(b"x" * 50_000)
            held: list[int] = []
            for _ in range(200):
                held = [path.stat().st_size for path in out.glob(".stt-partial-*")]
                if held == [50_000]:
                    break
                await asyncio.sleep(0.02)
            assert held == [50_000]  # a temporary file to clean up
            srv.process.send_signal(signal.SIGINT)
            await asyncio.sleep(1.0)

        asyncio.run(raw_sender(srv, midway))
        assert srv.process.wait(timeout=15) == 130
        assert srv.process.stderr is not None
        err = srv.process.stderr.read()
    assert err.strip() == "stt: interrupted"
    assert files_in(out) == []


def test_ctrl_c_on_the_sender_exits_130(tmp_path: Path) -> None:
    port = _free_udp_port()
    source = tmp_path / "file.bin"
    source.write_bytes(b"data")
    sender = subprocess.Popen(stt_command("send", str(source), "--to", f"127.0.0.1:{port}",
                                          "--peer-id", "ab" * 32), env=ENV,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(1.5)  # waiting for an answer that will not come
    sender.send_signal(signal.SIGINT)
    _, err = sender.communicate(timeout=15)
    assert sender.returncode == 130
    assert err.strip().splitlines()[-1] == "stt: interrupted" and "Traceback" not in err


def test_ctrl_c_on_a_trio_listener_with_workers_exits_130(tmp_path: Path) -> None:
    """On trio, Ctrl-C reaches the command inside an exception group: still 130, one line."""
    with server("listen", "--output", str(tmp_path), "--allow-any", "--runtime", "trio",
                "--workers", "2") as srv:
        time.sleep(1.0)  # the worker has started
        srv.process.send_signal(signal.SIGINT)
        assert srv.process.wait(timeout=20) == 130
        assert srv.process.stderr is not None
        err = srv.process.stderr.read()
    assert "Traceback" not in err and err.strip() == "stt: interrupted"


def test_the_listener_survives_hostile_senders_and_keeps_serving(tmp_path: Path,
                                                                payload: Path) -> None:
    """A malformed header from one peer closes that session only."""
    out = tmp_path / "out"
    out.mkdir()
    _ = key  # identities are fresh per sender here
    with server("listen", "--output", str(out), "--allow-any") as srv:
        async def garbage(session: Any, stream: Any) -> None:
            await stream.send(json.dumps([1, 2, 3]).encode())
            await asyncio.sleep(0.3)

        asyncio.run(raw_sender(srv, garbage))
        srv.wait_for(lambda line: "malformed" in line)
        result = stt("send", str(payload), "--to", srv.address, "--peer-id", srv.node_id)
        assert result.returncode == 0, result.stderr
        assert srv.process.poll() is None
    assert files_in(out) == ["payload.bin"]
