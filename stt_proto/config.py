"""The core's settings and their validation: :class:`SessionConfig` (what one session runs
with) and :class:`EndpointConfig` (admission, limits and budgets over every session, holding the
sessions' :class:`SessionConfig`).

The socket's settings (transport, host, port, kernel buffers, workers, offload) and the presets
belong to the runtime layer (``stt_runtime/settings.py``), which splits ``STTNode(...)`` keyword
arguments between them and :meth:`EndpointConfig.build`. An invalid value raises
:class:`SettingsError` (a ``ValueError``) naming the setting and its allowed range.
"""

from __future__ import annotations

from typing import Any

import attrs

from .errors import SettingsError

CONGESTION_CONTROLLERS = ("bbr", "cubic", "newreno")
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


def check_range(name: str, lo: float, hi: float, *, integer: bool = False) -> Any:
    """An attrs validator: a number (an integer if ``integer``) in ``lo..hi``, else a
    :class:`SettingsError` naming ``name`` and the range."""
    def check(_: object, attribute: attrs.Attribute[Any], value: Any) -> None:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise SettingsError(f"{name} must be a number in {lo}..{hi}, got {value!r}")
        if integer and not isinstance(value, int):
            raise SettingsError(f"{name} must be an integer in {lo}..{hi}, got {value!r}")
        if not lo <= value <= hi:
            raise SettingsError(f"{name} must be in {lo}..{hi}, got {value!r}")

    return check


def check_choice(name: str, allowed: tuple[str, ...]) -> Any:
    """An attrs validator: one of ``allowed``, else a :class:`SettingsError` listing them."""
    def check(_: object, attribute: attrs.Attribute[Any], value: Any) -> None:
        if value not in allowed:
            raise SettingsError(f"{name} must be one of {', '.join(allowed)}; got {value!r}")

    return check


# ``recv_buffer_size`` / ``send_buffer_size``: one default and range wherever they are read (the
# session's windows here, the kernel's socket buffers in stt_runtime/settings.py).
BUFFER_SIZE = 2 * 1024**2
CHECK_RECV_BUFFER = check_range("recv_buffer_size", 65536, 1 << 30, integer=True)
CHECK_SEND_BUFFER = check_range("send_buffer_size", 65536, 1 << 30, integer=True)


