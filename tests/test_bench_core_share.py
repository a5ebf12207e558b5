"""stt_bench/core_share.py: the core's per-message calls timed inside a running loop and back
to back, which docs/latency.md compares."""

from __future__ import annotations

import pytest

from stt_bench.core_share import back_to_back, in_loop, main


@pytest.mark.parametrize("runtime", ["asyncio", "uvloop"])
def test_in_a_loop_each_end_opens_one_datagram_and_polls_at_least_twice(runtime: str) -> None:
    pytest.importorskip(runtime)
    result = in_loop(runtime, 100, warmup=20)
    # a ping and its echo: one datagram each way, opened once; each end polls after input
    # and to seal its message (now and then an ACK, a path-MTU probe or a timer's poll on top)
    assert 2.0 <= result["receives_per_round_trip"] < 2.5
    assert 4.0 <= result["polls_per_round_trip"] < 5.0
    assert 0 < result["receive_s"] < result["cpu_per_round_trip_s"]
    assert 0 < result["poll_s"] < result["cpu_per_round_trip_s"]


def test_back_to_back_every_message_arrives_and_each_step_is_timed() -> None:
    result = back_to_back(200, warmup=10)  # raises if a message does not arrive at once
    assert all(value > 0 for value in result.values())


def test_command_line(capsys: pytest.CaptureFixture[str]) -> None:
    main(["--count", "20", "--warmup", "5"])
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("asyncio, both nodes in one process: ")
    assert "of which the core" in out[0]
    assert out[2].startswith("back to back, in memory: send_message + the poll that seals ")
