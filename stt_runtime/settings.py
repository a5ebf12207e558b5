"""``STTNode(...)`` keyword arguments split by the layer that uses them, and the seed's presets.

The core takes an :class:`~stt_proto.EndpointConfig` (its sessions' settings inside); what only
the runtime does with its socket (transport, address, kernel buffers, worker processes, segment
offload) and the runtime's own queue of unread DATAGRAMs is a :class:`SocketSettings`.
:meth:`NodeSettings.build` makes both from one set of keywords, so every range check runs and
every unknown keyword is named. ``recv_buffer_size`` and ``send_buffer_size`` feed both: the
kernel's socket buffers and the session's receive window and send buffer.
"""

from __future__ import annotations

from typing import Any

import attrs

from stt_proto import EndpointConfig, SettingsError
from stt_proto.config import (
    BUFFER_SIZE,
    CHECK_RECV_BUFFER,
    CHECK_SEND_BUFFER,
    check_bool,
    check_choice,
    check_range,
)

TRANSPORTS = ("udp", "websocket")


def _host(_: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value is not None and (not isinstance(value, str) or not value):
        raise SettingsError(f"host must be None (every interface, IPv4 and IPv6) or an address "
                            f"string, got {value!r}")


@attrs.frozen(slots=True, kw_only=True)
class SocketSettings:
    """What the runtime layer does with its socket(s) and the I/O around them. Field names match
    the ``STTNode`` keyword arguments."""

    transport: str = attrs.field(default="udp", validator=check_choice("transport", TRANSPORTS))
    # None: the dual-stack unspecified address ("::" with IPV6_V6ONLY off; "0.0.0.0" without
    # IPv6), so the node dials and accepts IPv4 and IPv6 peers.
    host: str | None = attrs.field(default=None, validator=_host)
    port: int = attrs.field(default=0, validator=check_range("port", 0, 65535, integer=True))
    # SO_RCVBUF / SO_SNDBUF asked of the kernel (the same keywords size the sessions' windows).
    recv_buffer_size: int = attrs.field(default=BUFFER_SIZE, validator=CHECK_RECV_BUFFER)
    send_buffer_size: int = attrs.field(default=BUFFER_SIZE, validator=CHECK_SEND_BUFFER)
    workers: int = attrs.field(default=1, validator=check_range("workers", 1, 256, integer=True))
    # Linux UDP segmentation offload (GSO to send, GRO to receive) where the kernel has it.
    udp_offload: bool = attrs.field(default=True, validator=check_bool("udp_offload"))
    # Unread DATAGRAM payloads queued in the runtime, summed over the node; past it they drop.
    datagram_budget: int = attrs.field(
        default=64 * 1024**2,
        validator=check_range("datagram_budget", 1 << 16, 1 << 40, integer=True))


SOCKET_SETTINGS = frozenset(a.name for a in attrs.fields(SocketSettings))
# Keywords both layers read: the socket's kernel buffers and the sessions' windows.
SHARED_SETTINGS = frozenset({"recv_buffer_size", "send_buffer_size"})


@attrs.frozen(slots=True, kw_only=True)
class NodeSettings:
    """Every setting of an ``STTNode``: the core's and the socket's."""

    endpoint: EndpointConfig = attrs.field(factory=EndpointConfig)
    socket: SocketSettings = attrs.field(factory=SocketSettings)

    @classmethod
    def build(cls, **keywords: Any) -> NodeSettings:
        """Split ``STTNode(**keywords)`` between the layers, checking every value and naming any
        unknown keyword."""
        socket_only = SOCKET_SETTINGS - SHARED_SETTINGS
        endpoint = EndpointConfig.build(
            **{k: v for k, v in keywords.items() if k not in socket_only})
        socket = SocketSettings(**{k: v for k, v in keywords.items() if k in SOCKET_SETTINGS})
        return cls(endpoint=endpoint, socket=socket)

    def keywords(self) -> dict[str, Any]:
        """The ``STTNode`` keyword arguments that build these settings again (a worker process
        makes its node from them)."""
        return {**self.endpoint.keywords(), **attrs.asdict(self.socket, recurse=False)}


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


def preset(name: str, **overrides: Any) -> NodeSettings:
    """A preset's settings with ``overrides`` applied on top."""
    if name not in PRESETS:
        raise SettingsError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    return NodeSettings.build(**{**PRESETS[name], **overrides})


def preset_kwargs(name: str, overrides: dict[str, Any]) -> dict[str, Any]:
    """A preset's settings with ``overrides`` applied, as ``STTNode(**...)`` keywords."""
    identity = overrides.pop("identity", None)
    return {"identity": identity, **preset(name, **overrides).keywords()}


__all__ = ["PRESETS", "SHARED_SETTINGS", "SOCKET_SETTINGS", "TRANSPORTS", "NodeSettings",
           "SocketSettings", "preset", "preset_kwargs"]
