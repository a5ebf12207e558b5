"""``from seigr_toolset_transmissions.session import ContentAffinityPool``, as the manual
writes it."""

from __future__ import annotations

from stt_proto import ContentAffinityPool, PoolMissError

__all__ = ["ContentAffinityPool", "PoolMissError"]
