"""stt_bench/handshake_cost.py: the core-alone cost of a handshake per side, which
docs/performance.md sets against the two-process run's CPU per handshake."""

from __future__ import annotations

import pytest

from stt_bench.handshake_cost import core_handshakes, main, report


@pytest.mark.parametrize("retry", [False, True])
def test_each_side_is_timed_and_every_handshake_completes(retry: bool) -> None:
    result = core_handshakes(20, retry)
    assert result["count"] == 20 and result["retry"] is retry
    # each side does four X25519 scalar multiplications per handshake: well over 10 µs
    assert result["client_cpu_s"] > 10e-6 and result["server_cpu_s"] > 10e-6
    assert result["gc_s"] >= 0
    # INITIAL and FINISH from the client, message 2 and HANDSHAKE_DONE from the server, and
    # with a RETRY one more each way (the RETRY, and the INITIAL that carries its token)
    extra = 1 if retry else 0
    assert result["client_datagrams"] == 2 + extra
    assert result["server_datagrams"] == 2 + extra


def test_report_and_command_line(capsys: pytest.CaptureFixture[str]) -> None:
    floor = {"per_side_s": 100e-6}
    line = report({"count": 2000, "retry": True, "client_cpu_s": 250e-6,
                   "server_cpu_s": 270e-6, "gc_s": 30e-6, "client_datagrams": 3.0,
                   "server_datagrams": 3.0}, floor)
    assert line.startswith("2,000 handshakes through a RETRY: client 250 µs, server 270 µs")
    assert "(2.50 / 2.70 of the floor, 100 µs); of which GC 30 µs" in line
    main(["--count", "5", "--repeats", "1"])
    assert capsys.readouterr().out.startswith("5 handshakes: client ")
