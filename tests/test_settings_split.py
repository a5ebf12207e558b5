"""Settings split by layer (issue 24): ``STTNode`` keywords become the core's EndpointConfig (its
SessionConfig inside) and the runtime's SocketSettings, with nothing lost, nothing invented and
each keyword read where its layer needs it."""

from __future__ import annotations

import ast
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import attrs
import pytest

import stt_anyio
import stt_asyncio
from stt_proto import (
    DeterministicRandom,
    Endpoint,
    EndpointConfig,
    Identity,
    Node,
    SessionConfig,
    SettingsError,
    frame_types,
    frames,
)
from stt_runtime.settings import (
    PRESETS,
    SHARED_SETTINGS,
    SOCKET_SETTINGS,
    NodeSettings,
    SocketSettings,
    preset,
)
from stt_runtime.workers import worker_specs

# Every STTNode keyword before the split, with a value other than its default.
NON_DEFAULT: dict[str, Any] = {
    "transport": "websocket", "host": "127.0.0.1", "port": 4433, "psk": bytes(range(32)),
    "max_frame_size": 4096, "no_delay": True, "recv_buffer_size": 1 << 20,
    "send_buffer_size": 3 << 19, "max_concurrent_streams": 17, "max_sessions": 99,
    "keep_alive_interval": 2.0, "keep_alive_timeout": 7.0, "handshake_timeout": 3.0,
    "congestion_control": "cubic", "max_message_size": 12345, "key_update_packets": 1000,
    "key_update_interval": 60.0, "cipher_preference": ("ChaChaPoly", "AESGCM"),
    "retry_threshold": 5, "max_half_open": 50, "max_half_open_per_address": 6,
    "half_open_timeout": 1.5, "max_sessions_per_identity": 9, "max_sessions_per_address": 4,
    "receive_budget": 1 << 25, "datagram_budget": 1 << 20, "workers": 3, "udp_offload": False,
}


def test_every_keyword_lands_in_its_layer_and_comes_back() -> None:
    settings = NodeSettings.build(**NON_DEFAULT)
    assert settings.keywords() == NON_DEFAULT
    assert NodeSettings.build(**settings.keywords()) == settings
    session_fields = {a.name for a in attrs.fields(SessionConfig)}
    endpoint_fields = {a.name for a in attrs.fields(EndpointConfig)} - {"session"}
    # Each keyword has one home, but for the buffer sizes: the kernel's and the windows'.
    assert session_fields & SOCKET_SETTINGS == SHARED_SETTINGS
    assert not endpoint_fields & (session_fields | SOCKET_SETTINGS)
    assert session_fields | endpoint_fields | SOCKET_SETTINGS == set(NON_DEFAULT)
    for name, value in NON_DEFAULT.items():
        homes = [part for part in (settings.endpoint.session, settings.endpoint, settings.socket)
                 if name in {a.name for a in attrs.fields(type(part))}]
        assert homes and all(getattr(part, name) == value for part in homes), name


def test_the_core_config_refuses_the_sockets_keywords() -> None:
    """The sans-I/O core has no socket: a socket keyword is unknown there, named."""
    for name in sorted(SOCKET_SETTINGS - SHARED_SETTINGS):
        with pytest.raises(SettingsError, match=f"unknown setting.*{name}"):
            EndpointConfig.build(**{name: NON_DEFAULT[name]})
    with pytest.raises(SettingsError, match="frame_sise, portt"):
        NodeSettings.build(portt=1, frame_sise=4, max_sessions=3)


def test_the_endpoint_gives_each_session_the_session_config() -> None:
    config = EndpointConfig.build(max_frame_size=1200, keep_alive_interval=1.0,
                                  keep_alive_timeout=4.0, max_sessions=3)
    endpoint = Endpoint(config, rng=DeterministicRandom(1))
    session = endpoint.connect(("10.0.0.2", 1), bytes(32), 0.0)
    assert session.config is config.session
    assert session.config.max_frame_size == 1200
    with pytest.raises(SettingsError, match="session must be a SessionConfig"):
        EndpointConfig(session=config)  # type: ignore[arg-type]


@pytest.mark.parametrize("node_class", [stt_asyncio.STTNode, stt_anyio.STTNode])
def test_a_node_reads_each_layer_from_its_own_part(node_class: Any) -> None:
    node = node_class(transport="websocket", host="127.0.0.1", max_sessions=7,
                      datagram_budget=1 << 17)
    assert node.config is node.settings.endpoint and node.config.max_sessions == 7
    assert node.settings.socket == SocketSettings(transport="websocket", host="127.0.0.1",
                                                  datagram_budget=1 << 17)
    assert node._datagram_budget.limit == 1 << 17
    # Over WebSocket a peer's source port is a TCP client port: the DHT takes announced ones.
    assert node._new_endpoint(0)._links._advertised_ports
    assert not node_class()._new_endpoint(0)._links._advertised_ports
    assert not Node(EndpointConfig())._links._advertised_ports


async def _no_handler(session: Any) -> None:
    """A serve() handler that does nothing (the specs only carry it)."""


def test_worker_specs_rebuild_the_same_settings_on_the_shared_port() -> None:
    settings = NodeSettings.build(**{**NON_DEFAULT, "transport": "udp", "port": 0})
    node = SimpleNamespace(settings=settings, address=("127.0.0.1", 5555),
                           identity=Identity.generate())
    specs = worker_specs(node, _no_handler, "asyncio", stt_asyncio.STTNode)
    assert [spec.index for spec in specs] == [1, 2]  # workers=3: the parent is worker 0
    for spec in specs:
        assert NodeSettings.build(**spec.settings) == attrs.evolve(
            settings, socket=attrs.evolve(settings.socket, port=5555))


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_presets_split_like_any_keywords(name: str) -> None:
    assert preset(name) == NodeSettings.build(**PRESETS[name])
    assert preset(name, workers=2).socket.workers == 2


def test_the_frame_codec_module_still_exports_every_frame_type() -> None:
    """``frames`` was split into values and codec; ``stt_proto.frames.X`` keeps working."""
    # the source, not __file__: with the compiled core that is the extension module
    source = Path(frames.__file__).parent / "frame_types.py"
    tree = ast.parse(source.read_text(encoding="utf-8"))
    defined = {node.name for node in tree.body if isinstance(node, ast.ClassDef | ast.FunctionDef)}
    defined |= {target.id for node in tree.body if isinstance(node, ast.Assign)
                for target in node.targets if isinstance(target, ast.Name)}
    public = {name for name in defined if not name.startswith("_")}
    assert {"StreamFrame", "AckFrame", "Frame", "FrameType", "MAX_FRAMES_PER_PACKET",
            "is_ack_eliciting"} <= public
    for name in public:
        assert getattr(frames, name) is getattr(frame_types, name), name
        assert name in frames.__all__, name
