"""Who may send: ``--allow``, ``--allow-file``, ``--allow-any``, the terminal prompt of
``stt receive``, and the refusals, through the real command on loopback."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from tests.cli_peer import ENV, files_in, key, one_line_error, server, stt, stt_command

pytestmark = pytest.mark.filterwarnings("ignore:the kernel granted:RuntimeWarning")


def _payload(tmp_path: Path, name: str = "data.bin", size: int = 50_000) -> Path:
    path = tmp_path / name
    path.write_bytes(os.urandom(size))
    return path


def test_an_unknown_sender_is_refused_with_a_one_line_reason(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    _, friend = key(tmp_path, "friend")
    stranger_key, stranger = key(tmp_path, "stranger")
    source = _payload(tmp_path)
    with server("listen", "--output", str(out), "--allow", friend) as srv:
        result = stt("send", str(source), "--to", srv.address, "--peer-id", srv.node_id,
                     "--identity", str(stranger_key))
        assert result.returncode == 1
        line = one_line_error(result)
        assert "refused by the receiver" in line and "not allowed" in line
        assert stranger in line  # it says which id to allow
        srv.wait_for(lambda text: "not allowed" in text and stranger in text)
    assert files_in(out) == []


@pytest.mark.parametrize("how", ["allow", "allow-file", "allow-any"])
def test_an_allowed_sender_delivers(tmp_path: Path, how: str) -> None:
    out = tmp_path / "out"
    out.mkdir()
    sender_key, sender = key(tmp_path, "sender")
    source = _payload(tmp_path)
    if how == "allow":
        options = ["--allow", "ab" * 32, "--allow", sender]
    elif how == "allow-file":
        listing = tmp_path / "peers"
        listing.write_text(f"# my peers\n\n{'cd' * 32}  # laptop\n  {sender}\n")
        options = ["--allow-file", str(listing)]
    else:
        options = ["--allow-any"]
    with server("receive", "--output", str(out), *options) as srv:
        result = stt("send", str(source), "--to", srv.address, "--peer-id", srv.node_id,
                     "--identity", str(sender_key))
        assert result.returncode == 0, result.stderr
        assert srv.process.wait(timeout=15) == 0
        assert srv.process.stdout is not None
        srv.wait_for(lambda text: text.startswith("received data.bin"))
        assert sender in srv.lines[-1]  # the receiver names the sender of every file
    assert (out / "data.bin").read_bytes() == source.read_bytes()


def test_listen_without_an_allow_option_refuses_to_start(tmp_path: Path) -> None:
    result = stt("listen", "--output", str(tmp_path))
    assert result.returncode == 2
    line = one_line_error(result)
    assert "--allow" in line and "--allow-any" in line


def test_receive_with_no_terminal_and_no_allow_option_refuses_to_start(tmp_path: Path) -> None:
    result = stt("receive", "--output", str(tmp_path))
    assert result.returncode == 2
    assert "no terminal" in one_line_error(result)


@pytest.mark.parametrize("content", ["not-hex\n", "abcd\n"])
def test_a_malformed_allow_file_is_a_usage_error(tmp_path: Path, content: str) -> None:
    listing = tmp_path / "peers"
    listing.write_text("# fine\n" + content)
    result = stt("listen", "--output", str(tmp_path), "--allow-file", str(listing))
    assert result.returncode == 2
    assert "line 2" in one_line_error(result)


def test_receive_on_a_terminal_asks_and_a_no_refuses(tmp_path: Path) -> None:
    """No allow option, a terminal: the user is asked about each file; "n" refuses it (the
    sender prints why), "y" accepts the next one."""
    import pty

    out = tmp_path / "out"
    out.mkdir()
    source = _payload(tmp_path, "asked.txt", 1234)
    leader, follower = pty.openpty()
    try:
        with server("receive", "--output", str(out), stdin=follower) as srv:
            def send() -> subprocess.Popen[str]:
                return subprocess.Popen(stt_command("send", str(source), "--to", srv.address,
                                                    "--peer-id", srv.node_id),
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                        text=True, env=ENV)

            def answer(text: bytes) -> None:
                assert srv.process.stderr is not None
                asked = b""
                deadline = time.monotonic() + 15
                while b"[y/N]" not in asked and time.monotonic() < deadline:
                    asked += os.read(srv.process.stderr.fileno(), 1000)
                assert b"accept asked.txt (1.2 KiB) from " in asked
                os.write(leader, text)

            first = send()
            answer(b"n\n")
            _, err = first.communicate(timeout=15)
            assert first.returncode == 1 and "declined asked.txt" in err
            second = send()
            answer(b"y\n")
            _, err = second.communicate(timeout=15)
            assert second.returncode == 0, err
            assert srv.process.wait(timeout=15) == 0
    finally:
        os.close(leader)
        os.close(follower)
    assert (out / "asked.txt").read_bytes() == source.read_bytes()
