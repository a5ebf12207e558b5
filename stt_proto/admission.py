"""Admission of inbound handshakes: the budgets, limits and rate limiters an endpoint applies
before (and when) it gives a remote host any state.

Why each exists (see ``docs/wire-format.md``, "Admission"):

* Half-open responder handshakes have a budget of their own (``max_half_open``), apart from
  ``max_sessions``, so that hosts which answer RETRY and never send message 3 cannot fill the
  session table: beyond the budget the oldest half-open handshake is evicted, and under load one
  not finished within ``half_open_timeout`` is dropped. A legitimate handshake takes one round
  trip, so it is never the oldest for long.
* One source address (an IPv4 host, an IPv6 /64) may hold ``max_half_open_per_address``
  half-open handshakes; its further INITIALs are dropped (the initiator resends them).
* Established inbound sessions are limited per peer identity (``max_sessions_per_identity``)
  and, optionally, per source address (``max_sessions_per_address``).
* RETRY and REFUSE are answered from token buckets, global and per source address. A RETRY is
  about 60 bytes answering an INITIAL of at least 1,200, so it cannot amplify: its global
  budget only bounds work and is set high, so that a flood from many (spoofed) addresses does
  not starve legitimate initiators of their RETRY, while the per-address bucket keeps any one
  address from taking the global budget.

Nothing here reads a clock or draws randomness: callers pass ``now``.
"""

from __future__ import annotations

import hmac
import ipaddress
from collections import OrderedDict
from hashlib import blake2s
from typing import TypeVar

from .config import EndpointConfig, SessionConfig
from .errors import HandshakeError, ProtocolError
from .events import Address
from .handshake import ResponderHandshake
from .identity import Identity
from .randomness import RandomSource

TOKEN_LIFETIME = 10.0  # seconds a RETRY token stays valid
TOKEN_LEN = 24  # timestamp (8) and MAC (16)

# RETRY answers, per second and burst, globally; per source address the rate and the burst are
# max_half_open_per_address: an address needs no more RETRYs at once than it may hold handshakes.
RETRY_RATE = 100_000.0
RETRY_BURST = 4_000.0
# REFUSE answers (busy, handshake failed, evicted): per second and burst.
REFUSE_RATE = 1_000.0
REFUSE_BURST = 200.0
REFUSE_RATE_PER_ADDRESS = 10.0
REFUSE_BURST_PER_ADDRESS = 10.0
# Source addresses whose per-address buckets are remembered (least recently used forgotten).
ADDRESS_TABLE_SIZE = 4_096

# The CLOSE code of an inbound session closed as soon as its handshake completed because its
# identity or its address is over a session limit.
SESSION_LIMIT_CODE = 0x11

_K = TypeVar("_K", str, bytes)


def address_key(addr: Address) -> str:
    """The unit the per-address limits count: an IPv4 host, or an IPv6 /64 (one subscriber's
    prefix, which an attacker can fill with addresses at will). An IPv4-mapped IPv6 address
    counts as its IPv4 host; a host that is not an IP literal counts as itself."""
    host = addr[0]
    if ":" not in host:
        return host
    try:
        ip = ipaddress.IPv6Address(host.split("%", 1)[0])
    except ValueError:
        return host
    if ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ipaddress.IPv6Network((int(ip) >> 64 << 64, 64)))


class TokenBucket:
    """``rate`` tokens a second, at most ``burst`` saved up; starts full."""

    __slots__ = ("_at", "burst", "rate", "tokens")

    def __init__(self, rate: float, burst: float) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = burst
        self._at: float | None = None

    def take(self, now: float) -> bool:
        """Spend one token if there is one."""
        at = self._at
        if at is None:
            self._at = now
        elif now > at:
            self.tokens = min(self.burst, self.tokens + (now - at) * self.rate)
            self._at = now
        if self.tokens < 1.0:
            return False
        self.tokens -= 1.0
        return True


