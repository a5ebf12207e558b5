"""Noise's three state objects: CipherState, SymmetricState and HandshakeState (spec section 5)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PublicKey

from ..errors import CryptoError, NoiseError
from .patterns import ProtocolName, parse_protocol_name
from .primitives import (
    CIPHERS,
    DHLEN,
    HASHES,
    MAX_NONCE,
    TAG_LEN,
    Cipher,
    HashFunction,
    KeyPair,
    peer_key,
)

MAX_MESSAGE_LEN = 65535


class CipherState:
    """A key and a counter nonce; passes data through unchanged until a key is set."""

    __slots__ = ("_cipher", "_cipher_type", "key", "n")

    def __init__(self, cipher_type: type[Cipher], key: bytes | None = None) -> None:
        self._cipher_type = cipher_type
        self.key: bytes | None = None
        self._cipher: Cipher | None = None
        self.n = 0
        if key is not None:
            self.initialize_key(key)

    def initialize_key(self, key: bytes) -> None:
        self.key = key
        self._cipher = None  # made at first use: Split's two states are read for their keys only
        self.n = 0

    def has_key(self) -> bool:
        return self.key is not None

    def _aead(self) -> Cipher:
        cipher = self._cipher
        if cipher is None:
            if self.key is None:
                raise NoiseError("no key")  # pragma: no cover - callers check has_key first
            cipher = self._cipher = self._cipher_type(self.key)
        return cipher

    def encrypt_with_ad(self, ad: bytes, plaintext: bytes) -> bytes:
        if self.key is None:
            return plaintext
        if self.n >= MAX_NONCE:
            raise NoiseError("nonce space exhausted; rekey or start a new session")
        out = self._aead().encrypt(self.n, ad, plaintext)
        self.n += 1
        return out

    def decrypt_with_ad(self, ad: bytes, ciphertext: bytes) -> bytes:
        if self.key is None:
            return ciphertext
        if self.n >= MAX_NONCE:
            raise NoiseError("nonce space exhausted; rekey or start a new session")
        out = self._aead().decrypt(self.n, ad, ciphertext)
        self.n += 1
        return out

    def rekey(self) -> None:
        """Noise REKEY: the new key is ENCRYPT(k, 2**64-1, empty, 32 zero bytes)[:32]."""
        if self.key is None:
            raise NoiseError("cannot rekey a CipherState without a key")
        new_key = self._aead().encrypt(MAX_NONCE, b"", bytes(32))[:32]
        n = self.n
        self.initialize_key(new_key)
        self.n = n


_INITIAL_HASHES: dict[str, bytes] = {}


def _initial_hash(full_name: str, hash_function: HashFunction) -> bytes:
    """InitializeSymmetric's ``h`` for a protocol name, computed once per name (a node uses one
    or two; every handshake starts from it)."""
    h = _INITIAL_HASHES.get(full_name)
    if h is None:
        name = full_name.encode("ascii")
        if len(name) <= hash_function.hashlen:
            h = name + bytes(hash_function.hashlen - len(name))
        else:
            h = hash_function.hash(name)
        if len(_INITIAL_HASHES) < 64:
            _INITIAL_HASHES[full_name] = h
    return h


class SymmetricState:
    """The chaining key ``ck`` and handshake hash ``h`` that every token mixes into."""

    __slots__ = ("cipher_state", "ck", "h", "hash")

    def __init__(self, protocol: ProtocolName) -> None:
        self.hash = HASHES[protocol.hash]
        self.h = _initial_hash(protocol.full, self.hash)
        self.ck = self.h
        self.cipher_state = CipherState(CIPHERS[protocol.cipher])

    def _cipher_key(self, material: bytes) -> bytes:
        return material[:32]

    def mix_key(self, ikm: bytes) -> None:
        self.ck, temp_k = self.hash.hkdf(self.ck, ikm, 2)
        self.cipher_state.initialize_key(self._cipher_key(temp_k))

    def mix_hash(self, data: bytes) -> None:
        self.h = self.hash.hash(self.h + data)

    def mix_key_and_hash(self, ikm: bytes) -> None:
        self.ck, temp_h, temp_k = self.hash.hkdf(self.ck, ikm, 3)
        self.mix_hash(temp_h)
        self.cipher_state.initialize_key(self._cipher_key(temp_k))

    def encrypt_and_hash(self, plaintext: bytes) -> bytes:
        ciphertext = self.cipher_state.encrypt_with_ad(self.h, plaintext)
        self.mix_hash(ciphertext)
        return ciphertext

    def decrypt_and_hash(self, ciphertext: bytes) -> bytes:
        plaintext = self.cipher_state.decrypt_with_ad(self.h, ciphertext)
        self.mix_hash(ciphertext)
        return plaintext

    def split(self) -> tuple[CipherState, CipherState]:
        k1, k2 = self.hash.hkdf(self.ck, b"", 2)
        cipher_type = self.cipher_state._cipher_type
        return (
            CipherState(cipher_type, self._cipher_key(k1)),
            CipherState(cipher_type, self._cipher_key(k2)),
        )


class HandshakeState:
    """Runs one handshake pattern for one side, message by message.

    ``ephemeral_factory`` supplies ephemeral key pairs (tests inject fixed ones); ``e`` and ``re``
    may be given for patterns that pre-message them, as in the specification.
    """

    def __init__(
        self,
        protocol_name: str,
        *,
        initiator: bool,
        prologue: bytes = b"",
        s: KeyPair | None = None,
        e: KeyPair | None = None,
        rs: bytes | None = None,
        re: bytes | None = None,
        psks: Sequence[bytes] = (),
        ephemeral_factory: Callable[[], KeyPair] | None = None,
    ) -> None:
        self.protocol = parse_protocol_name(protocol_name)
        self.pattern = self.protocol.pattern
        self.initiator = initiator
        self.s, self.e, self.rs, self.re = s, e, rs, re
        self._re_key: X25519PublicKey | None = None  # re and rs parsed: see _peer_key
        self._rs_key: X25519PublicKey | None = None
        for psk in psks:
            if len(psk) != 32:
                raise NoiseError(f"a psk is 32 bytes, got {len(psk)}")
        if len(psks) != self.pattern.psk_count:
            raise NoiseError(
                f"{self.pattern.name} needs {self.pattern.psk_count} psk(s), got {len(psks)}"
            )
        self._psks = list(psks)
        self._uses_psk = self.pattern.uses_psk  # read per ephemeral key: a property's scan
        self._ephemeral_factory = ephemeral_factory
        self.symmetric = SymmetricState(self.protocol)
        self.symmetric.mix_hash(prologue)
        self._message_index = 0
        self._result: tuple[CipherState, CipherState] | None = None
        self._mix_pre_messages()

    def _mix_pre_messages(self) -> None:
        for owner_is_initiator, tokens in (
            (True, self.pattern.initiator_pre),
            (False, self.pattern.responder_pre),
        ):
            mine = owner_is_initiator == self.initiator
            for token in tokens:
                if token == "s":
                    key = self.s.public if (mine and self.s) else (None if mine else self.rs)
                elif token == "e":
                    key = self.e.public if (mine and self.e) else (None if mine else self.re)
                else:
                    raise NoiseError(f"bad pre-message token {token!r}")
                if key is None:
                    raise NoiseError(f"{self.pattern.name} needs the pre-message key {token!r}")
                self.symmetric.mix_hash(key)

    # -- turn keeping ------------------------------------------------------------------------

    @property
    def is_finished(self) -> bool:
        return self._result is not None

    @property
    def is_my_turn(self) -> bool:
        if self.is_finished:
            return False
        initiator_turn = self._message_index % 2 == 0 or self.pattern.one_way
        return initiator_turn == self.initiator

    @property
    def handshake_hash(self) -> bytes:
        return self.symmetric.h

    def split(self) -> tuple[CipherState, CipherState]:
        """The two transport CipherStates: (initiator->responder, responder->initiator)."""
        if self._result is None:
            raise NoiseError("handshake not finished")
        return self._result

    def _finish_if_done(self) -> None:
        self._message_index += 1
        if self._message_index == len(self.pattern.messages):
            self._result = self.symmetric.split()

    def _dh_for(self, token: str) -> bytes:
        s, e = self.s, self.e
        if token == "ee":
            pair, ephemeral = e, True
        elif token == "ss":
            pair, ephemeral = s, False
        elif token == "es":
            pair, ephemeral = (e, False) if self.initiator else (s, True)
        else:  # "se"
            pair, ephemeral = (s, True) if self.initiator else (e, False)
        public = self._peer_key(ephemeral)
        if pair is None or public is None:
            raise NoiseError(f"token {token!r} needs a key that is missing")
        return pair.exchange(public)

    def _peer_key(self, ephemeral: bool) -> X25519PublicKey | None:
        """The peer's ephemeral or static key as ``cryptography`` takes it, parsed at its first
        DH: XX uses each in two, and a parse costs a fifth of the DH's arithmetic in a busy
        process (OpenSSL looks its algorithm up by name every time)."""
        if ephemeral:
            if self._re_key is None and self.re is not None:
                self._re_key = peer_key(self.re)
            return self._re_key
        if self._rs_key is None and self.rs is not None:
            self._rs_key = peer_key(self.rs)
        return self._rs_key

    def _next_psk(self) -> bytes:
        if not self._psks:
            raise NoiseError("no psk left for a psk token")
        return self._psks.pop(0)

    # -- messages ----------------------------------------------------------------------------

    def write_message(self, payload: bytes) -> bytes:
        if not self.is_my_turn:
            raise NoiseError("write_message called out of turn")
        sym = self.symmetric
        out = bytearray()
        for token in self.pattern.messages[self._message_index]:
            if token == "e":
                if self.e is None:
                    if self._ephemeral_factory is None:
                        raise NoiseError("no ephemeral key and no factory to make one")
                    self.e = self._ephemeral_factory()
                out += self.e.public
                sym.mix_hash(self.e.public)
                if self._uses_psk:
                    sym.mix_key(self.e.public)
            elif token == "s":
                if self.s is None:
                    raise NoiseError("pattern sends a static key but none was given")
                out += sym.encrypt_and_hash(self.s.public)
            elif token == "psk":
                sym.mix_key_and_hash(self._next_psk())
            else:
                sym.mix_key(self._dh_for(token))
        out += sym.encrypt_and_hash(payload)
        if len(out) > MAX_MESSAGE_LEN:
            raise NoiseError(f"handshake message of {len(out)} bytes exceeds {MAX_MESSAGE_LEN}")
        self._finish_if_done()
        return bytes(out)

    def read_message(self, message: bytes) -> bytes:
        """Process the peer's next message; raises :class:`CryptoError` on any bad input."""
        if self.is_finished or self.is_my_turn:
            raise NoiseError("read_message called out of turn")
        if len(message) > MAX_MESSAGE_LEN:
            raise CryptoError(f"handshake message of {len(message)} bytes is too long")
        sym = self.symmetric
        view = memoryview(message)
        pos = 0
        for token in self.pattern.messages[self._message_index]:
            if token == "e":
                if pos + DHLEN > len(view):
                    raise CryptoError("handshake message truncated in an ephemeral key")
                self.re = bytes(view[pos : pos + DHLEN])
                pos += DHLEN
                sym.mix_hash(self.re)
                if self._uses_psk:
                    sym.mix_key(self.re)
            elif token == "s":
                size = DHLEN + (TAG_LEN if sym.cipher_state.has_key() else 0)
                if pos + size > len(view):
                    raise CryptoError("handshake message truncated in a static key")
                self.rs = sym.decrypt_and_hash(bytes(view[pos : pos + size]))
                pos += size
            elif token == "psk":
                sym.mix_key_and_hash(self._next_psk())
            else:
                sym.mix_key(self._dh_for(token))
        rest = bytes(view[pos:])
        if sym.cipher_state.has_key() and len(rest) < TAG_LEN:
            raise CryptoError("handshake message truncated before its payload tag")
        payload = sym.decrypt_and_hash(rest)
        self._finish_if_done()
        return payload
