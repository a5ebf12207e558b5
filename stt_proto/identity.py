"""A node's long-term identity: its static X25519 key (Noise), its Ed25519 signing key (DHT
records) and the node id that binds the two.

The node id is BLAKE2s-256(X25519 public key || Ed25519 public key). The Noise handshake proves
the X25519 half; the signing key travels in the hash-covered handshake payload, so a peer's id
covers both and a record signed with the Ed25519 key can be tied to the node that published it.

Identity files written before the signing key existed (``STT-IDENTITY-1``, the X25519 key alone)
still load: their Ed25519 seed is derived from the X25519 private key with keyed BLAKE2s, so one
such file always yields the same id, though not the id it had when node ids covered the X25519
key alone.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)

from .errors import SettingsError
from .noise.primitives import KeyPair
from .randomness import RandomSource, SystemRandom

NODE_ID_LEN = 32
KEY_LEN = 32  # an X25519 private key, an Ed25519 seed, either public key
SIGNATURE_LEN = 64
_FILE_MAGIC_V1 = b"STT-IDENTITY-1\n"  # the X25519 private key alone (hex)
_FILE_MAGIC = b"STT-IDENTITY-2\n"  # the X25519 private key, then the Ed25519 seed (hex lines)
_DERIVE_LABEL = b"STT identity v1: Ed25519 seed derived from the X25519 key"
_P = 2**255 - 19  # the field of Ed25519's curve
# The y coordinates of the curve's eight small-order points: 1 (order 1), p - 1 (order 2), 0
# (order 4) and the two roots of d*y^4 + 2*y^2 - 1 = 0 (order 8). A public key of small order
# "verifies" chosen signatures of many messages, so such keys are refused.
_SMALL_ORDER_YS = frozenset({
    0, 1, _P - 1,
    2707385501144840649318225287225658788936804267575313519463743609750303402022,
    55188659117513257062467267217118295137698188065244968500265048394206261417927,
})


def node_id_for(static_public: bytes, signing_public: bytes) -> bytes:
    """The 32-byte node id: BLAKE2s-256 of the X25519 public key then the Ed25519 public key."""
    return hashlib.blake2s(static_public + signing_public, digest_size=NODE_ID_LEN).digest()


def derived_signing_seed(static_private: bytes) -> bytes:
    """The Ed25519 seed of an identity that has only an X25519 key (a version-1 file): a PRF of
    that key, so the same file always gives the same node id."""
    return hashlib.blake2s(_DERIVE_LABEL, key=static_private, digest_size=KEY_LEN).digest()


def is_weak_signing_key(signing_public: bytes) -> bool:
    """Whether an Ed25519 public key is unusable: the wrong size, a non-canonical encoding, or a
    point of small order (for which signatures can be forged without any private key)."""
    if len(signing_public) != KEY_LEN:
        return True
    y = int.from_bytes(signing_public, "little") & ((1 << 255) - 1)
    return y >= _P or y in _SMALL_ORDER_YS


def verify_signature(signing_public: bytes, signature: bytes, message: bytes) -> bool:
    """Whether ``signature`` is ``signing_public``'s Ed25519 signature of ``message``. Never raises:
    its inputs come from the network."""
    if is_weak_signing_key(signing_public):
        return False
    try:
        Ed25519PublicKey.from_public_bytes(signing_public).verify(signature, message)
    except (InvalidSignature, ValueError, TypeError):
        return False
    return True


class Identity:
    """A static X25519 key pair and an Ed25519 signing key. ``node_id`` is what peers ask for
    when they connect."""

    __slots__ = ("keypair", "node_id", "signing_key", "signing_public")

    def __init__(self, keypair: KeyPair, signing_key: Ed25519PrivateKey | None = None) -> None:
        self.keypair = keypair
        if signing_key is None:
            signing_key = Ed25519PrivateKey.from_private_bytes(
                derived_signing_seed(_raw_private(keypair)))
        self.signing_key = signing_key
        self.signing_public = signing_key.public_key().public_bytes(Encoding.Raw,
                                                                    PublicFormat.Raw)
        self.node_id = node_id_for(keypair.public, self.signing_public)

    @classmethod
    def generate(cls, rng: RandomSource | None = None) -> Identity:
        rng = rng or SystemRandom()
        keypair = KeyPair.from_private_bytes(rng.token_bytes(KEY_LEN))
        return cls(keypair, Ed25519PrivateKey.from_private_bytes(rng.token_bytes(KEY_LEN)))

    @classmethod
    def from_private_bytes(cls, raw: bytes) -> Identity:
        """From :meth:`private_bytes` (64 bytes: the X25519 key, then the Ed25519 seed) or from
        an X25519 key alone (32 bytes: the signing key is derived from it)."""
        if len(raw) == 2 * KEY_LEN:
            return cls(KeyPair.from_private_bytes(raw[:KEY_LEN]),
                       Ed25519PrivateKey.from_private_bytes(raw[KEY_LEN:]))
        return cls(KeyPair.from_private_bytes(raw))

    @property
    def public_key(self) -> bytes:
        """The static X25519 public key (what the Noise handshake proves)."""
        return self.keypair.public

    def private_bytes(self) -> bytes:
        """Both private keys, 64 bytes: the X25519 key then the Ed25519 seed."""
        seed = self.signing_key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
        return _raw_private(self.keypair) + seed

    def sign(self, message: bytes) -> bytes:
        """An Ed25519 signature of ``message`` (64 bytes)."""
        return self.signing_key.sign(message)

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write both private keys to ``path``, readable by the owner only (mode 0600)."""
        target = Path(path)
        raw = self.private_bytes()
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.fchmod(fd, 0o600)
            os.write(fd, _FILE_MAGIC + raw[:KEY_LEN].hex().encode() + b"\n"
                     + raw[KEY_LEN:].hex().encode() + b"\n")
        finally:
            os.close(fd)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Identity:
        """Read a file :meth:`save` wrote, or an older one holding the X25519 key alone."""
        raw = Path(path).read_bytes()
        if raw.startswith(_FILE_MAGIC):
            body, lines = raw[len(_FILE_MAGIC):], 2
        elif raw.startswith(_FILE_MAGIC_V1):
            body, lines = raw[len(_FILE_MAGIC_V1):], 1
        else:
            raise SettingsError(f"{path}: not an STT identity file")
        try:
            keys = [bytes.fromhex(line.decode("ascii")) for line in body.split()]
            if len(keys) != lines or any(len(key) != KEY_LEN for key in keys):
                raise ValueError(f"expected {lines} key(s) of {KEY_LEN} bytes")
            return cls.from_private_bytes(b"".join(keys))
        except ValueError as exc:
            raise SettingsError(f"{path}: corrupt identity file ({exc})") from None

    def __repr__(self) -> str:
        return f"Identity(node_id={self.node_id.hex()})"


def _raw_private(keypair: KeyPair) -> bytes:
    return keypair.private.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