class AddressBuckets:
    """A token bucket per source address in a table of at most ``capacity`` entries: the least
    recently used is forgotten (as if full again), so a flood from many addresses costs bounded
    memory."""

    __slots__ = ("_buckets", "burst", "capacity", "rate")

    def __init__(self, rate: float, burst: float, capacity: int = ADDRESS_TABLE_SIZE) -> None:
        self.rate = rate
        self.burst = burst
        self.capacity = capacity
        self._buckets: OrderedDict[str, TokenBucket] = OrderedDict()

    def __len__(self) -> int:
        return len(self._buckets)

    def take(self, key: str, now: float) -> bool:
        buckets = self._buckets
        bucket = buckets.get(key)
        if bucket is None:
            if len(buckets) >= self.capacity:
                buckets.popitem(last=False)
            bucket = buckets[key] = TokenBucket(self.rate, self.burst)
        else:
            buckets.move_to_end(key)
        return bucket.take(now)


class RateLimiter:
    """A global bucket and per-address buckets: an answer needs a token from both (the
    per-address one first, so one address's flood does not spend the global budget)."""

    __slots__ = ("by_address", "overall")

    def __init__(self, rate: float, burst: float, rate_per_address: float,
                 burst_per_address: float) -> None:
        self.overall = TokenBucket(rate, burst)
        self.by_address = AddressBuckets(rate_per_address, burst_per_address)

    def allow(self, key: str, now: float) -> bool:
        return self.by_address.take(key, now) and self.overall.take(now)


class RetryTokens:
    """Stateless address-validation tokens: ``timestamp_ms(8) · BLAKE2s-MAC(timestamp · address
    · original dcid)[:16]``, valid for ``TOKEN_LIFETIME`` seconds from the address they were
    sent to. ``offset`` moves the caller's clock onto one every worker of a node shares (a
    token one worker made is checked by another: ``Endpoint.join_workers``)."""

    __slots__ = ("_key", "offset")

    def __init__(self, key: bytes, offset: float = 0.0) -> None:
        self._key = key
        self.offset = offset

    def _mac(self, stamp: bytes, addr: Address, dcid: bytes) -> bytes:
        material = stamp + f"{addr[0]}|{addr[1]}".encode() + dcid
        return blake2s(material, key=self._key, digest_size=16).digest()

    def make(self, addr: Address, dcid: bytes, now: float) -> bytes:
        stamp = int((now + self.offset) * 1000).to_bytes(8, "big")
        return stamp + self._mac(stamp, addr, dcid)

    def valid(self, token: bytes, addr: Address, dcid: bytes, now: float) -> bool:
        if len(token) != TOKEN_LEN:
            return False
        stamp = token[:8]
        issued = int.from_bytes(stamp, "big") / 1000
        if not 0 <= now + self.offset - issued <= TOKEN_LIFETIME:
            return False
        return hmac.compare_digest(token[8:], self._mac(stamp, addr, dcid))


def read_message1(config: SessionConfig, identity: Identity, rng: RandomSource, body: bytes,
                  scid: bytes) -> ResponderHandshake | None:
    """The responder handshake having read an INITIAL's Noise message 1 (version, connection
    id, cipher list and, with a psk, its authentication), or None if it does not read: done
    before a session exists, so that junk costs none. Message 1 needs no Diffie-Hellman."""
    handshake = ResponderHandshake(config, identity, rng)
    try:
        handshake.read_message1(body, scid)
    except (HandshakeError, ProtocolError):
        return None
    return handshake


