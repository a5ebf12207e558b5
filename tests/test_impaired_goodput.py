"""Goodput on real sockets through an impaired link (issue 26): a receiver, a sender and the
link, each a process of its own (:mod:`stt_bench.impaired`). The default suite runs a short
case and checks that every byte arrives, that the link really dropped datagrams, that goodput
clears a floor, and that the runner's time series and counters hold together; the matrix and
the issue's targets are behind the ``slow`` marker (``pytest -m slow``).
"""

from __future__ import annotations

import json
import os
import statistics
from pathlib import Path

import pytest

from stt_bench.impaired import Case, RunResult, fairness, run_once
from stt_bench.impaired import series as series_mod
from stt_bench.impaired.__main__ import main as runner_main
from stt_bench.impaired.__main__ import parse_size

MiB = 1 << 20
BUILD = "pure" if os.environ.get("STT_PURE") else "compiled"  # the build the suite runs

# The short case's floor. Measured on the 2-core development machine with the pure-Python core:
# 0.40-0.79 of the bottleneck under a load average of 7-10 from other processes (the worst this
# suite meets; the tree of 02:40 UTC: startup overshoot into the queue, then BBR's bandwidth
# estimate settling near half the rate) and 0.92-0.94 at a load of 4 (the tree of 03:00 UTC).
# A transfer stuck in retransmission timeouts, or one whose sender stalls on its window,
# falls well below it.
FLOOR = 0.25


def test_parse_size_takes_the_units_the_runner_documents() -> None:
    assert parse_size("32MiB") == 32 * MiB
    assert parse_size("512KiB") == 512 * 1024
    assert parse_size("65536") == 65536
    with pytest.raises(Exception, match="expected a size"):
        parse_size("32MB")


def test_fairness_measures_the_second_half_of_the_shared_span() -> None:
    """Two flows whose rates differ in the second half only: the spread sees the second half."""
    from stt_bench.impaired.runner import Flow

    def flow(first: int, second: int) -> Flow:
        # 100 KB per 0.1 s at ``first`` bytes per step until 5 s, then ``second``
        points, total = [], 0
        for i in range(1, 101):
            total += first if i <= 50 else second
            points.append((i * 0.1, total))
        return Flow(bytes=total, seconds=10.0, goodput_bps=0.0, arrivals=tuple(points),
                    received=(), sender={})

    result = RunResult(case=Case(flows=2), flows=(flow(1000, 1000), flow(3000, 800)), link={})
    rates, spread = fairness(result)
    assert rates[0] == pytest.approx(1000 * 8 / 0.1, rel=0.05)
    assert rates[1] == pytest.approx(800 * 8 / 0.1, rel=0.05)
    assert spread == pytest.approx(0.2, abs=0.02)


def test_the_rate_of_a_cumulative_count_follows_its_slope() -> None:
    points = [(i * 0.01, i * 12_500) for i in range(200)]  # 12.5 kB per 10 ms: 10 Mbit/s
    rates = series_mod.rate_mbps(points, window=0.1)
    assert rates[0] == 0.0
    assert all(r == pytest.approx(10.0, rel=1e-6) for r in rates[20:])


def test_a_short_lossy_transfer_through_the_link_arrives_whole_and_fast(tmp_path: Path) -> None:
    """20 Mbit/s, 10 ms each way, 1 % loss, a 1-BDP drop-tail queue, 4 MiB on asyncio, in
    three processes: every byte arrives, the link dropped some at random, goodput clears the
    floor, and the sender's time series and the receiver's counts are on one time axis."""
    path = tmp_path / "run.jsonl"
    case = Case(rate="20mbit", delay="10ms", loss="1%", queue="1bdp", size=4 * MiB,
                runtime="asyncio", build=BUILD, seed=7)
    result = run_once(case, str(path))
    flow = result.flows[0]
    assert flow.bytes == 4 * MiB
    assert result.link["forward"]["lost"] > 0  # the path really was lossy
    assert result.link["send_errors"] == 0
    print(f"\n{json.dumps(result.as_dict()['flows'][0]['summary'])}\nratio {result.ratio:.3f}")
    assert FLOOR <= result.ratio <= 1.0
    # the sender counted the losses the link made (or more: it cannot know of fewer)
    summary = flow.sender["summary"]
    assert summary["packets_lost"] >= 1
    header, samples, received = series_mod.read(path)
    assert header["rate_mbps"] == 20.0 and header["queue_bytes"] == 50_000
    assert len(samples) >= flow.seconds / 0.05  # sampled every ~10 ms, loaded machine or not
    assert {s["congestion_state"] for s in samples} >= {"startup", "probe_bw"}
    assert received and received[-1][1] > 4 * MiB  # wire bytes: headers and repairs too
    # the receiver's last wire byte lands after the sender started and near the flow's end
    assert 0 < received[-1][0] <= flow.seconds + 0.1


