"""What the handshake path computes once instead of per handshake, and the work it no longer
repeats (issue 25, handshakes/s): each cache gives what a fresh computation gives, and is not
shared where it must not be."""

from __future__ import annotations

import hmac
import os
import sys
from types import FrameType
from typing import Any

import pytest

import stt_proto
from stt_proto.config import SessionConfig
from stt_proto.frames import PaddingFrame, PingFrame, decode_frame, parse_frames
from stt_proto.handshake import (
    InitiatorHandshake,
    ResponderHandshake,
    local_payload,
    local_settings,
)
from stt_proto.handshake_payload import encode_preference
from stt_proto.identity import Identity, node_id_for
from stt_proto.noise import HASHES, CipherState, HandshakeState
from stt_proto.noise.primitives import ChaChaPoly
from stt_proto.noise.state import _INITIAL_HASHES
from stt_proto.randomness import DeterministicRandom

# -- HMAC and HKDF written out ------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(HASHES))
@pytest.mark.parametrize("key_len", [0, 32, 64, 65, 128, 129, 200])
def test_hmac_is_rfc_2104(name: str, key_len: int) -> None:
    function = HASHES[name]
    key = bytes(range(key_len % 256)) * (key_len // 256 + 1)
    key = key[:key_len]
    data = os.urandom(97)
    assert function.hmac(key, data) == hmac.digest(key, data, function.constructor)


@pytest.mark.parametrize("name", sorted(HASHES))
@pytest.mark.parametrize("outputs", [2, 3])
def test_hkdf_is_noise_hkdf(name: str, outputs: int) -> None:
    """Against the specification's HKDF over the standard library's HMAC."""
    function = HASHES[name]
    chaining_key, ikm = os.urandom(function.hashlen), os.urandom(32)

    def mac(key: bytes, data: bytes) -> bytes:
        return hmac.digest(key, data, function.constructor)

    temp = mac(chaining_key, ikm)
    out1 = mac(temp, b"\x01")
    out2 = mac(temp, out1 + b"\x02")
    expected = (out1, out2) if outputs == 2 else (out1, out2, mac(temp, out2 + b"\x03"))
    assert function.hkdf(chaining_key, ikm, outputs) == expected


# -- Noise state ----------------------------------------------------------------------------------


def test_cipher_state_makes_its_aead_at_first_use() -> None:
    """Split's two states are read for their keys only: no AEAD object is made for them, and one
    made later encrypts as an eagerly made one does."""
    key = os.urandom(32)
    state = CipherState(ChaChaPoly, key)
    assert state.has_key() and state._cipher is None
    sealed = state.encrypt_with_ad(b"ad", b"plaintext")
    assert state._cipher is not None
    assert sealed == ChaChaPoly(key).encrypt(0, b"ad", b"plaintext")
    again = CipherState(ChaChaPoly, key)
    assert again.decrypt_with_ad(b"ad", sealed) == b"plaintext"
    empty = CipherState(ChaChaPoly)
    assert not empty.has_key() and empty.encrypt_with_ad(b"ad", b"x") == b"x"


def test_initial_hash_is_computed_once_per_name() -> None:
    name = "Noise_XX_25519_ChaChaPoly_SHA512"  # 32 bytes <= SHA512's 64: padded, not hashed
    long_name = "Noise_XXpsk3_25519_ChaChaPoly_BLAKE2s"  # 37 bytes > 32: hashed
    _INITIAL_HASHES.clear()  # (the cache stops growing at 64 names: the vector tests use more)
    for protocol in (name, long_name):
        first = HandshakeState(protocol, initiator=True, psks=[bytes(32)] * ("psk" in protocol))
        assert protocol in _INITIAL_HASHES
        second = HandshakeState(protocol, initiator=True,
                                psks=[bytes(32)] * ("psk" in protocol))
        assert first.handshake_hash == second.handshake_hash
    digest = HASHES["BLAKE2s"].hash(long_name.encode())
    assert _INITIAL_HASHES[long_name] == digest
    assert _INITIAL_HASHES[name] == name.encode().ljust(64, b"\x00")


# -- what a node's payloads repeat ---------------------------------------------------------------


def test_local_payload_is_one_per_configuration() -> None:
    config = SessionConfig()
    local = local_payload(config)
    assert local_payload(config) is local  # the same configuration: encoded once
    assert local.settings == local_settings(config)
    assert local.settings_bytes == local_settings(config).encode()
    assert local.preference == tuple(config.cipher_preference)
    assert local.preference_bytes == encode_preference(local.preference)
    other = SessionConfig(max_frame_size=4096, cipher_preference=("ChaChaPoly", "AESGCM"))
    theirs = local_payload(other)
    assert theirs is not local  # an equal id never hands one configuration another's bytes
    assert theirs.settings_bytes == local_settings(other).encode() != local.settings_bytes
    assert theirs.preference_bytes == encode_preference(("ChaChaPoly", "AESGCM"))


def test_handshakes_carry_each_configurations_own_settings() -> None:
    """Two configurations in one process: each side announces its own settings, cached or not."""
    rng = DeterministicRandom(7)
    small = SessionConfig(max_frame_size=2000)
    large = SessionConfig(max_frame_size=30000)
    for initiator_config, responder_config in ((small, large), (large, small), (small, small)):
        client, server = Identity.generate(rng), Identity.generate(rng)
        initiator = InitiatorHandshake(initiator_config, client, rng, b"i" * 8, server.node_id)
        responder = ResponderHandshake(responder_config, server, rng)
        responder.read_message1(initiator.message1, b"i" * 8)
        message3, result = initiator.read_message2(responder.write_message2(b"r" * 8), b"r" * 8)
        assert result.peer_settings.max_frame_size == responder_config.max_frame_size
        assert result.peer_id == server.node_id == node_id_for(server.public_key,
                                                               server.signing_public)
        theirs = responder.read_message3(message3)
        assert theirs.peer_settings.max_frame_size == initiator_config.max_frame_size
        assert theirs.peer_id == client.node_id


# -- PADDING runs (path-MTU probes are KBs of them) ---------------------------------------------


def test_padding_runs_decode() -> None:
    assert parse_frames(b"\x01" + bytes(16000)) == [PingFrame(), PaddingFrame(16000)]
    assert parse_frames(bytes(3) + b"\x01" + bytes(2)) == [PaddingFrame(3), PingFrame(),
                                                           PaddingFrame(2)]
    assert parse_frames(b"\x00\x01") == [PaddingFrame(1), PingFrame()]
    view = memoryview(bytearray(b"\x01" + bytes(100) + b"\x01"))
    assert decode_frame(view, 1) == (PaddingFrame(100), 101)
    assert decode_frame(view[:-1], 1) == (PaddingFrame(100), 101)


@pytest.mark.skipif(stt_proto.COMPILED, reason="counts the interpreted lines (STT_PURE=1)")
def test_padding_run_is_not_measured_byte_by_byte() -> None:
    """A 16 KiB run of PADDING is measured in a few lines, not one loop turn per byte (that
    cost ~2 ms per path-MTU probe interpreted, and any peer can send such runs)."""
    lines = 0

    def trace(frame: FrameType, event: str, arg: Any) -> Any:
        nonlocal lines
        if event == "line":
            lines += 1
        return trace

    view = memoryview(b"\x01" + bytes(16384) + b"\x01" + bytes(3) + b"\x01")
    sys.settrace(trace)
    try:
        first = decode_frame(view, 1)
        second = decode_frame(view, 16386)
    finally:
        sys.settrace(None)
    assert first == (PaddingFrame(16384), 16385) and second == (PaddingFrame(3), 16389)
    assert lines < 40


