"""stt_bench/core_share.py: the core's per-message calls timed inside a running loop and back
to back, which docs/latency.md compares."""

from __future__ import annotations

import pytest

from stt_bench.core_share import _tail, back_to_back, in_loop, main, raw_in_loop


@pytest.mark.parametrize("runtime", ["asyncio", "uvloop"])
def test_in_a_loop_each_end_opens_one_datagram_and_polls_at_least_twice(runtime: str) -> None:
    pytest.importorskip(runtime)
    result = in_loop(runtime, 100, warmup=20)
    # a ping and its echo: one datagram each way, opened once; each end polls after input
    # and to seal its message (now and then an ACK, a path-MTU probe or a timer's poll on top)
    assert 2.0 <= result["receives_per_round_trip"] < 2.5
    assert 4.0 <= result["polls_per_round_trip"] < 5.0
    # the poll that seals each end's message, and the one after input that finds nothing
    # (the echo's ACK rides on its answer)
    assert 2.0 <= result["sending_polls_per_round_trip"] < 2.5
    assert 1.5 <= result["empty_polls_per_round_trip"] < 2.5
    assert result["sending_polls_per_round_trip"] + result["empty_polls_per_round_trip"] \
        == pytest.approx(result["polls_per_round_trip"])
    assert 0 < result["receive_s"] < result["cpu_per_round_trip_s"]
    assert 0 < result["poll_s"] < result["cpu_per_round_trip_s"]
    assert 0 < result["empty_poll_s"] < result["sending_poll_s"]
    assert 0 < result["p50_s"] <= result["p99_s"]
    shares = ("tail_plain", "tail_collected", "tail_timers", "tail_extra_datagrams")
    assert all(0 <= result[key] <= 1 for key in shares)


def test_the_tail_names_what_its_round_trips_had() -> None:
    # 200 round trips of 1 ms, then the slowest 1 %: plain, with a collection, with a timer's
    # run and a third datagram (one round trip can have several)
    times = [0.001] * 200 + [0.004, 0.005, 0.006]
    marks = [(2.0, 0.0, 0)] * 200 + [(2.0, 0.0, 0), (2.0, 0.0, 1), (3.0, 1.0, 0)]
    result = _tail(times, marks)
    assert result["p50_s"] == 0.001
    assert result["p99_s"] == 0.004  # index int(203 x 0.99) = 200 of the sorted times
    assert result["tail_plain"] == pytest.approx(1 / 3)
    assert result["tail_collected"] == pytest.approx(1 / 3)
    assert result["tail_timers"] == pytest.approx(1 / 3)
    assert result["tail_extra_datagrams"] == pytest.approx(1 / 3)


@pytest.mark.parametrize("runtime", ["asyncio", "uvloop"])
def test_the_raw_echo_beside_it(runtime: str) -> None:
    pytest.importorskip(runtime)
    result = raw_in_loop(runtime, 200)
    assert 0 < result["p50_s"] < 0.1
    assert 0 < result["cpu_per_round_trip_s"] < 0.1


def test_back_to_back_every_message_arrives_and_each_step_is_timed() -> None:
    result = back_to_back(200, warmup=10)  # raises if a message does not arrive at once
    assert all(value > 0 for value in result.values())


def test_command_line(capsys: pytest.CaptureFixture[str]) -> None:
    main(["--count", "20", "--warmup", "5"])
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("asyncio, both nodes in one process: ")
    assert "of which the core" in out[0]
    assert "that send" in out[1] and "that find nothing to send" in out[1]
    assert out[2].startswith("  round trip p50 ") and "of the slowest 1 %" in out[2]
    assert out[3].startswith("raw UDP echo on the same kind of loop: ")
    assert out[4].startswith("back to back, in memory: send_message + the poll that seals ")
