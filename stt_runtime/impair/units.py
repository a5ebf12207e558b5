"""The impaired link's settings as people write them: ``100mbit``, ``25ms``, ``1%``, ``1bdp``.

Each parser takes a string (or a number, taken as the base unit: bit/s, seconds, a fraction,
bytes) and raises :class:`ValueError` with a message that says what was expected, so the
command line can name the option and the Python API can pass strings or numbers alike.
"""

from __future__ import annotations

import re

from stt_proto.sim import LinkProfile

_NUMBER = r"([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)"
_SI = {"": 1.0, "k": 1e3, "m": 1e6, "g": 1e9, "t": 1e12}
_RATE = re.compile(_NUMBER + r"\s*([kmgt]?)(bit|b)(?:/s|ps)?", re.IGNORECASE)
_DURATION = re.compile(_NUMBER + r"\s*(s|ms|us|µs|ns)", re.IGNORECASE)
_DURATIONS = {"s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}
_SIZE = re.compile(_NUMBER + r"\s*(b|kb|kib|mb|mib|gb|gib|bdp)?", re.IGNORECASE)
_SIZES = {"b": 1, "kb": 1000, "kib": 1024, "mb": 1000**2, "mib": 1024**2, "gb": 1000**3,
          "gib": 1024**3}
MIN_QUEUE = 1500
"""The smallest queue accepted: one Ethernet-sized datagram (a smaller one drops them all)."""

Number = int | float


def parse_rate(value: str | Number | None) -> float | None:
    """Bits per second from ``100mbit``, ``20Mbit/s``, ``1gbit``, ``12.5MB/s`` (bytes, capital
    B) or a number of bit/s; None for ``unlimited``, ``none`` or ``0``."""
    if value is None:
        return None
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError(f"a rate must not be negative, got {value}")
        return float(value) or None
    text = value.strip()
    if text.lower() in ("unlimited", "none", "0", ""):
        return None
    match = _RATE.fullmatch(text)
    if match is None:
        raise ValueError(f"expected a rate such as 100mbit, 20Mbit/s or 12.5MB/s, got {value!r}")
    number, prefix, unit = match.groups()
    if unit.lower() == "b" and unit != "B":
        raise ValueError(f"ambiguous rate {value!r}: write bits as {number}{prefix}bit, "
                         f"bytes as {number}{prefix.upper()}B/s")
    rate = float(number) * _SI[prefix.lower()] * (8 if unit == "B" else 1)
    if rate <= 0:
        return None
    return rate


def parse_duration(value: str | Number) -> float:
    """Seconds from ``25ms``, ``1.5s``, ``500us`` or a number of seconds (``0`` needs no unit)."""
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        text = value.strip()
        match = _DURATION.fullmatch(text)
        if match is not None:
            seconds = float(match.group(1)) * _DURATIONS[match.group(2).lower()]
        elif re.fullmatch(r"0*\.?0*", text) and text:
            seconds = 0.0
        else:
            raise ValueError(f"expected a time with its unit such as 25ms, 1s or 500us, "
                             f"got {value!r}")
    if seconds < 0:
        raise ValueError(f"a time must not be negative, got {value!r}")
    return seconds


def parse_fraction(value: str | Number) -> float:
    """A probability from ``1%``, ``0.5%`` or ``0.01``."""
    if isinstance(value, int | float):
        fraction = float(value)
    else:
        text = value.strip()
        if re.fullmatch(r"[1-9][0-9]*", text):
            raise ValueError(f"ambiguous {value!r}: write {text}% for a percentage (or a "
                             "fraction such as 0.01)")
        try:
            fraction = float(text[:-1]) / 100 if text.endswith("%") else float(text)
        except ValueError:
            raise ValueError(f"expected a percentage such as 1% or a fraction such as 0.01, "
                             f"got {value!r}") from None
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"expected 0% to 100% (or 0 to 1), got {value!r}")
    return fraction


