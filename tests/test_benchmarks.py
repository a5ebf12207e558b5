"""The benchmark suite's parts run and measure what they claim (tiny sizes; the full suite is
``python -m stt_bench`` or ``python -m benchmarks``, and its quick mode runs under the slow
marker)."""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable

import pytest

from stt_bench.common import median
from stt_bench.registry import run_on
from stt_bench.workloads.profile import category


def test_tcp_tls_baseline_moves_bytes() -> None:
    assert run_on("asyncio", "tcp_tls_throughput", 0.1) > 1e6


def test_trio_tcp_tls_baseline_moves_bytes() -> None:
    assert run_on("trio", "tcp_tls_throughput", 0.1) > 1e6


@pytest.mark.parametrize("size", [1200, 65000])
def test_aioquic_baseline_moves_bytes(size: int) -> None:
    pytest.importorskip("aioquic")
    # 65000 exceeds aioquic's largest working datagram: measured at MAX_DATAGRAM instead
    assert run_on("asyncio", "aioquic_throughput", size, 0.2) > 1e5


def test_core_goodput_moves_messages_without_sockets() -> None:
    assert run_on("asyncio", "core_goodput", 1200, 0.2) > 1e6


def test_idle_sessions_reports_memory_and_close() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        result = run_on("asyncio", "idle_sessions", 40)
    assert result["sessions"] == 40
    assert result["server_sessions_after_close"] == 0  # every CLOSE seen by the peer
    assert result["close_s"] < 5


def test_profile_categories() -> None:
    assert category("~", "<method 'encrypt_into' of 'builtins.AESGCM' objects>") == "AEAD"
    assert category("~", "<method 'sendto' of '_socket.socket' objects>") == "socket I/O"
    assert category("/x/stt_proto/frames.py", "parse_frames") == "framing"
    assert category("/x/stt_proto/congestion/bbr.py", "on_ack") == "recovery + congestion"
    assert category("/x/stt_asyncio/node.py", "_service") == "runtime (stt_asyncio + asyncio)"
    assert category("/x/somewhere.py", "f") == "other"


@pytest.mark.filterwarnings("ignore:the kernel granted:RuntimeWarning")
def test_the_profile_sees_the_core_whichever_build_runs() -> None:
    """cProfile sees nothing inside compiled modules: the summary is taken over the sources."""
    from stt_bench.workloads.profile import profile_summary_of_sources

    shares = profile_summary_of_sources(16384, 0.3)
    assert abs(sum(shares.values()) - 1) < 1e-6
    assert shares.get("AEAD", 0) > 0.02 and shares.get("session + endpoint", 0) > 0.02


@pytest.mark.slow
def test_quick_suite_runs(tmp_path: object) -> None:
    from pathlib import Path

    from stt_bench.suite import main

    out = Path(str(tmp_path)) / "r.json"
    assert main(["--quick", "--json", str(out)]) == 0
    results = json.loads(out.read_text())
    import stt_proto

    assert results["compiled"] is stt_proto.COMPILED  # which core was measured
    assert results["heap_tuned"] is False
    head = results["headline"]
    for figures in head["handshakes"]["runtimes"].values():  # a median, samples kept
        assert len(figures["runs"]) == results["repeats"]
        assert figures["handshakes_per_s"] == median(
            [run["handshakes_per_s"] for run in figures["runs"]])
    runtimes = {row["runtime"] for row in head["goodput"]}
    assert runtimes == set(results["runtimes"]) and "trio" in runtimes  # every runtime
    for row in head["goodput"]:
        assert len(row["raw_runs"]) == len(row["stt_runs"]) == results["repeats"]
        assert len(row["raw_busy"]) == len(row["stt_busy"]) == results["repeats"]
        assert row["ratio"] == pytest.approx(median(
            [s / r for s, r in zip(row["stt_runs"], row["raw_runs"], strict=True)]))
    for row in head["latency"]:
        assert len(row["stt_samples"]) == len(row["raw_samples"]) == 200
    assert {c["pass"] for c in head["targets"]} <= {True, False, None}
    assert isinstance(head["short_of_a_core"], list)  # the transfers short of a core, if any
    assert "goodput" in results["one_process"]  # the secondary section, labelled apart


