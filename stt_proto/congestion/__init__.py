"""Congestion controllers behind one small interface, selected by name per node."""

from __future__ import annotations

from .base import CongestionController
from .bbr import Bbr
from .cubic import Cubic
from .newreno import NewReno

CONTROLLERS: dict[str, type[CongestionController]] = {
    "newreno": NewReno,
    "cubic": Cubic,
    "bbr": Bbr,
}


def make_controller(name: str, max_datagram: int, seed: int = 0) -> CongestionController:
    """``seed`` (from the session's random source) desynchronises flows that start together."""
    try:
        return CONTROLLERS[name](max_datagram, seed)
    except KeyError:
        raise ValueError(f"unknown congestion controller {name!r}") from None


__all__ = ["CONTROLLERS", "Bbr", "CongestionController", "Cubic", "NewReno", "make_controller"]
