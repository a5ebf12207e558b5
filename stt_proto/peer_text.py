"""Text a peer chose, made safe to hand to applications, logs and terminals.

A CLOSE frame's reason (and any other string the network supplies) is attacker-controlled: raw,
it could carry terminal escape sequences (ESC, C1 controls, which clear screens or retitle
windows), bidirectional overrides that display text in another order than it is stored, line
separators that forge log lines, or lone surrogates that fail to encode when printed. The core
passes such text through :func:`sanitize` at the boundary where it leaves the library
(``SessionClosed.reason``, ``SessionTerminated.reason``), so applications receive only
printable characters, bounded in length. Pure string work: no I/O, no clock.
"""

from __future__ import annotations

import unicodedata

MAX_PEER_TEXT = 1024  # characters: a CLOSE reason holds at most 1024 bytes on the wire
ELLIPSIS = "\u2026"  # marks text cut short


def _escape(char: str) -> str:
    """A backslash escape naming ``char``, as ``repr`` writes it: visible, never interpreted."""
    code = ord(char)
    if code < 0x100:
        return f"\\x{code:02x}"
    if code < 0x10000:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def sanitize(text: str, limit: int = MAX_PEER_TEXT) -> str:
    """``text`` with every character that is not printable (``str.isprintable``: C0 and C1
    controls including ESC and DEL, format characters including the bidirectional overrides
    U+202A..U+202E and isolates U+2066..U+2069, line and paragraph separators, surrogates,
    unassigned code points) replaced by its backslash escape, other spaces by a plain space,
    and the result cut to at most ``limit`` characters, ending in an ellipsis when cut.

    Text that is already printable and short enough comes back unchanged (the same object).
    """
    if limit < 1:
        raise ValueError(f"limit must be at least 1, got {limit}")
    if len(text) <= limit and text.isprintable():
        return text
    pieces: list[str] = []
    size = 0
    for char in text:
        if char.isprintable():
            piece = char
        elif unicodedata.category(char) == "Zs":  # a space other than U+0020
            piece = " "
        else:
            piece = _escape(char)
        if size + len(piece) > limit:
            while pieces and size + len(ELLIPSIS) > limit:
                size -= len(pieces.pop())
            pieces.append(ELLIPSIS)
            break
        pieces.append(piece)
        size += len(piece)
    return "".join(pieces)


__all__ = ["ELLIPSIS", "MAX_PEER_TEXT", "sanitize"]