def test_offload_table_compares_with_its_own_run_and_aioquic() -> None:
    from rich.console import Console

    from stt_bench.report import offload_table

    rows = [
        {"runtime": "asyncio", "frame": 4096, "raw": 600e6, "stt": 270e6,
         "stt_offload": 360e6, "aioquic": 60e6},
        {"runtime": "trio", "frame": 4096, "raw": 580e6, "stt": 240e6, "stt_offload": 330e6},
        {"runtime": "asyncio", "frame": 65000, "raw": 4e9, "stt": 2e9},  # no offload row
    ]
    console = Console(width=200, record=True)
    console.print(offload_table(rows, 3, 2.0))
    text = console.export_text()
    assert "1.33" in text and "0.60" in text and "6.0" in text  # gain, with/raw, /aioquic
    assert "n/a" in text  # trio has no aioquic baseline
    assert "65000" not in text


def test_headline_only_skips_the_other_sections(tmp_path: object,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """``--headline-only`` (a machine lent for minutes) measures the headline and nothing
    else; without it every section runs."""
    from pathlib import Path

    from stt_bench import suite

    ran: list[str] = []

    def section(name: str, result: dict[str, int]) -> Callable[..., dict[str, int]]:
        def run(*args: object) -> dict[str, int]:
            ran.append(name)
            return result
        return run

    monkeypatch.setattr(suite, "headline", section("headline", {"h": 1}))
    monkeypatch.setattr(suite, "path_mtu_section", section("mtu", {"m": 1}))
    monkeypatch.setattr(suite, "secondary", section("secondary", {"s": 1}))
    out = Path(str(tmp_path)) / "r.json"
    assert suite.main(["--headline-only", "--json", str(out)]) == 0
    assert ran == ["headline"]
    results = json.loads(out.read_text())
    assert results["headline"] == {"h": 1}
    assert "path_mtu" not in results and "one_process" not in results
    ran.clear()
    assert suite.main(["--json", str(out)]) == 0
    assert ran == ["headline", "mtu", "secondary"]


def test_the_device_script_names_its_modes() -> None:
    """benchmarks/device.sh (the 16-core runs, one prepared command per call) refuses a mode
    it does not have before it builds or installs anything."""
    import subprocess
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    existed = (root / "device-out").exists()
    done = subprocess.run(["bash", "benchmarks/device.sh", "everything"], cwd=root,
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 2
    assert "usage: bash benchmarks/device.sh headline|extras" in done.stderr
    assert (root / "device-out").exists() == existed  # no output folder made for it


def test_idle_memory_is_measured_from_the_trimmed_heap_each_phase_starts_with(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Readings of a heap that holds free memory from before (100 bytes at the start) and
    whose every phase adds live memory and slack that a trim returns: the held figure of each
    phase is its live memory and slack, never below the trimmed one."""
    from stt_bench.workloads import idle

    readings = iter([1000, 900,     # before: 100 free bytes from earlier work
                     1350, 1300,    # sessions: +400 live, +50 slack
                     1530, 1500,    # first streams: +200 live, +30 slack
                     1860, 1800])   # further streams: +300 live, +60 slack
    monkeypatch.setattr(idle, "_rss", lambda: next(readings))
    monkeypatch.setattr(idle, "trim_heap", lambda: None)
    monkeypatch.setattr(idle, "CIPHER_IDLE_RELEASE", 0.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        result = run_on("asyncio", "idle_sessions", 5)
    per = 2 * 5
    assert result["rss_per_session_untrimmed"] == 450 / per
    assert result["rss_per_session"] == 400 / per
    assert result["rss_first_stream_untrimmed"] == 230 / per
    assert result["rss_first_stream"] == 200 / per
    assert result["rss_per_stream_untrimmed"] == 360 / per / idle.EXTRA_STREAMS
    assert result["rss_per_stream"] == 300 / per / idle.EXTRA_STREAMS
