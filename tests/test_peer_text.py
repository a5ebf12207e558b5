"""Peer-supplied text is made safe where it leaves the library, and the CLI prints it as plain
text (issue 21, item 11): a CLOSE reason or a sender's file name with terminal escapes, bidi
overrides or unbalanced rich markup reaches applications and the terminal harmless."""

from __future__ import annotations

import asyncio
import io
import json
import unicodedata
from pathlib import Path
from typing import Any, cast

import pytest
from hypothesis import given
from hypothesis import strategies as st
from rich.console import Console

from stt_proto import SessionClosed, SessionTerminated
from stt_proto.peer_text import ELLIPSIS, MAX_PEER_TEXT, sanitize

from .conftest import make_pair

EVIL = "\x1b[2J\x1b]0;pwned\x07[bold]"
BIDI = [chr(c) for c in (*range(0x202A, 0x202F), *range(0x2066, 0x206A))]
CONTROLS = [chr(c) for c in (*range(0x20), 0x7F, *range(0x80, 0xA0))]


def _unsafe(char: str) -> bool:
    return unicodedata.category(char) in ("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp") \
        or char in BIDI


@given(st.text(), st.integers(1, 3000))
def test_sanitized_text_holds_no_control_or_bidi_character_and_is_bounded(
        text: str, limit: int) -> None:
    out = sanitize(text, limit)
    assert len(out) <= limit
    assert not any(_unsafe(char) for char in out)
    assert out.isprintable()


@given(st.text(st.characters(blacklist_categories=("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp",
                                                   "Zs")), max_size=200))
def test_printable_text_passes_unchanged(text: str) -> None:
    assert sanitize(text) == text


@given(st.lists(st.sampled_from([*CONTROLS, *BIDI, "a", " ", "\u2028"]), max_size=300))
def test_every_unsafe_character_is_escaped_visibly(chars: list[str]) -> None:
    out = sanitize("".join(chars), 10_000)
    assert out.count("\\") == sum(_unsafe(c) for c in chars)


def test_escapes_name_what_they_replace() -> None:
    assert sanitize(EVIL) == "\\x1b[2J\\x1b]0;pwned\\x07[bold]"
    assert sanitize("abc\u202edef") == "abc\\u202edef"
    assert sanitize("a\u00a0b") == "a b"
    assert sanitize("\ud800x") == "\\ud800x"  # a lone surrogate, unprintable and unencodable


def test_long_text_is_cut_with_an_ellipsis() -> None:
    out = sanitize("x" * 5000)
    assert len(out) == MAX_PEER_TEXT and out.endswith(ELLIPSIS)
    assert sanitize("\x1b" * 10, 9) == "\\x1b\\x1b" + ELLIPSIS  # never half an escape
    with pytest.raises(ValueError):
        sanitize("x", 0)


def test_a_peers_close_reason_reaches_the_application_sanitised() -> None:
    pair = make_pair()
    client, server = pair.established()
    while server.next_event() is not None:
        pass
    client.close(42, EVIL + "\u202e", pair.net.now)
    pair.net.run(0.05)
    ends = []
    while (event := server.next_event()) is not None:
        if isinstance(event, SessionTerminated):
            ends.append(event)
    assert len(ends) == 1
    end = ends[0]
    assert isinstance(end.error, SessionClosed) and end.by_peer
    expected = "\\x1b[2J\\x1b]0;pwned\\x07[bold]\\u202e"
    assert end.reason == end.error.reason == expected
    assert "\x1b" not in str(end.error) and "\u202e" not in str(end.error)


# -- the CLI prints peer text as plain text -----------------------------------------------------


def _console() -> tuple[Console, io.StringIO]:
    out = io.StringIO()
    return Console(file=out, force_terminal=True, color_system="standard", width=300), out


class _ClosedByPeer:
    """A session the peer has closed with a hostile reason (what ``stt listen`` may accept)."""

    peer_id = bytes(32)

    async def accept_stream(self) -> object:
        raise SessionClosed(1, "closed [/bold] " + EVIL, by_peer=True)


def test_the_cli_prints_a_peers_close_reason_with_unbalanced_markup_literally(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from stt_cli.files import receive_files

    asyncio.run(receive_files(tmp_path, cast(Any, _ClosedByPeer())))
    text = capsys.readouterr().out
    assert "transfer failed:" in text and "closed [/bold]" in text
    assert "\x1b[2J" not in text and "\x1b]0;" not in text and "\x07" not in text


def test_a_file_whose_name_has_markup_and_escapes_is_received_and_shown_plainly(
        tmp_path: Path) -> None:
    """A real transfer over loopback of a file named with rich markup and terminal escapes
    (a name holds no "/", so no closing tag): both ends show the name as it is, markup
    unread, escapes defused, and the receiver saves it under a safe name."""
    from stt_asyncio import STTNode
    from stt_cli.files import receive_file, send_file

    name = "a[bold red]\x1b[2J\x1b]0;pwned\x07[blink].bin"
    source = tmp_path / "in" / name
    source.parent.mkdir()
    source.write_bytes(b"payload " * 1000)
    output = tmp_path / "out"
    output.mkdir()
    receiving, received_text = _console()
    sending, sent_text = _console()

    async def main() -> dict[str, object]:
        async with STTNode(host="127.0.0.1") as server, STTNode(host="127.0.0.1") as client:
            async def serve() -> dict[str, object]:
                return await receive_file(await server.accept(), output, receiving)

            task = asyncio.create_task(serve())
            await send_file(client, source, server.address, server.identity.node_id, sending)
            return await task

    result = asyncio.run(asyncio.wait_for(main(), 60))
    assert result["size"] == 8000
    saved = Path(str(result["path"]))
    assert saved.parent == output and "\x1b" not in saved.name and "\x07" not in saved.name
    assert saved.read_bytes() == b"payload " * 1000
    for text in (received_text.getvalue(), sent_text.getvalue()):
        assert "[bold red]" in text and "[blink]" in text
        assert "\x1b[2J" not in text and "\x1b]0;" not in text and "\x07" not in text


@pytest.mark.parametrize("raw", [b"", b"\xff", b"[1, 2]", b'"name"', b"{}", b'{"name": "a"}',
                                 b'{"name": 1, "size": 2}', b'{"name": "a", "size": "2"}',
                                 b'{"name": "a", "size": -1}', b'{"name": "a", "size": true}'])
def test_a_malformed_transfer_header_is_a_value_error(raw: bytes) -> None:
    from stt_cli.transfer import _parse_header

    with pytest.raises(ValueError, match="malformed"):
        _parse_header(raw)


@pytest.mark.parametrize(("name", "saved"), [
    ("../../etc/passwd", "passwd"), ("..", "received.bin"), ("", "received.bin"),
    ("dir/", "dir"), ("a\u202eexe.txt", "a\\u202eexe.txt"), ("\ud800.bin", "\\ud800.bin"),
])
def test_a_received_file_name_is_safe(name: str, saved: str) -> None:
    from stt_cli.transfer import _parse_header

    assert _parse_header(json.dumps({"name": name, "size": 3}).encode()) == (saved, 3)


def test_a_long_received_file_name_fits_a_filesystem() -> None:
    from stt_cli.transfer import MAX_NAME, _parse_header

    name, _ = _parse_header(json.dumps({"name": "\u00e9" * 400, "size": 0}).encode())
    assert 0 < len(name.encode()) <= MAX_NAME <= 255
