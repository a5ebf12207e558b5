"""A node's long-term identity: its static X25519 key pair and the node id derived from it."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from .errors import SettingsError
from .noise.primitives import KeyPair
from .randomness import RandomSource, SystemRandom

NODE_ID_LEN = 32
_FILE_MAGIC = b"STT-IDENTITY-1\n"


def node_id_for(static_public: bytes) -> bytes:
    """The 32-byte node id: BLAKE2s-256 of the static X25519 public key."""
    return hashlib.blake2s(static_public, digest_size=32).digest()


class Identity:
    """A static key pair. ``node_id`` is what peers ask for when they connect."""

    __slots__ = ("keypair", "node_id")

    def __init__(self, keypair: KeyPair) -> None:
        self.keypair = keypair
        self.node_id = node_id_for(keypair.public)

    @classmethod
    def generate(cls, rng: RandomSource | None = None) -> Identity:
        return cls(KeyPair.from_private_bytes((rng or SystemRandom()).token_bytes(32)))

    @classmethod
    def from_private_bytes(cls, raw: bytes) -> Identity:
        return cls(KeyPair.from_private_bytes(raw))

    @property
    def public_key(self) -> bytes:
        return self.keypair.public

    def private_bytes(self) -> bytes:
        from cryptography.hazmat.primitives.serialization import (
            Encoding,
            NoEncryption,
            PrivateFormat,
        )

        return self.keypair.private.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the private key to ``path``, readable by the owner only (mode 0600)."""
        target = Path(path)
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.fchmod(fd, 0o600)
            os.write(fd, _FILE_MAGIC + self.private_bytes().hex().encode() + b"\n")
        finally:
            os.close(fd)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Identity:
        raw = Path(path).read_bytes()
        if not raw.startswith(_FILE_MAGIC):
            raise SettingsError(f"{path}: not an STT identity file")
        try:
            key = bytes.fromhex(raw[len(_FILE_MAGIC):].strip().decode("ascii"))
            return cls.from_private_bytes(key)
        except ValueError as exc:
            raise SettingsError(f"{path}: corrupt identity file ({exc})") from None

    def __repr__(self) -> str:
        return f"Identity(node_id={self.node_id.hex()})"
