"""DataPlane.build on a dialogue's small message: the bulk-path check runs once per poll.

A session that had not yet wanted larger packets asked ``StreamManager.bulk_source`` twice per
poll (path-MTU's "does the queue outgrow base packets?" and the build loop's own bulk check);
the first answer now serves both. Counted through the class, so over the Python sources only
(the compiled core's methods cannot be replaced)."""

from __future__ import annotations

from typing import Any

import pytest

import stt_proto
from stt_proto.config import SessionConfig
from stt_proto.dataplane import PACKET_OVERHEAD, DataPlane
from stt_proto.handshake import local_settings
from stt_proto.rtt import RttEstimator
from stt_proto.streams import STREAM_FRAME_OVERHEAD, StreamManager

pytestmark = pytest.mark.skipif(stt_proto.COMPILED,
                                reason="counts calls into the core (STT_PURE=1)")

FRAME = 1200


def _plane() -> DataPlane:
    config = SessionConfig(max_frame_size=FRAME, no_delay=True)
    settings = local_settings(config)
    return DataPlane(config=config, is_initiator=True, local=settings, peer=settings,
                     rtt=RttEstimator(), emit=lambda event: None, seed=7)


def _seal(payload: bytes | bytearray) -> tuple[bytes, int]:
    _seal.pn += 1  # type: ignore[attr-defined]
    return bytes(payload) + bytes(30), _seal.pn - 1  # type: ignore[attr-defined]


_seal.pn = 0  # type: ignore[attr-defined]


def _counting(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []
    original = StreamManager.bulk_source

    def counted(self: StreamManager, space: int) -> Any:
        calls.append(space)
        return original(self, space)

    monkeypatch.setattr(StreamManager, "bulk_source", counted)
    return calls


def test_a_small_message_poll_asks_for_a_bulk_source_once(
        monkeypatch: pytest.MonkeyPatch) -> None:
    plane = _plane()
    calls = _counting(monkeypatch)
    sid = plane.streams.open(FRAME, True, 0).stream_id
    for step in range(5):  # a dialogue: one small message per poll
        now = step * 0.001
        plane.streams.send_message(sid, b"ping", now, 0.0)
        calls.clear()
        packets = plane.build(now, [], _seal)
        assert len(packets) == 1
        assert not plane.pmtu.wanted  # a 4-byte message never outgrows base packets
        assert len(calls) == 1, f"poll {step}: bulk_source asked {len(calls)} times"


def test_a_bulk_run_still_starts_path_mtu_discovery(monkeypatch: pytest.MonkeyPatch) -> None:
    """A queue of full packets still wants larger ones (the one answer serves that check and
    the loop; tests/test_dataplane_bulk.py shows the packets equal the general path's)."""
    plane = _plane()
    calls = _counting(monkeypatch)
    sid = plane.streams.open(FRAME, True, 0).stream_id
    chunk = FRAME - PACKET_OVERHEAD - STREAM_FRAME_OVERHEAD
    plane.streams.send_message(sid, bytes(chunk * 3), 0.0, 0.0)
    assert plane.build(0.0, [], _seal)
    assert plane.pmtu.wanted
    assert len(calls) == 1