@pytest.mark.parametrize("runtime", ["uvloop", "trio"])
def test_the_other_runtimes_ends_carry_a_transfer_through_the_link(runtime: str) -> None:
    """The ends on uvloop (stt_asyncio) and trio (stt_anyio): every byte arrives, the sender
    samples its stats, and the ends ran the build asked for (or the sources, when the
    compiled modules are stale: never the compiled core under STT_PURE=1)."""
    case = Case(rate="50mbit", delay="5ms", size=2 * MiB, runtime=runtime, build=BUILD)
    result = run_once(case)
    assert result.flows[0].bytes == 2 * MiB
    assert result.flows[0].sender["summary"]["packets_sent"] > 2 * MiB // 1400
    assert result.flows[0].received  # the receiver's samples came back
    if BUILD == "pure":
        assert result.compiled is False


def test_the_command_prints_each_run_and_the_median_and_minimum(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = tmp_path / "s.jsonl"
    assert runner_main(["--rate", "50mbit", "--delay", "5ms", "--size", "1MiB",
                        "--runtime", "asyncio", "--build", BUILD, "--runs", "1",
                        "--series", str(path)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("case: 50mbit, 5ms, loss 0%, queue 1bdp, 1 MiB, asyncio")
    assert out[1].startswith("run 1: goodput ")
    assert out[-1].startswith("goodput / bottleneck over 1 runs: median ")
    assert path.exists()


def test_two_flows_through_one_link_both_get_a_share() -> None:
    """Two senders through one 20 Mbit/s, 10 ms link for 4 s: over the second half neither
    starves (each at least a fifth of the rate) and together they fill most of it.

    The 20 % convergence target (issue 26, item 4) is the slow test below: on the loaded
    development machine one 6-s run's spread was 5-51 % (median 15 % of six), too noisy
    for one short run to gate the default suite on it."""
    case = Case(rate="20mbit", delay="10ms", queue="1bdp", seconds=4.0, message=64 * 1024,
                runtime="asyncio", build=BUILD, flows=2, seed=2)
    result = run_once(case)
    rates, spread = fairness(result)
    print(f"\nsecond half: {[round(r / 1e6, 2) for r in rates]} Mbit/s, spread {spread:.1%}")
    assert len(result.flows) == 2
    assert min(rates) >= 0.2 * case.rate_bps
    assert sum(rates) >= 0.5 * case.rate_bps


# -- the matrix and the targets (slow) -----------------------------------------------------------

RUNTIMES = ("asyncio", "uvloop", "trio")
BUILDS = ("compiled", "pure")


def _run(case: Case) -> RunResult:
    """One run; skipped when the compiled build is asked for but the ends could not load it
    (not built, or stale after an edit: the sources then run, and the figure is not the
    compiled one)."""
    result = run_once(case)
    if case.build == "compiled" and not result.compiled:
        pytest.skip("the compiled core is absent or stale (rebuild it: pip install -e .)")
    return result


def _runs(case: Case, count: int) -> list[float]:
    ratios = []
    for _ in range(count):
        result = _run(case)
        assert sum(flow.bytes for flow in result.flows) == case.size * case.flows
        ratios.append(result.ratio)
    return ratios


def _target(loss: str) -> float:
    return 0.8 if loss == "5%" else 0.9


def _size(rate: str, delay: str) -> int:
    """The transfer for a case: long enough that startup is not most of what is measured.
    Goodput counts the whole transfer, and at 100 Mbit/s, 50 ms BBR's STARTUP doubles from the
    initial window (12 kB) to the BDP (625 kB) in about six round trips whatever the
    controller does after it: about 0.3 s in which the link carries little, 10 % of a 32 MiB
    transfer (2.8 s). With a full link after startup, 32 MiB measured 0.864-0.875 at no loss
    (issue 26, 2026-12-05) and 96 MiB 0.931-0.936; the issue's own table measured 96-256 MiB."""
    if rate == "20mbit":
        return 8 * MiB
    return 96 * MiB if delay == "25ms" else 32 * MiB


@pytest.mark.slow
@pytest.mark.parametrize("build", BUILDS)
@pytest.mark.parametrize("runtime", RUNTIMES)
@pytest.mark.parametrize("delay", ["5ms", "25ms"])  # each way: 10 and 50 ms round trips
@pytest.mark.parametrize("rate", ["20mbit", "100mbit"])
@pytest.mark.parametrize("queue", ["1bdp", "8bdp"])
@pytest.mark.parametrize("loss", ["0%", "1%", "5%"])
def test_goodput_matrix(loss: str, queue: str, rate: str, delay: str, runtime: str,
                        build: str) -> None:
    """Median of three runs at the issue's bar for its loss (0.9 at 0-1 %, 0.8 at 5 %)."""
    case = Case(rate=rate, delay=delay, loss=loss, queue=queue, size=_size(rate, delay),
                runtime=runtime, build=build)
    ratios = _runs(case, 3)
    print(f"\n{case.label()}: {[round(r, 3) for r in ratios]}")
    assert statistics.median(ratios) >= _target(loss)


@pytest.mark.slow
@pytest.mark.parametrize("buffer", [None, 16 * MiB])
@pytest.mark.parametrize("build", BUILDS)
@pytest.mark.parametrize("loss", ["0%", "1%", "5%"])
def test_the_issue_target_case(loss: str, build: str, buffer: int | None) -> None:
    """100 Mbit/s, 50 ms, 1 BDP, 96 MiB (see _size) on uvloop, five runs: the median at the
    bar, and at 0-1 % loss no run below 0.8."""
    case = Case(rate="100mbit", delay="25ms", loss=loss, queue="1bdp",
                size=_size("100mbit", "25ms"), runtime="uvloop", build=build, buffer=buffer)
    ratios = _runs(case, 5)
    print(f"\n{case.label()}: {[round(r, 3) for r in ratios]}")
    assert statistics.median(ratios) >= _target(loss)
    if loss != "5%":
        assert min(ratios) >= 0.8


@pytest.mark.slow
def test_a_long_transfer_is_as_efficient_as_a_short_one() -> None:
    """256 MiB as efficient as 32 MiB (minus startup: within 0.05)."""
    short = Case(rate="100mbit", delay="25ms", loss="1%", queue="1bdp", size=32 * MiB)
    long = Case(rate="100mbit", delay="25ms", loss="1%", queue="1bdp", size=256 * MiB)
    assert statistics.median(_runs(long, 3)) >= statistics.median(_runs(short, 3)) - 0.05


@pytest.mark.slow
@pytest.mark.parametrize("build", BUILDS)
def test_queueing_delay_on_a_deep_queue_stays_under_one_base_rtt(build: str) -> None:
    """8-BDP queue, 100 Mbit/s, 50 ms: the median RTT sample less the base RTT is at most
    one base RTT (the issue asks this of BBR; a loss-based controller would fill the queue)."""
    case = Case(rate="100mbit", delay="25ms", queue="8bdp", size=32 * MiB, build=build)
    result = _run(case)
    median_delay, _ = result.queue_delay_ms()
    print(f"\nqueueing delay median {median_delay:.1f} ms")
    assert median_delay <= case.base_rtt * 1e3


@pytest.mark.slow
@pytest.mark.parametrize(("rate", "delay"), [("20mbit", "5ms"), ("100mbit", "25ms")])
@pytest.mark.parametrize("runtime", RUNTIMES)
def test_two_flows_converge_within_twenty_percent(rate: str, delay: str, runtime: str) -> None:
    """Two flows sharing a 1-BDP link for 20 s: over the second half their goodputs are
    within 20 % of each other (issue 26, item 4), the median of three runs."""
    case = Case(rate=rate, delay=delay, queue="1bdp", seconds=20.0, message=128 * 1024,
                runtime=runtime, flows=2)
    spreads = [fairness(_run(case))[1] for _ in range(3)]
    print(f"\n{case.label()}: spreads {[round(s, 3) for s in spreads]}")
    assert statistics.median(spreads) <= 0.2
