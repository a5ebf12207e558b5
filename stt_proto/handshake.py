"""The STT handshake: Noise XX (XXpsk3 with a network psk) over three packets.

``InitiatorHandshake`` and ``ResponderHandshake`` wrap a Noise ``HandshakeState`` with what STT puts
in the payloads (see :mod:`stt_proto.handshake_payload`) and the checks made on them: version,
connection ids, the AEAD choice (downgrade detection) and, for the initiator, the responder's
node id, recomputed from its proven static key and the signing key its payload carries.
"""

from __future__ import annotations

import attrs

from .config import SessionConfig
from .errors import AuthenticationError, CryptoError, DecodeError, HandshakeError, NoiseError
from .handshake_payload import (
    Field,
    Purpose,
    TransportSettings,
    decode_payload,
    decode_preference,
    encode_payload,
    encode_preference,
    negotiate_cipher,
    require,
)
from .identity import KEY_LEN, Identity, is_weak_signing_key, node_id_for
from .noise import HandshakeState, KeyPair
from .packet import CID_LEN, MIN_INITIAL_SIZE, VERSION, PacketCipher
from .randomness import RandomSource
from .varint import decode_varint, encode_varint

PROTOCOL = "Noise_XX_25519_ChaChaPoly_BLAKE2s"
PROTOCOL_PSK = "Noise_XXpsk3_25519_ChaChaPoly_BLAKE2s"
PROLOGUE = b"STT handshake v1"
INITIAL_HEADER_ROOM = 2 + 2 * CID_LEN + 1  # version, flags, two cids, empty token length
_VERSION = encode_varint(VERSION)


