"""Settings validation, presets, identities and node ids."""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

import pytest

from stt_proto import EndpointConfig, Identity, SessionConfig, SettingsError, hash_data
from stt_runtime.settings import PRESETS, NodeSettings, preset


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_constructs_and_accepts_overrides(name: str) -> None:
    settings = preset(name, keep_alive_interval=5.0, keep_alive_timeout=15.0)
    assert settings.endpoint.session.keep_alive_interval == 5.0
    keywords = settings.keywords()
    for key, value in PRESETS[name].items():
        assert keywords[key] == value


def test_preset_values_follow_the_seed() -> None:
    low = preset("low_latency").endpoint.session
    assert (low.max_frame_size, low.no_delay, low.recv_buffer_size) == (4096, True, 512 * 1024)
    high = preset("high_throughput").endpoint.session
    assert (high.recv_buffer_size, high.max_concurrent_streams) == (8 * 1024**2, 64)
    assert high.max_frame_size >= 65507
    bal = preset("balanced").endpoint.session
    assert (bal.max_frame_size, bal.recv_buffer_size, bal.max_concurrent_streams) == (
        16384, 2 * 1024**2, 256)


@pytest.mark.parametrize(
    ("setting", "value"),
    [
        ("max_frame_size", 1199), ("max_frame_size", 65537), ("max_frame_size", "big"),
        ("port", -1), ("port", 70000), ("max_concurrent_streams", 0), ("max_sessions", 0),
        ("keep_alive_interval", 0), ("handshake_timeout", -1.0), ("recv_buffer_size", 10),
        ("send_buffer_size", 1 << 31), ("congestion_control", "vegas"), ("transport", "tcp"),
        ("psk", b"short"), ("no_delay", "yes"), ("max_message_size", 0),
        ("cipher_preference", ("AESGCM",)), ("workers", 0),
    ],
)
def test_invalid_settings_raise_value_error_naming_the_setting(setting: str, value: object) -> None:
    with pytest.raises(ValueError, match=setting):
        NodeSettings.build(**{setting: value})


def test_keep_alive_timeout_must_exceed_interval() -> None:
    with pytest.raises(SettingsError, match="keep_alive_timeout"):
        SessionConfig(keep_alive_interval=10.0, keep_alive_timeout=5.0)


def test_unknown_setting_is_named() -> None:
    with pytest.raises(SettingsError, match="frame_sise"):
        NodeSettings.build(frame_sise=4)
    with pytest.raises(SettingsError, match="frame_sise"):
        EndpointConfig.build(frame_sise=4)
    with pytest.raises(SettingsError, match="unknown preset"):
        preset("fastest")


def test_identity_round_trip_with_private_file(tmp_path: Path) -> None:
    identity = Identity.generate()
    path = tmp_path / "id.key"
    identity.save(path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    loaded = Identity.load(path)
    assert loaded.node_id == identity.node_id
    assert loaded.signing_public == identity.signing_public
    assert path.read_bytes().startswith(b"STT-IDENTITY-2\n")
    # the id covers both public keys: the X25519 one Noise proves and the Ed25519 signing one
    assert identity.node_id == hashlib.blake2s(identity.public_key + identity.signing_public,
                                               digest_size=32).digest()
    assert len(identity.node_id) == 32
    assert Identity.from_private_bytes(identity.private_bytes()).node_id == identity.node_id


def test_version_1_identity_file_still_loads_with_a_stable_id(tmp_path: Path) -> None:
    """A file from before signing keys (the X25519 key alone) loads; its signing key is derived
    from the X25519 key, so it gives the same id on every load and after a re-save."""
    private = bytes(range(32))
    old = tmp_path / "old.key"
    old.write_bytes(b"STT-IDENTITY-1\n" + private.hex().encode() + b"\n")
    first, second = Identity.load(old), Identity.load(old)
    assert first.node_id == second.node_id
    assert first.signing_public == second.signing_public
    assert first.public_key == Identity.from_private_bytes(private).public_key
    assert first.node_id == Identity.from_private_bytes(private).node_id
    assert first.node_id == hashlib.blake2s(first.public_key + first.signing_public,
                                            digest_size=32).digest()
    # a fresh identity's signing key is independent of its X25519 key
    assert Identity.generate().node_id != first.node_id
    new = tmp_path / "new.key"
    first.save(new)
    assert Identity.load(new).node_id == first.node_id


def test_signatures_verify_only_with_the_signing_key() -> None:
    from stt_proto.identity import verify_signature

    identity, other = Identity.generate(), Identity.generate()
    signature = identity.sign(b"message")
    assert verify_signature(identity.signing_public, signature, b"message")
    assert not verify_signature(identity.signing_public, signature, b"massage")
    assert not verify_signature(other.signing_public, signature, b"message")
    assert not verify_signature(b"short", signature, b"message")  # hostile input never raises
    assert not verify_signature(identity.signing_public, b"\x00" * 3, b"message")


def test_corrupt_identity_file_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad"
    bad.write_bytes(b"hello")
    with pytest.raises(SettingsError, match="not an STT identity"):
        Identity.load(bad)
    bad.write_bytes(b"STT-IDENTITY-1\nzz\n")
    with pytest.raises(SettingsError, match="corrupt"):
        Identity.load(bad)
    bad.write_bytes(b"STT-IDENTITY-2\n" + b"ab" * 32 + b"\n")  # the signing key is missing
    with pytest.raises(SettingsError, match="corrupt"):
        Identity.load(bad)


def test_hash_data_is_blake2b_256() -> None:
    assert hash_data(b"abc") == hashlib.blake2b(b"abc", digest_size=32).digest()
