"""Node ids on the command line and who may send files (``--allow``, ``--allow-file``,
``--allow-any``), in the manner of WireGuard's allowed peers: a receiver takes files only from
the node ids it was given, unless told explicitly that anyone may send.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import attrs
import click

NODE_ID_BYTES = 32


def parse_node_id(text: str, what: str = "node id") -> bytes:
    """A 32-byte node id from 64 hex digits; ValueError naming the mistake otherwise."""
    cleaned = text.strip()
    try:
        raw = bytes.fromhex(cleaned)
    except ValueError:
        raise ValueError(f"{what} {cleaned[:80]!r} is not hexadecimal "
                         f"(a node id is {2 * NODE_ID_BYTES} hex digits)") from None
    if len(raw) != NODE_ID_BYTES:
        raise ValueError(f"{what} {cleaned[:80]!r} has {len(cleaned)} hex digits; a node id has "
                         f"{2 * NODE_ID_BYTES} (`stt id KEYFILE` prints one)")
    return raw


def node_id_option(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    """Click callback: ``--peer-id`` / ``--allow`` values as bytes (a usage error if bad)."""
    if value is None:
        return None
    try:
        if isinstance(value, tuple):
            return tuple(parse_node_id(item) for item in value)
        return parse_node_id(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc), ctx, param) from None


def psk_option(ctx: click.Context, param: click.Parameter, value: str | None) -> bytes | None:
    """Click callback: ``--psk`` as 32 bytes."""
    if value is None:
        return None
    try:
        psk = bytes.fromhex(value.strip())
    except ValueError:
        raise click.BadParameter("a psk is 64 hex digits", ctx, param) from None
    if len(psk) != 32:
        raise click.BadParameter(f"a psk is 64 hex digits, not {len(value.strip())}", ctx,
                                 param)
    return psk


def read_allow_file(path: Path) -> frozenset[bytes]:
    """Node ids from ``path``: one a line; ``#`` starts a comment; blank lines ignored."""
    ids = set()
    with path.open(encoding="utf-8", errors="replace") as lines:
        for number, line in enumerate(lines, 1):
            text = line.split("#", 1)[0].strip()
            if text:
                try:
                    ids.add(parse_node_id(text))
                except ValueError as exc:
                    raise ValueError(f"{path} line {number}: {exc}") from None
    return frozenset(ids)


@attrs.frozen
class Allowed:
    """Whose files are taken: ``ids``, or anyone (``any``); ``ask`` (stt receive on a
    terminal) puts the others to the user."""

    ids: frozenset[bytes] = frozenset()
    any: bool = False
    ask: bool = False

    def admits(self, node_id: bytes) -> bool:
        return self.any or node_id in self.ids

    @property
    def configured(self) -> bool:
        return self.any or bool(self.ids)


def allowed_from_options(allow: tuple[bytes, ...], allow_file: Path | None,
                         allow_any: bool) -> Allowed:
    """The policy the options give (a usage error for an unreadable or malformed file)."""
    ids = set(allow)
    if allow_file is not None:
        try:
            ids |= read_allow_file(allow_file)
        except (OSError, ValueError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            raise click.BadParameter(f"cannot read {allow_file}: {reason}"
                                     if isinstance(exc, OSError) else reason,
                                     param_hint="'--allow-file'") from None
        if not ids and not allow_any:
            raise click.BadParameter(f"{allow_file} lists no node id",
                                     param_hint="'--allow-file'")
    return Allowed(frozenset(ids), allow_any)


allow_options = [
    click.option("--allow", multiple=True, callback=node_id_option, metavar="NODE_ID",
                 help="Accept files from this node id (repeatable)."),
    click.option("--allow-file", type=click.Path(dir_okay=False, path_type=Path),
                 help="Accept files from the node ids in FILE (one a line, # comments)."),
    click.option("--allow-any", is_flag=True,
                 help="Accept files from anyone who knows this node's address and id."),
]
