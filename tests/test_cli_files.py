"""Where received files go and what a sender cannot make the receiver do, through the real
command on loopback: names made safe, nothing replaced, the declared size enforced, a file
kept only once its sha256 matched, resume, directory trees, idle senders, caps."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from stt_cli.transfer import BAD_REQUEST, BUSY, CHECKSUM, IDLE, TOO_MUCH_DATA
from stt_proto import SessionClosed
from tests.cli_peer import (
    ENV,
    files_in,
    header,
    identity_of,
    key,
    one_line_error,
    run_raw,
    server,
    stt,
    stt_command,
)

pytestmark = pytest.mark.filterwarnings("ignore:the kernel granted:RuntimeWarning")


def _out(tmp_path: Path) -> Path:
    out = tmp_path / "out"
    out.mkdir()
    return out


def _send(srv: Any, path: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return stt("send", str(path), "--to", srv.address, "--peer-id", srv.node_id, *extra)


async def _send_raw(session: Any, stream: Any, name: str, data: bytes,
                    digest: str | None = None) -> dict[str, Any]:
    """A well-behaved sender, by hand: header, offset, data, sha256, verdict."""
    await stream.send(header(name, len(data)))
    assert json.loads(await stream.receive()) == {"offset": 0}
    if data:
        await stream.send(data)
    await stream.send(json.dumps({"sha256": digest or hashlib.sha256(data).hexdigest()})
                      .encode())
    await stream.close()
    verdict: dict[str, Any] = json.loads(await stream.receive())
    await session.close(0, "done")
    return verdict


async def _closed_with(stream: Any) -> SessionClosed:
    """The SessionClosed the receiver ends this session with."""
    with pytest.raises(SessionClosed) as caught:
        while True:
            await stream.receive()
    return caught.value


@pytest.mark.parametrize(("name", "saved"), [
    ("../../escape.txt", "escape.txt"), (".bashrc", "bashrc"), ("..", "received.bin"),
    ("a/..\\..\\b.txt", "b.txt"), ("bell\x07.txt", "bell\\x07.txt"),
])
def test_a_peers_name_becomes_a_safe_base_name(tmp_path: Path, name: str, saved: str) -> None:
    out = _out(tmp_path)
    with server("listen", "--output", str(out), "--allow-any") as srv:
        verdict = run_raw(srv, lambda session, stream: _send_raw(session, stream, name, b"hi"))
        srv.wait_for(lambda line: line.startswith("received "))
    assert verdict["saved"] == saved
    assert files_in(tmp_path) == [f"out/{saved}"]  # nothing outside the output directory
    assert (out / saved).read_bytes() == b"hi"


def test_a_peers_folders_cannot_lead_out_of_the_output_directory(tmp_path: Path) -> None:
    out = _out(tmp_path)

    async def climb(session: Any, stream: Any) -> dict[str, Any]:
        await stream.send(header("x.txt", 2, folder=["..", "../..", ".ssh", "/etc", "a\\b"]))
        assert json.loads(await stream.receive()) == {"offset": 0}
        await stream.send(b"hi")
        await stream.send(json.dumps({"sha256": hashlib.sha256(b"hi").hexdigest()}).encode())
        await stream.close()
        verdict: dict[str, Any] = json.loads(await stream.receive())
        await session.close(0, "done")
        return verdict

    with server("listen", "--output", str(out), "--allow-any") as srv:
        verdict = run_raw(srv, climb)
    assert verdict["saved"] == "ssh/etc/b/x.txt"
    assert files_in(tmp_path) == ["out/ssh/etc/b/x.txt"]


def test_an_existing_file_is_never_replaced(tmp_path: Path) -> None:
    out = _out(tmp_path)
    (out / "report.txt").write_text("mine")
    (out / "report (1).txt").write_text("mine too")
    own_key = out / "stt.key"  # the listener's identity, in its output directory
    assert stt("keygen", str(own_key)).returncode == 0
    own = own_key.read_bytes()
    source = tmp_path / "report.txt"
    source.write_text("theirs")
    with server("listen", "--output", str(out), "--allow-any", "--identity",
                str(own_key)) as srv:
        result = _send(srv, source)
        assert result.returncode == 0, result.stderr
        assert "saved as report (2).txt" in result.stdout
        verdict = run_raw(srv, lambda s, st: _send_raw(s, st, "stt.key", b"evil"))
    assert verdict["saved"] == "stt (1).key"
    assert own_key.read_bytes() == own
    assert (out / "report.txt").read_text() == "mine"
    assert (out / "report (1).txt").read_text() == "mine too"
    assert (out / "report (2).txt").read_text() == "theirs"


def test_concurrent_senders_of_one_name_never_share_a_file(tmp_path: Path) -> None:
    out = _out(tmp_path)
    sources = []
    for index in range(3):
        folder = tmp_path / f"s{index}"
        folder.mkdir()
        sources.append(folder / "same.bin")
        sources[-1].write_bytes(os.urandom(300_000 + index))
    with server("listen", "--output", str(out), "--allow-any") as srv:
        senders = [subprocess.Popen(stt_command("send", str(source), "--to", srv.address,
                                                "--peer-id", srv.node_id), env=ENV,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                   for source in sources]
        for sender in senders:
            _, err = sender.communicate(timeout=30)
            assert sender.returncode == 0, err
    received = sorted((out / name).read_bytes() for name in files_in(out))
    assert received == sorted(source.read_bytes() for source in sources)
    assert files_in(out) == ["same (1).bin", "same (2).bin", "same.bin"]


def test_more_data_than_declared_is_refused_and_the_partial_removed(tmp_path: Path) -> None:
    out = _out(tmp_path)

    async def liar(session: Any, stream: Any) -> SessionClosed:
        await stream.send(header("small.bin", 10))
        await stream.receive()
        await stream.send(bytes(200_000))
        return await _closed_with(stream)

    with server("listen", "--output", str(out), "--allow-any") as srv:
        closed = run_raw(srv, liar)
        srv.wait_for(lambda line: "more than the 10 bytes" in line)
    assert closed.error_code == TOO_MUCH_DATA and "declared" in closed.reason
    assert files_in(out) == []


def test_a_file_is_kept_only_once_its_sha256_matched(tmp_path: Path) -> None:
    out = _out(tmp_path)

    async def wrong_digest(session: Any, stream: Any) -> SessionClosed:
        await stream.send(header("bad.bin", 5))
        await stream.receive()
        await stream.send(b"12345")
        for _ in range(50):  # the data is on disk, under a hidden partial name only
            if any(name.startswith(".stt-partial-") for name in files_in(out)):
                break
            await asyncio.sleep(0.02)
        assert "bad.bin" not in files_in(out)
        await stream.send(json.dumps({"sha256": "00" * 32}).encode())
        return await _closed_with(stream)

    with server("listen", "--output", str(out), "--allow-any") as srv:
        closed = run_raw(srv, wrong_digest)
    assert closed.error_code == CHECKSUM and "sha256 mismatch" in closed.reason
    assert files_in(out) == []


@pytest.mark.parametrize("raw", [b"[1,2,3]", b"\xff\xfe", b'{"name": "a", "size": -1}',
                                 b'{"name": "a", "size": 1, "folder": "x"}'])
def test_a_malformed_header_is_refused_in_one_line(tmp_path: Path, raw: bytes) -> None:
    out = _out(tmp_path)

    async def bad(session: Any, stream: Any) -> SessionClosed:
        await stream.send(raw)
        return await _closed_with(stream)

    with server("receive", "--output", str(out), "--allow-any") as srv:
        closed = run_raw(srv, bad)
        assert srv.process.wait(timeout=15) == 1
        assert srv.process.stderr is not None
        err = srv.process.stderr.read()
    assert closed.error_code == BAD_REQUEST and "malformed" in closed.reason
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1 and "malformed" in err


def test_a_silent_sender_is_dropped_and_its_file_closed(tmp_path: Path) -> None:
    out = _out(tmp_path)

    async def stall(session: Any, stream: Any) -> SessionClosed:
        await stream.send(header("slow.bin", 1000))
        await stream.receive()
        await stream.send(b"x" * 10)
        return await _closed_with(stream)

    with server("listen", "--output", str(out), "--allow-any", "--idle-timeout", "0.5") as srv:
        closed = run_raw(srv, stall)
        srv.wait_for(lambda line: "sent nothing" in line)
        pid = srv.process.pid
        assert not [fd for fd in os.listdir(f"/proc/{pid}/fd")
                    if ".stt-partial-" in os.readlink(f"/proc/{pid}/fd/{fd}")]
    assert closed.error_code == IDLE


def test_transfers_past_the_cap_are_refused_as_busy(tmp_path: Path) -> None:
    out = _out(tmp_path)

    async def hold_then_try(session: Any, stream: Any) -> SessionClosed:
        await stream.send(header("first.bin", 1000))
        await stream.receive()  # the first transfer is under way

        async def second(inner: Any, _: None) -> SessionClosed:
            with pytest.raises(SessionClosed) as caught:  # refused at once, perhaps already
                inner_stream = inner.open_stream()
                await inner_stream.send(header("second.bin", 1))
                while True:
                    await inner_stream.receive()
            return caught.value

        return await asyncio.to_thread(run_raw, srv, second, None, False)

    with server("listen", "--output", str(out), "--allow-any", "--max-transfers", "1") as srv:
        closed = run_raw(srv, hold_then_try)
    assert closed.error_code == BUSY and "busy" in closed.reason


def test_a_sender_killed_midway_leaves_nothing_and_resume_completes(tmp_path: Path) -> None:
    out = _out(tmp_path)
    sender_key, _ = key(tmp_path, "sender")
    source = tmp_path / "big.bin"
    source.write_bytes(os.urandom(24 * 1024 * 1024))
    with server("listen", "--output", str(out), "--allow-any", "--idle-timeout", "1") as srv:
        sender = subprocess.Popen(stt_command("send", str(source), "--to", srv.address,
                                              "--peer-id", srv.node_id, "--identity",
                                              str(sender_key)), env=ENV,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        partial: list[Path] = []
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            partial = list(out.glob(".stt-partial-*"))
            if partial and partial[0].stat().st_size > 1024 * 1024:
                break
            time.sleep(0.001)
        sender.send_signal(signal.SIGKILL)
        sender.wait()
        srv.wait_for(lambda line: "sent nothing" in line)  # dropped after the idle timeout
        assert not (out / "big.bin").exists()  # nothing under the final name
        held = partial[0].stat().st_size
        assert 0 < held < source.stat().st_size
        result = _send(srv, source, "--identity", str(sender_key), "--resume")
        assert result.returncode == 0, result.stderr
        assert f"resumed at: {held:,} bytes" in result.stdout
        assert hashlib.sha256(source.read_bytes()).hexdigest() in result.stdout
    assert files_in(out) == ["big.bin"]
    assert (out / "big.bin").read_bytes() == source.read_bytes()


def test_resume_from_another_sender_starts_over(tmp_path: Path) -> None:
    """A partial file belongs to the sender that wrote it: another node's resume of the same
    name and size gets offset 0."""
    out = _out(tmp_path)
    first_key, _ = key(tmp_path, "first")

    async def cut_off(session: Any, stream: Any) -> None:
        await stream.send(header("cut.bin", 100, resume=True))
        assert json.loads(await stream.receive()) == {"offset": 0}
        await stream.send(b"a" * 40)
        await stream.flush()
        await session.close(7, "gone")

    async def resume(session: Any, stream: Any) -> int:
        await stream.send(header("cut.bin", 100, resume=True))
        offset: int = json.loads(await stream.receive())["offset"]
        await session.close(0, "done")
        return offset

    with server("listen", "--output", str(out), "--allow-any") as srv:
        run_raw(srv, cut_off, identity_of(first_key))
        srv.wait_for(lambda line: "went away" in line or "ended" in line)
        assert run_raw(srv, resume) == 0  # a fresh identity
        assert run_raw(srv, resume, identity_of(first_key)) == 40


def test_a_directory_is_sent_as_a_tree_without_following_links_out(tmp_path: Path) -> None:
    out = _out(tmp_path)
    tree = tmp_path / "tree"
    (tree / "sub" / "deeper").mkdir(parents=True)
    (tree / "top.txt").write_text("top")
    (tree / "sub" / "mid.txt").write_text("mid")
    (tree / "sub" / "deeper" / "low.txt").write_text("low")
    (tree / ".hidden").write_text("hidden")
    secret = tmp_path / "secret.txt"
    secret.write_text("secret")
    (tree / "sub" / "out-link.txt").symlink_to(secret)
    (tree / "in-link.txt").symlink_to(tree / "top.txt")
    (tree / "dir-link").symlink_to(tmp_path)
    with server("receive", "--output", str(out), "--allow-any") as srv:
        result = _send(srv, tree)
        assert result.returncode == 0, result.stderr
        assert srv.process.wait(timeout=15) == 0
    assert "skipping" in result.stdout and "out-link.txt" in result.stdout
    assert files_in(out) == ["tree/hidden", "tree/in-link.txt", "tree/sub/deeper/low.txt",
                             "tree/sub/mid.txt", "tree/top.txt"]
    assert (out / "tree" / "sub" / "deeper" / "low.txt").read_text() == "low"
    assert (out / "tree" / "in-link.txt").read_text() == "top"


def test_a_full_disk_reaches_the_sender_in_one_line(tmp_path: Path) -> None:
    """The receiver cannot write (here: a file size limit, as a full disk would): the sender
    learns at once, in one line, and nothing is left behind."""
    import resource

    out = _out(tmp_path)
    source = tmp_path / "large.bin"
    source.write_bytes(os.urandom(3 * 1024 * 1024))

    def limit() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (1024 * 1024, 1024 * 1024))

    process = subprocess.Popen(stt_command("receive", "--host", "127.0.0.1", "--output",
                                           str(out), "--allow-any"), env=ENV,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               preexec_fn=limit)
    try:
        assert process.stdout is not None
        words = process.stdout.readline().split()
        result = stt("send", str(source), "--to", words[2], "--peer-id", words[5])
        assert result.returncode == 1
        assert "cannot write large.bin" in one_line_error(result)
        assert process.wait(timeout=15) == 1
    finally:
        process.kill()
        process.communicate()
    assert files_in(out) == []


@pytest.mark.parametrize("runtime", ["uvloop", "trio"])
def test_send_and_receive_on_each_runtime(tmp_path: Path, runtime: str) -> None:
    if runtime == "uvloop":
        pytest.importorskip("uvloop")
    out = _out(tmp_path)
    source = tmp_path / "rt.bin"
    source.write_bytes(os.urandom(1024 * 1024 + 3))
    with server("receive", "--output", str(out), "--allow-any", "--runtime", runtime) as srv:
        result = _send(srv, source, "--runtime", runtime)
        assert result.returncode == 0, result.stderr
        assert srv.process.wait(timeout=15) == 0
    assert (out / "rt.bin").read_bytes() == source.read_bytes()


def test_concurrent_transfers_on_one_terminal_console_all_arrive(tmp_path: Path) -> None:
    """Senders received at once, in one process, printing to one terminal console (progress
    bars on): each file arrives whole under its own name."""
    import io

    from rich.console import Console

    from stt_asyncio import STTNode
    from stt_cli.allow import Allowed
    from stt_cli.receiver import ReceiveOptions, receive_session
    from stt_cli.sender import send_paths

    out = _out(tmp_path)
    sources = []
    for index in range(3):
        sources.append(tmp_path / f"f{index}.bin")
        sources[-1].write_bytes(os.urandom(2 * 1024 * 1024))
    terminal = Console(file=io.StringIO(), force_terminal=True, width=120)
    options = ReceiveOptions(out, Allowed(any=True))

    async def main() -> list[Any]:
        async with STTNode(host="127.0.0.1") as server:
            async def one_sender(source: Path) -> None:
                async with STTNode(host="127.0.0.1") as client:
                    await send_paths(client, source, server.address, server.node_id,
                                     Console(file=io.StringIO()))

            senders = [asyncio.ensure_future(one_sender(source)) for source in sources]
            receivers = [asyncio.ensure_future(receive_session(
                options, await server.accept(), terminal, raise_failures=True))
                for _ in sources]
            await asyncio.gather(*senders)
            return await asyncio.gather(*receivers)

    results = asyncio.run(asyncio.wait_for(main(), 60))
    assert sorted(r[0].path.name for r in results) == ["f0.bin", "f1.bin", "f2.bin"]
    for source in sources:
        assert (out / source.name).read_bytes() == source.read_bytes()