class Admission:
    """Per-endpoint bookkeeping of inbound sessions: half-open handshakes (oldest first) and
    established ones per source address and per peer identity."""

    __slots__ = ("_accepted", "_by_address", "_by_identity", "_half_open",
                 "_half_open_by_address", "config", "evicted", "refusals", "retries")

    def __init__(self, config: EndpointConfig) -> None:
        self.config = config
        # cid -> (address key, time of its INITIAL), in the order they were admitted
        self._half_open: OrderedDict[bytes, tuple[str, float]] = OrderedDict()
        self._half_open_by_address: dict[str, int] = {}
        # cid -> (address key, peer identity) of inbound sessions past their handshake
        self._accepted: dict[bytes, tuple[str, bytes]] = {}
        self._by_address: dict[str, int] = {}
        self._by_identity: dict[bytes, int] = {}
        per_address = float(config.max_half_open_per_address)
        self.retries = RateLimiter(RETRY_RATE, RETRY_BURST, per_address, per_address)
        self.refusals = RateLimiter(REFUSE_RATE, REFUSE_BURST, REFUSE_RATE_PER_ADDRESS,
                                    REFUSE_BURST_PER_ADDRESS)
        self.evicted = 0  # half-open handshakes dropped for the budget or the load timeout

    # -- half-open --------------------------------------------------------------------------------

    @property
    def half_open(self) -> int:
        return len(self._half_open)

    @property
    def under_load(self) -> bool:
        """At or above ``retry_threshold`` half-open handshakes, or with the half-open budget
        full: new INITIALs need a token (so that only validated addresses can evict a
        half-open handshake) and half-open ones get ``half_open_timeout``."""
        config = self.config
        return len(self._half_open) >= min(config.retry_threshold, config.max_half_open)

    def address_half_open_full(self, key: str) -> bool:
        return self._half_open_by_address.get(key, 0) >= self.config.max_half_open_per_address

    def address_established_full(self, key: str) -> bool:
        limit = self.config.max_sessions_per_address
        return limit > 0 and self._by_address.get(key, 0) >= limit

    def to_evict(self, now: float) -> list[bytes]:
        """The half-open handshakes to drop before admitting one more: under load, those older
        than ``half_open_timeout``; then the oldest while the budget is full."""
        victims: list[bytes] = []
        half_open = self._half_open
        cutoff = now - self.config.half_open_timeout if self.under_load else None
        room = self.config.max_half_open - 1  # what may stay, leaving room for the new one
        left = len(half_open)
        for cid, (_, born) in half_open.items():  # oldest first
            if left <= room and (cutoff is None or born > cutoff):
                break
            victims.append(cid)
            left -= 1
        return victims

    def add_half_open(self, cid: bytes, key: str, now: float) -> None:
        self._half_open[cid] = (key, now)
        self._half_open_by_address[key] = self._half_open_by_address.get(key, 0) + 1

    def _drop_half_open(self, cid: bytes) -> bool:
        entry = self._half_open.pop(cid, None)
        if entry is None:
            return False
        _decrement(self._half_open_by_address, entry[0])
        return True

    # -- established ------------------------------------------------------------------------------

    def accept(self, cid: bytes, identity: bytes) -> str | None:
        """Move a half-open handshake that completed to the established counts; returns why it
        must be closed instead (over the per-identity or per-address limit), or None."""
        entry = self._half_open.get(cid)
        key = entry[0] if entry is not None else ""
        self._drop_half_open(cid)
        per_identity = self.config.max_sessions_per_identity
        if per_identity and self._by_identity.get(identity, 0) >= per_identity:
            return f"over max_sessions_per_identity ({per_identity}) for this identity"
        if self.address_established_full(key):
            return (f"over max_sessions_per_address ({self.config.max_sessions_per_address}) "
                    "for this address")
        self._accepted[cid] = (key, identity)
        self._by_address[key] = self._by_address.get(key, 0) + 1
        self._by_identity[identity] = self._by_identity.get(identity, 0) + 1
        return None

    def forget(self, cid: bytes) -> None:
        """The session ended (or was evicted): release whatever it counted against."""
        if self._drop_half_open(cid):
            return
        entry = self._accepted.pop(cid, None)
        if entry is not None:
            _decrement(self._by_address, entry[0])
            _decrement(self._by_identity, entry[1])


def _decrement(counts: dict[_K, int], key: _K) -> None:
    left = counts.get(key, 0) - 1
    if left > 0:
        counts[key] = left
    else:
        counts.pop(key, None)
