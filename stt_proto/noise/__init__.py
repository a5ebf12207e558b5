"""The Noise Protocol Framework (revision 34) on ``cryptography`` primitives.

Supports DH 25519; ciphers ChaChaPoly and AESGCM; hashes BLAKE2s, BLAKE2b, SHA256 and SHA512;
the one-way, fundamental and deferred handshake patterns and their ``pskN`` modifiers.
"""

from .patterns import HandshakePattern, parse_protocol_name
from .primitives import CIPHERS, HASHES, Cipher, HashFunction, KeyPair
from .state import CipherState, HandshakeState, SymmetricState

__all__ = [
    "CIPHERS",
    "HASHES",
    "Cipher",
    "CipherState",
    "HandshakePattern",
    "HandshakeState",
    "HashFunction",
    "KeyPair",
    "SymmetricState",
    "parse_protocol_name",
]
