"""Benchmarks run both ends on IPv4 loopback, like their raw-UDP baselines."""

from __future__ import annotations

from typing import Any


def on_loopback(settings: dict[str, Any]) -> dict[str, Any]:
    """``settings`` bound to 127.0.0.1 unless they name a host: a default node binds the
    dual-stack address, and its ``address`` (``::``) would be dialled over IPv6 loopback."""
    return {"host": "127.0.0.1", **settings}


def one_peer_sessions(count: int) -> dict[str, Any]:
    """Settings for a server that ``count`` sessions reach from one client (one identity, one
    address): the admission limits per identity and per address, defences against floods,
    are raised to ``count`` so that a benchmark measures the handshakes themselves."""
    return {"max_sessions_per_identity": max(1000, count),
            "max_half_open_per_address": max(1024, count), "max_half_open": max(4096, count)}