def parse_queue(value: str | Number, rate: float | None, round_trip: float) -> int:
    """The drop-tail queue in bytes from ``64KiB``, ``1MB``, ``100000`` (bytes) or ``1bdp`` (one
    bandwidth-delay product: ``rate`` times ``round_trip``, the link's base round-trip time)."""
    if isinstance(value, int | float):
        size = float(value)
    else:
        match = _SIZE.fullmatch(value.strip())
        if match is None:
            raise ValueError(f"expected a size such as 1bdp, 64KiB or 1MB, got {value!r}")
        number, unit = float(match.group(1)), (match.group(2) or "b").lower()
        if unit == "bdp":
            if rate is None:
                raise ValueError(f"{value!r} needs a rate: a queue in bandwidth-delay products "
                                 "has no size on an unlimited link")
            if round_trip <= 0:
                raise ValueError(f"{value!r} needs a delay: a link without delay has no "
                                 "bandwidth-delay product")
            size = number * rate / 8 * round_trip
        else:
            size = number * _SIZES[unit]
    if size < MIN_QUEUE:
        raise ValueError(f"a queue of {size:.0f} bytes holds no full datagram (at least "
                         f"{MIN_QUEUE} bytes)")
    return int(size)


def impairment(*, rate: str | Number | None = None, delay: str | Number = 0,
               jitter: str | Number = 0, loss: str | Number = 0,
               queue: str | Number | None = None, duplicate: str | Number = 0,
               reorder: str | Number = 0, reorder_delay: str | Number = "5ms",
               round_trip: str | Number | None = None, mtu: int | None = None) -> LinkProfile:
    """One direction's :class:`~stt_proto.sim.LinkProfile` from strings or numbers.

    ``delay`` is this direction's one-way delay; a queue in ``bdp`` uses ``round_trip`` (default:
    twice ``delay``, the same delay back). ``queue`` None is the simulator's default (1 MiB);
    it matters only with a ``rate``. ``mtu``: the largest datagram (UDP payload) the link
    carries; larger ones are dropped, as by a path with don't-fragment set or a middlebox that
    drops IP fragments."""
    if mtu is not None and (isinstance(mtu, bool) or not isinstance(mtu, int) or mtu < 1):
        raise ValueError(f"mtu must be a positive number of bytes, got {mtu!r}")
    bandwidth = parse_rate(rate)
    latency = parse_duration(delay)
    trip = 2 * latency if round_trip is None else parse_duration(round_trip)
    profile = LinkProfile()
    queue_limit = profile.queue_limit if queue is None else parse_queue(queue, bandwidth, trip)
    return LinkProfile(latency=latency, jitter=parse_duration(jitter), bandwidth=bandwidth,
                       queue_limit=queue_limit, loss=parse_fraction(loss),
                       duplicate=parse_fraction(duplicate), reorder=parse_fraction(reorder),
                       reorder_delay=parse_duration(reorder_delay), mtu=mtu)


def describe(profile: LinkProfile) -> str:
    """One line for a person: ``100 Mbit/s, 25 ms ± 1 ms, 1% loss, queue 625000 B``."""
    parts = ["unlimited" if profile.bandwidth is None
             else f"{profile.bandwidth / 1e6:g} Mbit/s"]
    delay = f"{profile.latency * 1e3:g} ms"
    if profile.jitter:
        delay += f" + 0..{profile.jitter * 1e3:g} ms"
    parts.append(delay)
    if profile.bandwidth is not None:
        parts.append(f"queue {profile.queue_limit} B")
    for name in ("loss", "duplicate", "reorder"):
        fraction = getattr(profile, name)
        if fraction:
            parts.append(f"{fraction * 100:g}% {name}")
    if profile.reorder:
        parts.append(f"reorder delay {profile.reorder_delay * 1e3:g} ms")
    if profile.mtu is not None:
        parts.append(f"datagrams over {profile.mtu} B dropped")
    return ", ".join(parts)
