"""stt_bench/handshake_cost.py: the core-alone cost of a handshake per side, which
docs/performance.md sets against the two-process run's CPU per handshake."""

from __future__ import annotations

import pytest

from stt_bench.handshake_cost import core_handshakes, main, report, steps


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
    # the exchanges one by one: every datagram counted in one of them, and the CPU too
    rounds = result["rounds"]
    assert len(rounds) == 3 + extra  # and the last, in which neither side had anything
    assert rounds[-1][2:] == (0, 0)
    assert sum(r[2] for r in rounds) == result["client_datagrams"]
    assert sum(r[3] for r in rounds) == result["server_datagrams"]
    assert sum(r[1] for r in rounds) == pytest.approx(result["server_cpu_s"])
    assert result["connect_cpu_s"] + sum(r[0] for r in rounds) == \
        pytest.approx(result["client_cpu_s"])
    # the round that answers with message 2 (a key pair and two DH) is the server's dearest
    assert max(r[1] for r in rounds) > 30e-6


def test_steps_name_each_exchange() -> None:
    text = steps({"connect_cpu_s": 70e-6, "rounds": [(240e-6, 230e-6, 1.0, 1.0),
                                                        (15e-6, 140e-6, 1.0, 1.0),
                                                        (1e-6, 1e-6, 0.0, 0.0)]})
    assert text.splitlines() == [
        "  connect(): client 70 µs",
        "  round 1: client -> server 1.00 datagrams, server 230 µs to read them and answer "
        "with 1.00, client 240 µs to send and to read the answers",
        "  round 2: client -> server 1.00 datagrams, server 140 µs to read them and answer "
        "with 1.00, client 15 µs to send and to read the answers"]


def test_report_and_command_line(capsys: pytest.CaptureFixture[str]) -> None:
    floor = {"per_side_s": 100e-6}
    line = report({"count": 2000, "retry": True, "client_cpu_s": 250e-6,
                   "server_cpu_s": 270e-6, "gc_s": 30e-6, "client_datagrams": 3.0,
                   "server_datagrams": 3.0}, floor)
    assert line.startswith("2,000 handshakes through a RETRY: client 250 µs, server 270 µs")
    assert "(2.50 / 2.70 of the floor, 100 µs); of which GC 30 µs" in line
    main(["--count", "5", "--repeats", "1"])
    assert capsys.readouterr().out.startswith("5 handshakes: client ")
    main(["--count", "5", "--repeats", "1", "--steps"])
    out = capsys.readouterr().out.splitlines()
    assert out[1].startswith("  connect(): client ") and out[2].startswith("  round 1: ")
