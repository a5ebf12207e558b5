"""The suite's headline (issue 25): figures from two fresh processes per measurement, on every
runtime, in processes that do nothing special (no heap tuning inherited from whoever started
them), and issue 25's targets judged from them. Short runs; the quick suite is in
``test_benchmarks.py``."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import pytest
from rich.console import Console

from stt_bench import twoproc
from stt_bench.alloc import TOP_PAD, TRIM_THRESHOLD
from stt_bench.headline import measure_goodput, short_of_a_core, targets
from stt_bench.report import handshake_line, targets_table

pytestmark = pytest.mark.filterwarnings("ignore:the kernel granted:RuntimeWarning")


def _environment_of(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes()
    pairs = (item.decode().partition("=") for item in raw.split(b"\0") if item)
    return {key: value for key, _, value in pairs}


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_peers_run_untuned_even_when_their_starter_is_tuned(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The old suite tuned its own heap and exported the settings, so every process it spawned
    ran tuned: a headline peer must not inherit them; ``tuned=True`` sets them on purpose."""
    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "1")
    monkeypatch.setenv("MALLOC_TOP_PAD_", "2")
    monkeypatch.setenv("GLIBC_TUNABLES", "glibc.malloc.trim_threshold=3")
    for tuned in (False, True):
        with twoproc.Peer({"runtime": "asyncio", "role": "echo", "kind": "raw",
                           "settings": {}}, tuned) as peer:
            assert peer.read()["address"][0] == "127.0.0.1"
            env = _environment_of(peer.process.pid)
        tuning = {k: v for k, v in env.items() if k.startswith("MALLOC_") or
                  k == "GLIBC_TUNABLES"}
        assert tuning == ({"MALLOC_TRIM_THRESHOLD_": str(TRIM_THRESHOLD),
                           "MALLOC_TOP_PAD_": str(TOP_PAD)} if tuned else {})


@pytest.mark.parametrize("runtime", ["asyncio", "trio"])
@pytest.mark.parametrize("kind", ["raw", "stt"])
def test_two_process_goodput_is_timed_by_the_sink(runtime: str, kind: str) -> None:
    rate = twoproc.goodput(runtime, kind, 0.2, settings={"max_frame_size": 16384},
                           frame=16384)
    assert rate > 1e6


def _peer_role(pid: int) -> str:
    """The role in a running peer's command line (read again until its exec is seen)."""
    for _ in range(100):
        command = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        if b"stt_bench.peer" in command:
            return str(json.loads(command[command.index(b"stt_bench.peer") + 1])["role"])
        time.sleep(0.01)
    raise AssertionError(f"process {pid} is not a benchmark peer")


def test_goodput_names_its_processes_while_they_run() -> None:
    roles: list[str] = []

    def ready(pids: list[int]) -> None:
        roles.extend(_peer_role(pid) for pid in pids)  # (read while both run)

    assert twoproc.goodput("asyncio", "raw", 0.2, frame=16384, on_ready=ready) > 1e6
    assert roles == ["sink", "source"]


@pytest.mark.parametrize("runtime", ["asyncio", "trio"])
@pytest.mark.parametrize("kind", ["raw", "stt"])
def test_two_process_ping_pong(runtime: str, kind: str) -> None:
    times = twoproc.ping_pong(runtime, kind, 30)
    assert len(times) == 30 and all(0 < t < 5 for t in times)


@pytest.mark.parametrize("datagram", [None, 16384])
def test_two_process_aioquic(datagram: int | None) -> None:
    pytest.importorskip("aioquic")
    assert twoproc.goodput("asyncio", "quic", 0.3, datagram=datagram) > 1e5


@pytest.mark.parametrize("runtime", ["asyncio", "trio"])
def test_handshakes_from_client_processes(runtime: str) -> None:
    result = twoproc.handshakes(runtime, 30, 2)
    assert result["sessions"] == 30 and result["clients"] == 2
    assert result["handshakes_per_s"] == pytest.approx(30 / result["seconds"])
    # each side's CPU per handshake, over the burst only: at least the X25519 work of its
    # side (four scalar multiplications, well over 10 µs), and far below the ~0.2 s a
    # process spends starting (importing), which must not be counted
    for key in ("node_cpu_s", "clients_cpu_s"):
        assert 10e-6 < result[key] < 0.1 / 30, (key, result[key])
    assert result["node_bound_per_s"] == pytest.approx(1 / result["node_cpu_s"])


def test_the_handshake_line_shows_the_cpu_that_bounds_the_rate() -> None:
    floor = {"per_side_s": 146e-6, "x25519_s": 126e-6, "hash_s": 20e-6,
             "floor_per_s": 1 / 146e-6}
    doc = {"concurrent": 2000, "clients": 4, "floor": floor, "runtimes": {
        "asyncio": {"handshakes_per_s": 2400.0, "of_floor": 2400 * 146e-6,
                    "node_cpu_s": 350e-6, "clients_cpu_s": 400e-6}}}
    line = handshake_line(doc)
    assert "asyncio 2,400 (0.35 of the floor)" in line
    assert "leaves the node 333 µs of its one core" in line
    assert "asyncio 350 / 400 µs" in line
    assert "from 4 client processes" in line
    assert "from 1 client process (median)" in handshake_line({**doc, "clients": 1})


def test_the_handshake_floor_is_measured() -> None:
    floor = twoproc.handshake_floor(50)
    assert floor["x25519_s"] > 0 and floor["hash_s"] > 0
    assert floor["per_side_s"] == pytest.approx(floor["x25519_s"] + floor["hash_s"])
    assert floor["floor_per_s"] == pytest.approx(1 / floor["per_side_s"])


