"""The import names the STT manual's samples use (``seigr_toolset_transmissions``), kept so the
seed chapter's code runs as typed. New code imports ``stt_proto`` and a runtime instead."""

from __future__ import annotations

from . import stc
from .session import ContentAffinityPool, PoolMissError

__all__ = ["ContentAffinityPool", "PoolMissError", "stc"]
