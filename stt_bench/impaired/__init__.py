"""Goodput through an impaired link on real sockets (issue 26): a receiver, one or more senders
and ``stt_runtime.impair``'s link, each in a process of its own, with the sender's session
stats sampled every 10 ms into a time series that :mod:`stt_bench.impaired.plot` draws.

    python -m stt_bench.impaired --rate 100mbit --delay 25ms --loss 1% --queue 1bdp \\
        --size 32MiB --runtime uvloop --runs 5

docs/impair.md describes it; tests/test_impaired_goodput.py runs it.
"""

from __future__ import annotations

from .runner import Case, Flow, RunResult, fairness, run_once

__all__ = ["Case", "Flow", "RunResult", "fairness", "run_once"]