def local_settings(config: SessionConfig) -> TransportSettings:
    """The transport settings this node announces."""
    window = max(config.recv_buffer_size, config.max_frame_size * 4)
    return TransportSettings(
        max_frame_size=config.max_frame_size,
        max_concurrent_streams=config.max_concurrent_streams,
        max_message_size=config.max_message_size,
        initial_max_data=window,
        initial_max_stream_data=max(window // 2, config.max_frame_size * 2),
        max_datagram_size=config.max_frame_size,
        keep_alive_timeout_ms=int(config.keep_alive_timeout * 1000),
    )


@attrs.frozen(slots=True)
class LocalPayload:
    """What this node's handshake payloads repeat in every handshake, encoded once per
    configuration: its cipher preference and transport settings."""

    preference: tuple[str, ...]
    preference_bytes: bytes
    settings: TransportSettings
    settings_bytes: bytes


_LOCAL: dict[int, tuple[SessionConfig, LocalPayload]] = {}


def local_payload(config: SessionConfig) -> LocalPayload:
    """``config``'s :class:`LocalPayload`, kept while ``config`` is (configurations are frozen,
    and a node passes the same one to every session it makes)."""
    entry = _LOCAL.get(id(config))
    if entry is not None and entry[0] is config:
        return entry[1]
    preference = tuple(config.cipher_preference)
    settings = local_settings(config)
    local = LocalPayload(preference, encode_preference(preference), settings, settings.encode())
    if len(_LOCAL) >= 64:  # a process that makes configurations on the fly: bounded
        _LOCAL.clear()
    _LOCAL[id(config)] = (config, local)  # holding config keeps its id from being reused
    return local


@attrs.frozen(slots=True)
class HandshakeResult:
    """What a finished handshake yields: traffic ciphers per direction and the peer's identity."""

    cipher: str
    send: PacketCipher
    recv: PacketCipher
    peer_static: bytes
    peer_id: bytes  # node_id_for(peer_static, peer_signing_key)
    peer_settings: TransportSettings
    handshake_hash: bytes
    purpose: Purpose = Purpose.APPLICATION
    peer_signing_key: bytes = b""


def _new_state(config: SessionConfig, identity: Identity, rng: RandomSource,
               initiator: bool) -> HandshakeState:
    return HandshakeState(
        PROTOCOL_PSK if config.psk else PROTOCOL,
        initiator=initiator,
        prologue=PROLOGUE,
        s=identity.keypair,
        psks=[config.psk] if config.psk else [],
        ephemeral_factory=lambda: KeyPair.from_private_bytes(rng.token_bytes(32)),
    )


def _check_version(fields: dict[int, bytes]) -> None:
    try:
        version, _ = decode_varint(require(fields, Field.VERSION))
    except CryptoError:
        raise
    except Exception as exc:  # DecodeError
        raise HandshakeError(f"bad version field: {exc}") from None
    if version != VERSION:
        raise HandshakeError(f"peer speaks version {version}, we speak {VERSION}")


def _read(state: HandshakeState, message: bytes, which: str) -> dict[int, bytes]:
    try:
        payload = state.read_message(message)
    except CryptoError as exc:
        raise HandshakeError(f"handshake {which} failed to authenticate ({exc}): it was "
                             "tampered with, or the peers' psk settings differ") from None
    except NoiseError as exc:
        raise HandshakeError(f"handshake {which} arrived out of turn: {exc}") from None
    return decode_payload(payload)


def _signing_key(fields: dict[int, bytes]) -> bytes:
    key = require(fields, Field.SIGNING_KEY)
    if len(key) != KEY_LEN:
        raise HandshakeError(f"signing key of {len(key)} bytes, expected {KEY_LEN}")
    if is_weak_signing_key(key):
        raise HandshakeError(f"weak signing key {key.hex()} (small order or non-canonical)")
    return key


def _finish(state: HandshakeState, initiator: bool, cipher: str,
            settings: TransportSettings, purpose: Purpose, signing_key: bytes,
            peer_id: bytes | None = None) -> HandshakeResult:
    c1, c2 = state.split()
    k1, k2 = c1.key, c2.key
    if k1 is None or k2 is None or state.rs is None:  # pragma: no cover - split() guarantees
        raise HandshakeError("handshake finished without keys")
    send, recv = (k1, k2) if initiator else (k2, k1)
    if peer_id is None:
        peer_id = node_id_for(state.rs, signing_key)
    return HandshakeResult(cipher, PacketCipher(cipher, send), PacketCipher(cipher, recv),
                           state.rs, peer_id, settings, state.handshake_hash, purpose,
                           signing_key)


def _live(state: HandshakeState | None) -> HandshakeState:
    if state is None:
        raise HandshakeError("handshake message after the handshake finished")
    return state


def _purpose(fields: dict[int, bytes]) -> Purpose:
    raw = fields.get(Field.PURPOSE)
    if raw is None:
        return Purpose.APPLICATION
    try:
        value, end = decode_varint(raw)
        if end != len(raw):
            raise HandshakeError("trailing bytes after the purpose")
        return Purpose(value)
    except (DecodeError, ValueError):
        raise HandshakeError(f"unknown session purpose {raw.hex()}") from None


class InitiatorHandshake:
    """Writes message 1, reads message 2 (authenticating the responder), writes message 3."""

    def __init__(self, config: SessionConfig, identity: Identity, rng: RandomSource,
                 local_cid: bytes, expected_peer_id: bytes,
                 purpose: Purpose = Purpose.APPLICATION) -> None:
        self._config = config
        self._purpose = purpose
        self._signing_public = identity.signing_public
        self._state: HandshakeState | None = _new_state(config, identity, rng, True)
        self._local_cid = local_cid
        self._expected_peer_id = expected_peer_id
        self._local = local = local_payload(config)
        self._preference = local.preference
        payload = encode_payload(
            {Field.VERSION: _VERSION, Field.CONNECTION_ID: local_cid,
             Field.CIPHER_PREFERENCE: local.preference_bytes},
            pad_to=MIN_INITIAL_SIZE - INITIAL_HEADER_ROOM - 32,
        )
        self.message1 = _live(self._state).write_message(payload)
        self.result: HandshakeResult | None = None

    def read_message2(self, message: bytes, header_scid: bytes) -> tuple[bytes, HandshakeResult]:
        """Process message 2; return message 3 and the result. Raises a :class:`HandshakeError`
        subclass."""
        state = _live(self._state)
        fields = _read(state, message, "message 2")
        _check_version(fields)
        if require(fields, Field.CONNECTION_ID) != header_scid:
            raise HandshakeError("responder connection id differs from the packet header")
        theirs = decode_preference(require(fields, Field.CIPHER_PREFERENCE))
        chosen = require(fields, Field.CHOSEN_CIPHER)
        expected = negotiate_cipher(self._preference, theirs)
        if chosen != encode_preference((expected,)):
            raise HandshakeError(f"cipher downgrade: the responder chose {chosen.hex()} where "
                                 f"both preferences give {expected}")
        settings = TransportSettings.decode(require(fields, Field.SETTINGS))
        signing_key = _signing_key(fields)
        rs = state.rs
        peer_id = node_id_for(rs, signing_key) if rs is not None else None
        if peer_id is None or peer_id != self._expected_peer_id:
            got = peer_id.hex() if peer_id is not None else "nothing"
            raise AuthenticationError(f"responder's node id is {got}, expected "
                                      f"{self._expected_peer_id.hex()}")
        fields3 = {Field.SETTINGS: self._local.settings_bytes,
                   Field.SIGNING_KEY: self._signing_public}
        if self._purpose is not Purpose.APPLICATION:
            fields3[Field.PURPOSE] = encode_varint(self._purpose)
        message3 = state.write_message(encode_payload(fields3))
        result = self.result = _finish(state, True, expected, settings, self._purpose,
                                       signing_key, peer_id)
        self._state = None  # keys split: free the Noise state (it holds ephemeral keys)
        return message3, result


class ResponderHandshake:
    """Reads message 1, writes message 2, reads message 3 (learning the initiator's identity)."""

    def __init__(self, config: SessionConfig, identity: Identity, rng: RandomSource) -> None:
        self._config = config
        self._signing_public = identity.signing_public
        self._state: HandshakeState | None = _new_state(config, identity, rng, False)
        self._local = local_payload(config)
        self._preference = self._local.preference
        self._cipher = ""
        self.peer_cid = b""
        self.result: HandshakeResult | None = None

    def read_message1(self, message: bytes, header_scid: bytes) -> None:
        fields = _read(_live(self._state), message, "message 1")
        _check_version(fields)
        peer_cid = require(fields, Field.CONNECTION_ID)
        if peer_cid != header_scid or len(peer_cid) != CID_LEN:
            raise HandshakeError("initiator connection id differs from the packet header")
        theirs = decode_preference(require(fields, Field.CIPHER_PREFERENCE))
        self._cipher = negotiate_cipher(theirs, self._preference)
        self.peer_cid = peer_cid

    def write_message2(self, local_cid: bytes) -> bytes:
        return _live(self._state).write_message(encode_payload({
            Field.VERSION: _VERSION,
            Field.CONNECTION_ID: local_cid,
            Field.CIPHER_PREFERENCE: self._local.preference_bytes,
            Field.CHOSEN_CIPHER: encode_preference((self._cipher,)),
            Field.SETTINGS: self._local.settings_bytes,
            Field.SIGNING_KEY: self._signing_public,
        }))

    def read_message3(self, message: bytes) -> HandshakeResult:
        state = _live(self._state)
        fields = _read(state, message, "message 3")
        settings = TransportSettings.decode(require(fields, Field.SETTINGS))
        self.result = _finish(state, False, self._cipher, settings, _purpose(fields),
                              _signing_key(fields))
        self._state = None  # keys split: free the Noise state (it holds ephemeral keys)
        return self.result
