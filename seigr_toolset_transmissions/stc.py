"""``stc.hash_data``, the manual's content hash: :func:`stt_proto.hash_data` (BLAKE2b-256)."""

from __future__ import annotations

from stt_proto import hash_data

__all__ = ["hash_data"]
