"""The many-sessions workers benchmark (issue 27, item 4): its counts per worker add up to what
the clients sent, every worker serves, the sessions of one client address spread over the
workers and meet the balance target (placement, ``stt_proto/placement.py``), and the odds it
gives for the hash alone are the multinomial's."""

from __future__ import annotations

import asyncio
import math
import os
import socket
import sys

import pytest

from stt_bench.workloads.workers_many import (
    SessionReport,
    balance_verdict,
    chance_below,
    many_sessions,
    summarize,
    table,
    tolerated_least,
)

REUSEPORT = pytest.mark.skipif(not hasattr(socket, "SO_REUSEPORT")
                               or not sys.platform.startswith("linux"),
                               reason="SO_REUSEPORT worker processes")
FLAKE_ODDS = 1e-4  # how often a bound may be missed by the hash's chance alone


def _binomial_tail(sessions: int, below: int) -> float:
    """P(one of two workers gets fewer than ``below``): Binomial(sessions, 1/2)."""
    outcomes: int = 2 ** sessions
    return sum(math.comb(sessions, i) for i in range(below)) / outcomes


@pytest.mark.parametrize(("sessions", "least"), [(16, 1), (16, 4), (32, 5), (33, 16), (64, 16)])
def test_chance_below_is_the_binomial_for_two_workers(sessions: int, least: int) -> None:
    # least <= sessions / 2: one worker short and the other short are disjoint events
    assert chance_below(sessions, 2, least) == pytest.approx(2 * _binomial_tail(sessions, least),
                                                             rel=1e-9, abs=1e-15)


@pytest.mark.parametrize(("sessions", "workers"), [(64, 4), (64, 8), (20, 3), (10, 16)])
def test_chance_of_an_idle_worker_is_inclusion_exclusion(sessions: int, workers: int) -> None:
    idle = sum((-1) ** (j + 1) * math.comb(workers, j) * (1 - j / workers) ** sessions
               for j in range(1, workers + 1))
    assert chance_below(sessions, workers, 1) == pytest.approx(idle, rel=1e-9, abs=1e-15)


def test_chance_below_edges() -> None:
    assert chance_below(64, 1, 64) == 0.0 and chance_below(64, 1, 65) == 1.0
    assert chance_below(8, 4, 0) == 0.0 and chance_below(8, 4, 3) == 1.0  # 4 x 3 > 8


@pytest.mark.parametrize(("sessions", "workers"), [(32, 2), (64, 4), (64, 8)])
def test_tolerated_least_is_the_largest_bound_within_the_odds(sessions: int,
                                                              workers: int) -> None:
    least = tolerated_least(sessions, workers, FLAKE_ODDS)
    assert chance_below(sessions, workers, least) <= FLAKE_ODDS
    assert chance_below(sessions, workers, least + 1) > FLAKE_ODDS


def test_summarize_adds_up_per_worker() -> None:
    reports = [SessionReport(0, 10, 300, 3, 1.0, 2.0), SessionReport(1, 11, 100, 1, 1.5, 3.0),
               SessionReport(1, 11, 200, 2, 1.2, 2.5)]
    summary = summarize(reports, 3, 600, 2.5)
    rows = summary["per_worker"]
    assert [(r["sessions"], r["bytes"], r["pids"]) for r in rows] == [
        (1, 300, [10]), (2, 300, [11]), (0, 0, [])]
    assert summary["bytes"] == 600 and summary["span"] == pytest.approx(2.0)
    assert summary["goodput"] == pytest.approx(300.0)
    assert summary["client_goodput"] == pytest.approx(240.0)
    assert rows[1]["session_share"] == pytest.approx(2.0)  # 2 of a mean of 1
    assert summary["least_session_share"] == 0.0 and summary["least_byte_share"] == 0.0
    assert summary["balance"].startswith("n/a")
    summary["ratio"] = None
    assert any("worker 2:   0 sessions" in line for line in table([summary]))


def test_redirects_are_each_workers_latest_count_summed() -> None:
    reports = [SessionReport(0, 10, 1, 1, 1.0, 2.0, 2), SessionReport(0, 10, 1, 1, 1.0, 2.0, 5),
               SessionReport(1, 11, 1, 1, 1.0, 2.0, 3), SessionReport(1, 12, 1, 1, 1.0, 2.0)]
    summary = summarize(reports, 2, 4, 1.0)
    assert summary["redirected"] == 5 + 3  # a replacement (pid 12) counts from 0
    summary["ratio"] = None
    assert table([summary])[1].endswith("; 8 redirected")


def test_balance_verdict_is_the_issue_target() -> None:
    assert balance_verdict(64, 4, 8) == "PASS"  # half of the mean, 16
    assert balance_verdict(64, 4, 7) == "FAIL"
    assert balance_verdict(63, 4, 0).startswith("n/a")  # the target starts at 64 sessions


@REUSEPORT
def test_two_workers_serve_many_sessions_from_each_client_and_bytes_add_up() -> None:
    procs, sessions = 2, 16
    result = asyncio.run(many_sessions(2, procs, sessions, 1.0))
    rows = result["per_worker"]
    assert result["sessions"] == procs * sessions == sum(r["sessions"] for r in rows)
    # what the workers counted, session by session, is what the clients sent
    assert sum(r["bytes"] for r in rows) == result["bytes"] == result["sent"] > 0
    assert all(r["bytes"] > 0 for r in rows)
    # each worker index is one process; worker 0 is this one, which called serve()
    assert [len(r["pids"]) for r in rows] == [1, 1]
    assert rows[0]["pids"] == [os.getpid()] != rows[1]["pids"]
    # 2 clients, one address each, yet 32 sessions spread by their ids, and placement keeps
    # every worker at half the mean or more (the hash alone misses it in 0.2 % of runs)
    assert min(r["sessions"] for r in rows) >= procs * sessions / 2 / 2
    assert tolerated_least(procs * sessions, 2, FLAKE_ODDS) < procs * sessions / 2 / 2


@REUSEPORT
def test_four_workers_meet_the_balance_target_with_64_sessions() -> None:
    """The issue's target: with >= 64 sessions no worker under half the mean share. The hash
    alone misses it in 1.7 % of runs with 4 workers; placement redirects new sessions from a
    worker clearly over the least-loaded one (tests/test_placement.py: never missed in 20
    simulated bursts of 64, nor in a model of 2,000 worst-case ones)."""
    procs, sessions, workers = 4, 16, 4
    result = asyncio.run(many_sessions(workers, procs, sessions, 0.5))
    rows = result["per_worker"]
    assert result["sessions"] == procs * sessions == sum(r["sessions"] for r in rows)
    assert sum(r["bytes"] for r in rows) == result["bytes"] == result["sent"] > 0
    assert len({pid for r in rows for pid in r["pids"]}) == workers
    assert result["balance"] == "PASS", [r["sessions"] for r in rows]
    assert result["least_session_share"] >= 0.5
