"""Benchmarks run both ends on IPv4 loopback, like their raw-UDP baselines."""

from __future__ import annotations

from typing import Any


def on_loopback(settings: dict[str, Any]) -> dict[str, Any]:
    """``settings`` bound to 127.0.0.1 unless they name a host: a default node binds the
    dual-stack address, and its ``address`` (``::``) would be dialled over IPv6 loopback."""
    return {"host": "127.0.0.1", **settings}