def _psk(_: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value is not None and (not isinstance(value, bytes) or len(value) != 32):
        raise SettingsError("psk must be None or exactly 32 bytes")


def check_bool(name: str) -> Any:
    """An attrs validator: exactly True or False (no truthy stand-ins)."""
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
class SessionConfig:
    """What one session runs with: its handshake, windows, streams, keep-alive, key rotation and
    congestion control. Field names match the ``STTNode`` keyword arguments."""

    psk: bytes | None = attrs.field(default=None, validator=_psk)
    # The largest datagram (or WebSocket message) on the wire, 1,200..65,536; 65,536 (the
    # seed's "64 KB") is kept as 65,507, the largest UDP payload (see ``frame_size``).
    max_frame_size: int = attrs.field(default=16384, converter=frame_size)
    no_delay: bool = attrs.field(default=False, validator=check_bool("no_delay"))
    # The session's receive window and send buffer are sized from these (the runtime also asks
    # the kernel for socket buffers of the same sizes: stt_runtime/settings.py SocketSettings).
    recv_buffer_size: int = attrs.field(default=BUFFER_SIZE, validator=CHECK_RECV_BUFFER)
    send_buffer_size: int = attrs.field(default=BUFFER_SIZE, validator=CHECK_SEND_BUFFER)
    max_concurrent_streams: int = attrs.field(
        default=256, validator=check_range("max_concurrent_streams", 1, 1 << 20, integer=True))
    keep_alive_interval: float = attrs.field(
        default=10.0, validator=check_range("keep_alive_interval", 0.05, 3600.0))
    keep_alive_timeout: float = attrs.field(
        default=30.0, validator=check_range("keep_alive_timeout", 0.1, 86400.0))
    handshake_timeout: float = attrs.field(
        default=10.0, validator=check_range("handshake_timeout", 0.1, 600.0))
    congestion_control: str = attrs.field(
        default="bbr", validator=check_choice("congestion_control", CONGESTION_CONTROLLERS))
    max_message_size: int = attrs.field(
        default=16 * 1024**2, validator=check_range("max_message_size", 1, 1 << 30, integer=True))
    # Rotate the sending key after this many packets or this many seconds, whichever comes first.
    key_update_packets: int = attrs.field(
        default=1 << 20, validator=check_range("key_update_packets", 16, 1 << 40, integer=True))
    key_update_interval: float = attrs.field(
        default=600.0, validator=check_range("key_update_interval", 0.1, 86400.0))
    cipher_preference: tuple[str, ...] = attrs.field(
        default=("AESGCM", "ChaChaPoly"), validator=_ciphers)

    def __attrs_post_init__(self) -> None:
        if self.keep_alive_timeout <= self.keep_alive_interval:
            raise SettingsError(
                "keep_alive_timeout must be greater than keep_alive_interval "
                f"(got {self.keep_alive_timeout} <= {self.keep_alive_interval})"
            )


def _session_config(_: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    if not isinstance(value, SessionConfig):
        raise SettingsError(f"session must be a SessionConfig, got {value!r}")


@attrs.frozen(slots=True, kw_only=True)
class EndpointConfig:
    """What an endpoint runs with: admission, limits and the node-wide receive budget over all its
    sessions, and the :class:`SessionConfig` every session it makes gets. Field names match the
    ``STTNode`` keyword arguments (``build`` takes the sessions' ones flat beside them)."""

    session: SessionConfig = attrs.field(factory=SessionConfig, validator=_session_config)
    max_sessions: int = attrs.field(
        default=10_000, validator=check_range("max_sessions", 1, 1 << 24, integer=True))
    # Above this many half-open handshakes, new INITIALs must first prove their address (RETRY).
    # A RETRY costs each initiator a round trip, so it answers a flood, not a busy node: a
    # burst of 2,000 clients at 64 waited a round trip each, the node idle meanwhile. Below
    # it, a spoofed INITIAL costs the node at most one message 2 per handshake_timeout.
    retry_threshold: int = attrs.field(
        default=1024, validator=check_range("retry_threshold", 0, 1 << 24, integer=True))
    # Inbound admission (stt_proto/admission.py, docs/wire-format.md "Admission"). Half-open
    # handshakes have their own budget apart from max_sessions: beyond it the oldest is evicted.
    max_half_open: int = attrs.field(
        default=4096, validator=check_range("max_half_open", 1, 1 << 24, integer=True))
    # Half-open handshakes from one address (IPv4 host, IPv6 /64); more INITIALs are dropped.
    max_half_open_per_address: int = attrs.field(
        default=1024, validator=check_range("max_half_open_per_address", 1, 1 << 24, integer=True))
    # Under load (retry_threshold or more half-open), a handshake unfinished this long is dropped.
    half_open_timeout: float = attrs.field(
        default=3.0, validator=check_range("half_open_timeout", 0.05, 600.0))
    # Established inbound sessions per peer identity and per address; 0: no limit.
    max_sessions_per_identity: int = attrs.field(
        default=1000, validator=check_range("max_sessions_per_identity", 0, 1 << 24, integer=True))
    max_sessions_per_address: int = attrs.field(
        default=0, validator=check_range("max_sessions_per_address", 0, 1 << 24, integer=True))
    # Node-wide memory (stt_proto/budget.py): flow-control credit granted beyond every session's
    # initial window, summed over the node; past it peers stall and new sessions are refused.
    receive_budget: int = attrs.field(
        default=512 * 1024**2,
        validator=check_range("receive_budget", 1 << 20, 1 << 40, integer=True))

    @classmethod
    def build(cls, **settings: Any) -> EndpointConfig:
        """Construct from flat keyword arguments (the endpoint's and its sessions' settings side
        by side, as ``STTNode`` takes them), naming any unknown setting."""
        unknown = sorted(set(settings) - ENDPOINT_SETTINGS - SESSION_SETTINGS)
        if unknown:
            raise SettingsError(f"unknown setting(s): {', '.join(unknown)}")
        session = SessionConfig(**{k: v for k, v in settings.items() if k in SESSION_SETTINGS})
        return cls(session=session,
                   **{k: v for k, v in settings.items() if k in ENDPOINT_SETTINGS})

    def keywords(self) -> dict[str, Any]:
        """The flat keyword arguments ``build`` turns back into this configuration."""
        flat = attrs.asdict(self.session, recurse=False)
        flat.update(attrs.asdict(self, recurse=False))
        del flat["session"]
        return flat


SESSION_SETTINGS = frozenset(a.name for a in attrs.fields(SessionConfig))
ENDPOINT_SETTINGS = frozenset(a.name for a in attrs.fields(EndpointConfig)) - {"session"}
