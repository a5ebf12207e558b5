"""An impaired link on real UDP sockets, built on the simulator's link model.

:class:`ImpairedLink` listens on a UDP address and forwards every datagram to a target, and
the target's replies back, through :class:`stt_proto.sim.DelayLine` (rate, delay, jitter,
loss, drop-tail queue, reordering, duplication): the model :class:`stt_proto.sim.Network`
simulates, on a real clock. The ``stt impair`` command runs one; docs/impair.md shows both.
"""

from __future__ import annotations

from .forwarder import Forwarder, ImpairStats
from .link import ImpairedLink
from .units import (
    describe,
    impairment,
    parse_duration,
    parse_fraction,
    parse_queue,
    parse_rate,
)

__all__ = ["Forwarder", "ImpairStats", "ImpairedLink", "describe", "impairment",
           "parse_duration", "parse_fraction", "parse_queue", "parse_rate"]
