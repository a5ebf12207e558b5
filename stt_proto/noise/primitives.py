"""Noise's DH, cipher and hash functions, each a thin adapter over ``cryptography``/``hashlib``."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

import attrs
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305

from ..errors import CryptoError, NoiseError

DHLEN = 32
TAG_LEN = 16
MAX_NONCE = (1 << 64) - 1
# HMAC's key pads (RFC 2104) as translation tables: key.translate(_IPAD) is key XOR 0x36...
_IPAD = bytes(byte ^ 0x36 for byte in range(256))
_OPAD = bytes(byte ^ 0x5C for byte in range(256))


@attrs.frozen(slots=True, repr=False)
class KeyPair:
    """An X25519 key pair; ``public`` is the 32-byte raw public key."""

    private: X25519PrivateKey
    public: bytes

    @classmethod
    def from_private_bytes(cls, raw: bytes) -> KeyPair:
        if len(raw) != DHLEN:
            raise ValueError(f"an X25519 private key is {DHLEN} bytes, got {len(raw)}")
        key = X25519PrivateKey.from_private_bytes(raw)
        return cls(key, key.public_key().public_bytes_raw())

    def exchange(self, public: X25519PublicKey) -> bytes:
        """X25519 with a peer key :func:`peer_key` parsed (a handshake uses each peer key in
        two DH); an all-zero result (small order point) fails."""
        try:
            shared = self.private.exchange(public)
        except ValueError as exc:
            raise CryptoError(f"invalid X25519 public key: {exc}") from None
        return shared

    def __repr__(self) -> str:
        return f"KeyPair(public={self.public.hex()})"


def peer_key(public: bytes) -> X25519PublicKey:
    """A peer's raw X25519 public key as ``cryptography`` takes it; CryptoError if malformed."""
    try:
        return X25519PublicKey.from_public_bytes(public)
    except ValueError as exc:
        raise CryptoError(f"invalid X25519 public key: {exc}") from None


class Cipher:
    """An AEAD cipher as Noise defines it: 32-byte key, 64-bit counter nonce, 16-byte tag."""

    name: str

    def __init__(self, key: bytes) -> None:
        raise NotImplementedError

    def nonce(self, n: int) -> bytes:
        raise NotImplementedError

    def encrypt(self, n: int, ad: bytes, plaintext: bytes) -> bytes:
        return self._aead.encrypt(self.nonce(n), plaintext, ad)

    def decrypt(self, n: int, ad: bytes, ciphertext: bytes) -> bytes:
        try:
            return self._aead.decrypt(self.nonce(n), ciphertext, ad)
        except InvalidTag:
            raise CryptoError("authentication tag mismatch") from None

    _aead: ChaCha20Poly1305 | AESGCM


class ChaChaPoly(Cipher):
    """ChaCha20-Poly1305; nonce is 4 zero bytes then the counter little-endian."""

    name = "ChaChaPoly"

    def __init__(self, key: bytes) -> None:
        self._aead = ChaCha20Poly1305(key)

    def nonce(self, n: int) -> bytes:
        return b"\x00\x00\x00\x00" + n.to_bytes(8, "little")


class AESGCMCipher(Cipher):
    """AES-256-GCM; nonce is 4 zero bytes then the counter big-endian."""

    name = "AESGCM"

    def __init__(self, key: bytes) -> None:
        self._aead = AESGCM(key)

    def nonce(self, n: int) -> bytes:
        return b"\x00\x00\x00\x00" + n.to_bytes(8, "big")


CIPHERS: dict[str, type[Cipher]] = {"ChaChaPoly": ChaChaPoly, "AESGCM": AESGCMCipher}


@attrs.frozen(slots=True)
class HashFunction:
    """A Noise hash: HASH, HMAC and the HKDF built from them."""

    name: str
    hashlen: int
    blocklen: int
    constructor: Callable[..., Any]

    def hash(self, data: bytes) -> bytes:
        digest: bytes = self.constructor(data).digest()
        return digest

    def hmac(self, key: bytes, data: bytes) -> bytes:
        """HMAC (RFC 2104) written out: the standard library's ``hmac.digest`` takes its slow,
        Python-level path for a hashlib constructor, a third slower per call (24 a handshake)."""
        if len(key) > self.blocklen:
            key = self.hash(key)
        block = key.ljust(self.blocklen, b"\x00")
        inner: bytes = self.constructor(block.translate(_IPAD) + data).digest()
        digest: bytes = self.constructor(block.translate(_OPAD) + inner).digest()
        return digest

    def hkdf(self, chaining_key: bytes, ikm: bytes, outputs: int) -> tuple[bytes, ...]:
        """Noise's HKDF: 2 or 3 outputs of ``hashlen`` bytes each, all keyed by one ``temp_key``
        whose pads are computed once."""
        if outputs not in (2, 3):
            raise NoiseError("HKDF yields 2 or 3 outputs")
        block = self.hmac(chaining_key, ikm).ljust(self.blocklen, b"\x00")  # hashlen <= blocklen
        inner_pad, outer_pad = block.translate(_IPAD), block.translate(_OPAD)
        new = self.constructor
        out1: bytes = new(outer_pad + new(inner_pad + b"\x01").digest()).digest()
        out2: bytes = new(outer_pad + new(inner_pad + out1 + b"\x02").digest()).digest()
        if outputs == 2:
            return out1, out2
        out3: bytes = new(outer_pad + new(inner_pad + out2 + b"\x03").digest()).digest()
        return out1, out2, out3


HASHES: dict[str, HashFunction] = {
    "BLAKE2s": HashFunction("BLAKE2s", 32, 64, hashlib.blake2s),
    "BLAKE2b": HashFunction("BLAKE2b", 64, 128, hashlib.blake2b),
    "SHA256": HashFunction("SHA256", 32, 64, hashlib.sha256),
    "SHA512": HashFunction("SHA512", 64, 128, hashlib.sha512),
}
