"""Node and session settings, their validation, and the seed's presets.

Both runtimes build a :class:`NodeConfig` from ``STTNode(...)`` keyword arguments, so every range
check and preset lives here once. An invalid value raises :class:`SettingsError` (a ``ValueError``)
naming the setting and its allowed range.
"""

from __future__ import annotations

from typing import Any

import attrs

from .errors import SettingsError

CONGESTION_CONTROLLERS = ("bbr", "cubic", "newreno")
TRANSPORTS = ("udp", "websocket")
CIPHER_NAMES = ("AESGCM", "ChaChaPoly")
MIN_FRAME_SIZE = 1200  # the smallest datagram every IPv6 path carries
MAX_FRAME_SIZE = 65536  # the seed's "64 KB": accepted as typed, meaning the largest UDP allows
MAX_DATAGRAM = 65507  # the largest UDP payload over IPv4 (65,535 - 20 - 8), what 65,536 becomes


def frame_size(value: object, name: str = "max_frame_size") -> int:
    """Check a ``max_frame_size`` (node or stream level, one meaning: the largest datagram on
    the wire) and return the effective size. 1,200..65,536 is accepted; 65,508..65,536 mean
    "the largest datagram UDP allows" and become 65,507, the largest IPv4 UDP payload. A bad
    value raises :class:`SettingsError` (a ``ValueError``) naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise SettingsError(
            f"{name} must be an integer in {MIN_FRAME_SIZE}..{MAX_FRAME_SIZE}, got {value!r}")
    if not MIN_FRAME_SIZE <= value <= MAX_FRAME_SIZE:
        raise SettingsError(f"{name} must be in {MIN_FRAME_SIZE}..{MAX_FRAME_SIZE}, got {value!r}")
    return min(value, MAX_DATAGRAM)


def _host(_: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value is not None and (not isinstance(value, str) or not value):
        raise SettingsError(f"host must be None (every interface, IPv4 and IPv6) or an address "
                            f"string, got {value!r}")


def _range(name: str, lo: float, hi: float, *, integer: bool = False) -> Any:
    def check(_: object, attribute: attrs.Attribute[Any], value: Any) -> None:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise SettingsError(f"{name} must be a number in {lo}..{hi}, got {value!r}")
        if integer and not isinstance(value, int):
            raise SettingsError(f"{name} must be an integer in {lo}..{hi}, got {value!r}")
        if not lo <= value <= hi:
            raise SettingsError(f"{name} must be in {lo}..{hi}, got {value!r}")

    return check


def _choice(name: str, allowed: tuple[str, ...]) -> Any:
    def check(_: object, attribute: attrs.Attribute[Any], value: Any) -> None:
        if value not in allowed:
            raise SettingsError(f"{name} must be one of {', '.join(allowed)}; got {value!r}")

    return check


def _psk(_: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value is not None and (not isinstance(value, bytes) or len(value) != 32):
        raise SettingsError("psk must be None or exactly 32 bytes")


def _bool(name: str) -> Any:
    def check(_: object, attribute: attrs.Attribute[Any], value: Any) -> None:
        if not isinstance(value, bool):
            raise SettingsError(f"{name} must be True or False, got {value!r}")

    return check


def _ciphers(_: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    if (not isinstance(value, tuple) or not value or len(set(value)) != len(value)
            or any(c not in CIPHER_NAMES for c in value) or "ChaChaPoly" not in value):
        raise SettingsError(
            "cipher_preference must be a tuple ordering AESGCM and ChaChaPoly "
            f"(ChaChaPoly is mandatory); got {value!r}"
        )


@attrs.frozen(slots=True, kw_only=True)
class NodeConfig:
    """Every setting of a node. Field names match the ``STTNode`` keyword arguments."""

    transport: str = attrs.field(default="udp", validator=_choice("transport", TRANSPORTS))
    # None: the dual-stack unspecified address ("::" with IPV6_V6ONLY off; "0.0.0.0" without
    # IPv6), so the node dials and accepts IPv4 and IPv6 peers.
    host: str | None = attrs.field(default=None, validator=_host)
    port: int = attrs.field(default=0, validator=_range("port", 0, 65535, integer=True))
    psk: bytes | None = attrs.field(default=None, validator=_psk)
    # The largest datagram (or WebSocket message) on the wire, 1,200..65,536; 65,536 (the
    # seed's "64 KB") is kept as 65,507, the largest UDP payload (see ``frame_size``).
    max_frame_size: int = attrs.field(default=16384, converter=frame_size)
    no_delay: bool = attrs.field(default=False, validator=_bool("no_delay"))
    recv_buffer_size: int = attrs.field(
        default=2 * 1024**2, validator=_range("recv_buffer_size", 65536, 1 << 30, integer=True))
    send_buffer_size: int = attrs.field(
        default=2 * 1024**2, validator=_range("send_buffer_size", 65536, 1 << 30, integer=True))
    max_concurrent_streams: int = attrs.field(
        default=256, validator=_range("max_concurrent_streams", 1, 1 << 20, integer=True))
    max_sessions: int = attrs.field(
        default=10_000, validator=_range("max_sessions", 1, 1 << 24, integer=True))
    keep_alive_interval: float = attrs.field(
        default=10.0, validator=_range("keep_alive_interval", 0.05, 3600.0))
    keep_alive_timeout: float = attrs.field(
        default=30.0, validator=_range("keep_alive_timeout", 0.1, 86400.0))
    handshake_timeout: float = attrs.field(
        default=10.0, validator=_range("handshake_timeout", 0.1, 600.0))
    congestion_control: str = attrs.field(
        default="bbr", validator=_choice("congestion_control", CONGESTION_CONTROLLERS))
    max_message_size: int = attrs.field(
        default=16 * 1024**2, validator=_range("max_message_size", 1, 1 << 30, integer=True))
    # Rotate the sending key after this many packets or this many seconds, whichever comes first.
    key_update_packets: int = attrs.field(
        default=1 << 20, validator=_range("key_update_packets", 16, 1 << 40, integer=True))
    key_update_interval: float = attrs.field(
        default=600.0, validator=_range("key_update_interval", 0.1, 86400.0))
    cipher_preference: tuple[str, ...] = attrs.field(
        default=("AESGCM", "ChaChaPoly"), validator=_ciphers)
    # Above this many half-open handshakes, new INITIALs must first prove their address (RETRY).
    retry_threshold: int = attrs.field(
        default=64, validator=_range("retry_threshold", 0, 1 << 24, integer=True))
    # Inbound admission (stt_proto/admission.py, docs/wire-format.md "Admission"). Half-open
    # handshakes have their own budget apart from max_sessions: beyond it the oldest is evicted.
    max_half_open: int = attrs.field(
        default=4096, validator=_range("max_half_open", 1, 1 << 24, integer=True))
    # Half-open handshakes from one address (IPv4 host, IPv6 /64); more INITIALs are dropped.
    max_half_open_per_address: int = attrs.field(
        default=1024, validator=_range("max_half_open_per_address", 1, 1 << 24, integer=True))
    # Under load (retry_threshold or more half-open), a handshake unfinished this long is dropped.
    half_open_timeout: float = attrs.field(
        default=3.0, validator=_range("half_open_timeout", 0.05, 600.0))
    # Established inbound sessions per peer identity and per address; 0: no limit.
    max_sessions_per_identity: int = attrs.field(
        default=1000, validator=_range("max_sessions_per_identity", 0, 1 << 24, integer=True))
    max_sessions_per_address: int = attrs.field(
        default=0, validator=_range("max_sessions_per_address", 0, 1 << 24, integer=True))
    # Node-wide memory (stt_proto/budget.py): flow-control credit granted beyond every session's
    # initial window, summed over the node; past it peers stall and new sessions are refused.
    receive_budget: int = attrs.field(
        default=512 * 1024**2, validator=_range("receive_budget", 1 << 20, 1 << 40, integer=True))
    # Unread DATAGRAM payloads queued in the runtime, summed over the node; past it they drop.
    datagram_budget: int = attrs.field(
        default=64 * 1024**2, validator=_range("datagram_budget", 1 << 16, 1 << 40, integer=True))
    workers: int = attrs.field(default=1, validator=_range("workers", 1, 256, integer=True))
    # Linux UDP segmentation offload (GSO to send, GRO to receive) where the kernel has it.
    udp_offload: bool = attrs.field(default=True, validator=_bool("udp_offload"))

    def __attrs_post_init__(self) -> None:
        if self.keep_alive_timeout <= self.keep_alive_interval:
            raise SettingsError(
                "keep_alive_timeout must be greater than keep_alive_interval "
                f"(got {self.keep_alive_timeout} <= {self.keep_alive_interval})"
            )

    @classmethod
    def build(cls, **settings: Any) -> NodeConfig:
        """Construct from keyword arguments, naming any unknown setting."""
        known = {a.name for a in attrs.fields(cls)}
        unknown = sorted(set(settings) - known)
        if unknown:
            raise SettingsError(f"unknown setting(s): {', '.join(unknown)}")
        return cls(**settings)


PRESETS: dict[str, dict[str, Any]] = {
    # The seed chapter's "Configuration Presets" section.
    "low_latency": {
        "max_frame_size": 4096, "no_delay": True,
        "recv_buffer_size": 512 * 1024, "send_buffer_size": 512 * 1024,
    },
    "high_throughput": {
        "max_frame_size": 65507, "recv_buffer_size": 8 * 1024**2,
        "send_buffer_size": 8 * 1024**2, "max_concurrent_streams": 64,
    },
    "balanced": {
        "max_frame_size": 16384, "recv_buffer_size": 2 * 1024**2,
        "send_buffer_size": 2 * 1024**2, "max_concurrent_streams": 256,
    },
}


def preset(name: str, **overrides: Any) -> NodeConfig:
    """A preset's settings with ``overrides`` applied on top."""
    if name not in PRESETS:
        raise SettingsError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    return NodeConfig.build(**{**PRESETS[name], **overrides})
