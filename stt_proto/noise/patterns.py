"""Handshake patterns as token tables, the ``pskN`` modifiers, and protocol-name parsing."""

from __future__ import annotations

import functools
import re

import attrs

from ..errors import NoiseError

# name -> (initiator pre-message, responder pre-message, messages); messages alternate,
# starting with the initiator. Tokens are those of the Noise specification, section 7.
_BASE: dict[str, tuple[str, str, tuple[str, ...]]] = {
    # one-way
    "N": ("", "s", ("e, es",)),
    "K": ("s", "s", ("e, es, ss",)),
    "X": ("", "s", ("e, es, s, ss",)),
    # fundamental interactive
    "NN": ("", "", ("e", "e, ee")),
    "NK": ("", "s", ("e, es", "e, ee")),
    "NX": ("", "", ("e", "e, ee, s, es")),
    "KN": ("s", "", ("e", "e, ee, se")),
    "KK": ("s", "s", ("e, es, ss", "e, ee, se")),
    "KX": ("s", "", ("e", "e, ee, se, s, es")),
    "XN": ("", "", ("e", "e, ee", "s, se")),
    "XK": ("", "s", ("e, es", "e, ee", "s, se")),
    "XX": ("", "", ("e", "e, ee, s, es", "s, se")),
    "IN": ("", "", ("e, s", "e, ee, se")),
    "IK": ("", "s", ("e, es, s, ss", "e, ee, se")),
    "IX": ("", "", ("e, s", "e, ee, se, s, es")),
    # deferred
    "NK1": ("", "s", ("e", "e, ee, es")),
    "NX1": ("", "", ("e", "e, ee, s", "es")),
    "X1N": ("", "", ("e", "e, ee", "s", "se")),
    "X1K": ("", "s", ("e, es", "e, ee", "s", "se")),
    "XK1": ("", "s", ("e", "e, ee, es", "s, se")),
    "X1K1": ("", "s", ("e", "e, ee, es", "s", "se")),
    "X1X": ("", "", ("e", "e, ee, s, es", "s", "se")),
    "XX1": ("", "", ("e", "e, ee, s", "es, s, se")),
    "X1X1": ("", "", ("e", "e, ee, s", "es, s", "se")),
    "K1N": ("s", "", ("e", "e, ee", "se")),
    "K1K": ("s", "s", ("e, es", "e, ee", "se")),
    "KK1": ("s", "s", ("e", "e, ee, se, es")),
    "K1K1": ("s", "s", ("e", "e, ee, es", "se")),
    "K1X": ("s", "", ("e", "e, ee, s, es", "se")),
    "KX1": ("s", "", ("e", "e, ee, se, s", "es")),
    "K1X1": ("s", "", ("e", "e, ee, s", "se, es")),
    "I1N": ("", "", ("e, s", "e, ee", "se")),
    "I1K": ("", "s", ("e, es, s", "e, ee", "se")),
    "IK1": ("", "s", ("e, s", "e, ee, se, es")),
    "I1K1": ("", "s", ("e, s", "e, ee, es", "se")),
    "I1X": ("", "", ("e, s", "e, ee, s, es", "se")),
    "IX1": ("", "", ("e, s", "e, ee, se, s", "es")),
    "I1X1": ("", "", ("e, s", "e, ee, s", "se, es")),
}

ONE_WAY = frozenset({"N", "K", "X"})


def _tokens(text: str) -> tuple[str, ...]:
    return tuple(t.strip() for t in text.split(",") if t.strip())


@attrs.frozen(slots=True)
class HandshakePattern:
    """A pattern with its modifiers applied: pre-message tokens and one token tuple per message."""

    name: str
    initiator_pre: tuple[str, ...]
    responder_pre: tuple[str, ...]
    messages: tuple[tuple[str, ...], ...]
    one_way: bool
    # Counted once here, not scanned per read: every handshake's state reads it, and the
    # parsed patterns are cached.
    psk_count: int = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        object.__setattr__(self, "psk_count", sum(m.count("psk") for m in self.messages))

    @property
    def uses_psk(self) -> bool:
        return self.psk_count > 0

    @classmethod
    def from_name(cls, name: str) -> HandshakePattern:
        """Build ``name`` (e.g. ``"XXpsk3"``), applying each ``pskN`` modifier in order."""
        match = re.fullmatch(r"([A-Z0-9]+?)((?:psk\d+)(?:\+psk\d+)*)?", name)
        if not match or match.group(1) not in _BASE:
            raise NoiseError(f"unknown handshake pattern {name!r}")
        base = match.group(1)
        ipre, rpre, msgs = _BASE[base]
        messages = [list(_tokens(m)) for m in msgs]
        for modifier in re.findall(r"psk(\d+)", match.group(2) or ""):
            position = int(modifier)
            if position == 0:
                messages[0].insert(0, "psk")
            elif position <= len(messages):
                messages[position - 1].append("psk")
            else:
                raise NoiseError(f"{name}: psk{position} is past the last message")
        return cls(
            name=name,
            initiator_pre=_tokens(ipre),
            responder_pre=_tokens(rpre),
            messages=tuple(tuple(m) for m in messages),
            one_way=base in ONE_WAY,
        )


@attrs.frozen(slots=True)
class ProtocolName:
    """The four parts of ``Noise_<pattern>_<dh>_<cipher>_<hash>``."""

    full: str
    pattern: HandshakePattern
    dh: str
    cipher: str
    hash: str


@functools.lru_cache(maxsize=32)
def parse_protocol_name(full: str) -> ProtocolName:
    """Parse and validate a Noise protocol name against what this package supports. Cached:
    every handshake parses its name, a node uses one or two, and the result is immutable."""
    parts = full.split("_")
    if len(parts) != 5 or parts[0] != "Noise":
        raise NoiseError(f"not a Noise protocol name: {full!r}")
    _, pattern, dh, cipher, hash_name = parts
    if dh != "25519":
        raise NoiseError(f"unsupported DH {dh!r} (only 25519)")
    from .primitives import CIPHERS, HASHES

    if cipher not in CIPHERS:
        raise NoiseError(f"unsupported cipher {cipher!r}")
    if hash_name not in HASHES:
        raise NoiseError(f"unsupported hash {hash_name!r}")
    return ProtocolName(full, HandshakePattern.from_name(pattern), dh, cipher, hash_name)