def test_a_failing_peer_is_reported_with_its_stderr() -> None:
    with pytest.raises(twoproc.PeerError, match="KeyError"), \
            twoproc.Peer({"runtime": "asyncio", "role": "no such role"}) as peer:
        peer.read(30)


def test_every_sample_is_kept_and_the_ratio_pairs_them(monkeypatch: pytest.MonkeyPatch) -> None:
    """The ratio is the median of per-repeat ratios, raw and STT taken back to back."""
    figures = iter([100.0, 50.0, 100.0, 90.0, 200.0, 60.0])  # raw, stt per repeat
    shares = iter([{"sink": 0.9, "source": 1.0}, None, {"sink": 0.5, "source": 0.4}, None,
                   None, {"sink": 0.95, "source": 0.9}])

    def fake(runtime: str, kind: str, seconds: float, **options: object) -> dict[str, object]:
        return {"rate": next(figures), "busy": next(shares)}

    monkeypatch.setattr(twoproc, "transfer", fake)
    (row,) = measure_goodput(["trio"], (("64 KB", 65000, None),), 0.1, 3, False, False)
    assert row["raw_runs"] == [100.0, 100.0, 200.0]
    assert row["stt_runs"] == [50.0, 90.0, 60.0]
    assert row["ratio"] == pytest.approx(0.5)  # median of 0.5, 0.9, 0.3
    assert row["raw"] == 100.0 and row["stt"] == 60.0
    assert row["raw_busy"] == [{"sink": 0.9, "source": 1.0}, {"sink": 0.5, "source": 0.4}, None]
    assert row["stt_busy"] == [None, None, {"sink": 0.95, "source": 0.9}]
    assert short_of_a_core([row]) == ["trio 64 KB raw #2 (0.50)"]


def test_a_baseline_short_of_a_core_is_named_once_for_the_rows_it_serves() -> None:
    busy = [{"sink": 0.3, "source": 0.79}]
    rows = [{"runtime": "uvloop", "frame": "1,200 B", "frame_bytes": 1200, "raw_busy": busy,
             "stt_busy": [{"sink": 0.9, "source": 0.95}]},
            {"runtime": "uvloop", "frame": "1,200 B + offload", "frame_bytes": 1200,
             "raw_busy": busy, "stt_busy": [{"sink": 0.6, "source": 0.7}]},
            {"runtime": "trio", "frame": "1,200 B", "frame_bytes": 1200, "raw_busy": [None],
             "stt_busy": [{"sink": 0.8, "source": 0.2}]}]  # (0.8 of a core: enough)
    assert short_of_a_core(rows) == ["uvloop 1,200 B raw #1 (0.79)",
                                     "uvloop 1,200 B + offload stt #1 (0.70)"]


@pytest.mark.parametrize("runtime", ["asyncio", "trio"])
def test_a_transfer_says_how_busy_its_processes_were(runtime: str) -> None:
    result = twoproc.transfer(runtime, "raw", twoproc.BUSY_FROM + 0.6, frame=16384)
    assert result["rate"] > 1e6
    busy = result["busy"]
    assert set(busy) == {"sink", "source"}
    # the blast's source sends all the time and its sink opens what comes: both are busy
    assert 0.3 < busy["source"] <= 1.1 and 0.1 < busy["sink"] <= 1.1
    assert twoproc.transfer(runtime, "raw", 0.2, frame=16384)["busy"] is None  # too short


def _goodput_row(runtime: str, frame: str, ratio: float, **extra: float) -> dict[str, object]:
    return {"runtime": runtime, "frame": frame, "ratio": ratio, **extra}


def test_targets_pass_fail_and_not_measured() -> None:
    goodput = [_goodput_row("uvloop", "64 KB", 0.61), _goodput_row("uvloop", "16 KiB", 0.59),
               _goodput_row("trio", "1,200 B + offload", 0.5),
               _goodput_row("asyncio", "16 KiB", 0.7, over_aioquic_default=19.9,
                            over_aioquic_best=5.0)]
    latency = [{"runtime": "asyncio", "p50_ratio": 2.0, "p99_ratio": 3.1}]
    handshakes = {"concurrent": 2000, "runtimes": {"uvloop": {"handshakes_per_s": 3000.0}}}
    checks = {(c["target"], c["runtime"]): c["pass"]
              for c in targets(goodput, latency, handshakes)}
    assert checks[("goodput / raw UDP+AES-GCM, 64 KB", "uvloop")] is True
    assert checks[("goodput / raw UDP+AES-GCM, 16 KiB", "uvloop")] is False
    assert checks[("goodput / raw UDP+AES-GCM, 1,200 B + offload", "trio")] is True
    assert checks[("goodput / raw UDP+AES-GCM, 64 KB", "trio")] is None  # not measured
    assert checks[("ping-pong p50 / raw p50", "asyncio")] is True
    assert checks[("ping-pong p99 / raw p99", "asyncio")] is False
    assert checks[("ping-pong p50 / raw p50", "trio")] is None
    assert checks[("handshakes/s, 2,000 concurrent", "uvloop")] is True
    assert checks[("STT goodput (defaults) / aioquic at its defaults", "asyncio")] is False
    assert checks[("STT goodput (defaults) / aioquic at 16,384 B datagrams", "asyncio")] is True
    assert checks[("STT goodput (defaults) / aioquic at its defaults", "uvloop")] is None
    console = Console(width=200, record=True)
    console.print(targets_table(targets(goodput, latency, handshakes)))
    text = console.export_text()
    assert "PASS" in text and "FAIL" in text and "not measured" in text


def test_no_tuning_variable_reaches_a_peer_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MALLOC_ARENA_MAX", "2")
    env = twoproc.peer_environment(False)
    assert "MALLOC_ARENA_MAX" not in env
    assert env["PYTHONPATH"].split(os.pathsep)[0] == twoproc.ROOT
