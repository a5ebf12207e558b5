"""Every cacophony test vector for the supported patterns: ciphertexts and handshake hashes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PublicKey

from stt_proto.errors import CryptoError, NoiseError
from stt_proto.noise import HandshakeState, KeyPair
from stt_proto.noise.patterns import HandshakePattern

# The cacophony vectors (public domain; tests/vectors/LICENSE-cacophony-vectors.txt) ship with the
# repository, so a fresh clone tests itself with nothing beside it.
VECTORS = Path(__file__).resolve().parent / "vectors" / "noise-cacophony-25519.json"
REQUIRED = {"NN", "NK", "KK", "IK", "XX"}


def _load() -> list[dict[str, Any]]:
    vectors: list[dict[str, Any]] = json.loads(VECTORS.read_text())["vectors"]
    return vectors


ALL = _load()


def _pair(hexkey: str | None) -> KeyPair | None:
    return KeyPair.from_private_bytes(bytes.fromhex(hexkey)) if hexkey else None


def _run_vector(v: dict[str, Any]) -> None:
    def side(prefix: str, initiator: bool) -> HandshakeState:
        rs = v.get(f"{prefix}_remote_static")
        return HandshakeState(
            v["protocol_name"],
            initiator=initiator,
            prologue=bytes.fromhex(v[f"{prefix}_prologue"]),
            s=_pair(v.get(f"{prefix}_static")),
            e=_pair(v.get(f"{prefix}_ephemeral")),
            rs=bytes.fromhex(rs) if rs else None,
            psks=[bytes.fromhex(p) for p in v.get(f"{prefix}_psks", [])],
        )

    init, resp = side("init", True), side("resp", False)
    one_way = init.pattern.one_way
    n_handshake = len(init.pattern.messages)
    transport: tuple[Any, ...] = ()
    for i, msg in enumerate(v["messages"]):
        payload, expected = bytes.fromhex(msg["payload"]), bytes.fromhex(msg["ciphertext"])
        from_initiator = one_way or i % 2 == 0
        if i < n_handshake:
            sender, receiver = (init, resp) if from_initiator else (resp, init)
            assert sender.write_message(payload) == expected, f"message {i}"
            assert receiver.read_message(expected) == payload
            if i == n_handshake - 1:
                assert init.handshake_hash.hex() == v["handshake_hash"]
                assert resp.handshake_hash.hex() == v["handshake_hash"]
                transport = (init.split(), resp.split())
        else:
            (i_c1, i_c2), (r_c1, r_c2) = transport
            send, recv = (i_c1, r_c1) if from_initiator else (r_c2, i_c2)
            assert send.encrypt_with_ad(b"", payload) == expected, f"transport message {i}"
            assert recv.decrypt_with_ad(b"", expected) == payload


@pytest.mark.parametrize("vector", ALL, ids=[v["protocol_name"] for v in ALL])
def test_cacophony_vector(vector: dict[str, Any]) -> None:
    _run_vector(vector)


def test_required_patterns_are_covered() -> None:
    names = {v["protocol_name"].split("_")[1] for v in ALL}
    for base in REQUIRED:
        assert base in names
        assert any(n.startswith(base + "psk") for n in names), base
    ciphers = {v["protocol_name"].split("_")[3] for v in ALL}
    hashes = {v["protocol_name"].split("_")[4] for v in ALL}
    assert ciphers == {"ChaChaPoly", "AESGCM"}
    assert hashes == {"BLAKE2s", "BLAKE2b", "SHA256", "SHA512"}


def test_tampered_handshake_message_is_rejected() -> None:
    v = next(x for x in ALL if x["protocol_name"] == "Noise_XX_25519_ChaChaPoly_BLAKE2s")
    init = HandshakeState(v["protocol_name"], initiator=True, s=_pair(v["init_static"]),
                          e=_pair(v["init_ephemeral"]))
    resp = HandshakeState(v["protocol_name"], initiator=False, s=_pair(v["resp_static"]),
                          e=_pair(v["resp_ephemeral"]))
    resp.read_message(init.write_message(b""))
    msg2 = bytearray(resp.write_message(b"hello"))
    msg2[40] ^= 1
    with pytest.raises(CryptoError):
        init.read_message(bytes(msg2))


def test_misuse_raises_noise_error() -> None:
    hs = HandshakeState("Noise_NN_25519_ChaChaPoly_SHA256", initiator=False)
    with pytest.raises(NoiseError):
        hs.write_message(b"")
    for _ in range(2):  # the parsed names are cached: a bad one fails every time
        with pytest.raises(NoiseError):
            HandshakeState("Noise_ZZ_25519_ChaChaPoly_SHA256", initiator=True)
        with pytest.raises(NoiseError):
            HandshakeState("Noise_XX_448_ChaChaPoly_SHA256", initiator=True)
    with pytest.raises(NoiseError):
        HandshakeState("Noise_XXpsk3_25519_ChaChaPoly_SHA256", initiator=True)


@pytest.mark.parametrize(("name", "count"), [("XX", 0), ("XXpsk3", 1), ("NNpsk0+psk2", 2)])
def test_a_pattern_counts_its_psks(name: str, count: int) -> None:
    pattern = HandshakePattern.from_name(name)
    assert (pattern.psk_count, pattern.uses_psk) == (count, count > 0)
    psks = [bytes(32)] * count
    HandshakeState(f"Noise_{name}_25519_ChaChaPoly_SHA256", initiator=True, psks=psks)
    with pytest.raises(NoiseError, match=f"needs {count} psk"):
        HandshakeState(f"Noise_{name}_25519_ChaChaPoly_SHA256", initiator=True,
                       psks=[*psks, bytes(32)])


def _fixed(last: int) -> KeyPair:
    return KeyPair.from_private_bytes(bytes(31) + bytes([last]))


def test_truncated_messages_raise_crypto_error() -> None:
    for cut in range(0, 48):
        init = HandshakeState("Noise_NN_25519_ChaChaPoly_SHA256", initiator=True,
                              ephemeral_factory=lambda: _fixed(9))
        resp = HandshakeState("Noise_NN_25519_ChaChaPoly_SHA256", initiator=False,
                              ephemeral_factory=lambda: _fixed(7))
        resp.read_message(init.write_message(b""))
        msg2 = resp.write_message(b"")
        with pytest.raises(CryptoError):
            init.read_message(msg2[:cut])


def test_each_peer_key_is_parsed_once_for_its_two_dh(monkeypatch: pytest.MonkeyPatch) -> None:
    """XX uses the peer's ephemeral and static keys in two DH each; cryptography parses a raw
    key at a cost of a fifth of a DH's arithmetic, so each is parsed once per handshake."""
    parsed: list[bytes] = []
    original = X25519PublicKey.from_public_bytes

    def counting(data: bytes) -> X25519PublicKey:
        parsed.append(bytes(data))
        return original(data)

    monkeypatch.setattr(X25519PublicKey, "from_public_bytes", counting)
    v = next(x for x in ALL if x["protocol_name"] == "Noise_XX_25519_ChaChaPoly_BLAKE2s")
    init = HandshakeState(v["protocol_name"], initiator=True, s=_pair(v["init_static"]),
                          e=_pair(v["init_ephemeral"]))
    resp = HandshakeState(v["protocol_name"], initiator=False, s=_pair(v["resp_static"]),
                          e=_pair(v["resp_ephemeral"]))
    for sender, receiver in ((init, resp), (resp, init), (init, resp)):
        receiver.read_message(sender.write_message(b""))
    assert init.handshake_hash == resp.handshake_hash
    # three DH a side (ee, es, se), four keys parsed in all: each side's view of the other's two
    keys = [init.re, init.rs, resp.re, resp.rs]
    assert None not in keys and sorted(parsed) == sorted(k for k in keys if k is not None)
    assert len(set(parsed)) == 4


def test_a_small_order_peer_key_fails_its_dh() -> None:
    """A peer ephemeral key of small order makes the shared secret all zeros: a CryptoError
    at the first DH that uses it, as a malformed one."""
    v = next(x for x in ALL if x["protocol_name"] == "Noise_XX_25519_ChaChaPoly_BLAKE2s")
    resp = HandshakeState(v["protocol_name"], initiator=False, s=_pair(v["resp_static"]),
                          e=_pair(v["resp_ephemeral"]))
    resp.read_message(bytes(32))  # message 1 is the initiator's e: here the point 0
    with pytest.raises(CryptoError, match="invalid X25519 public key"):
        resp.write_message(b"")  # e, ee: the DH with the small-order point
