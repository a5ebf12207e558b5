"""stt_bench/bulk_profile.py: a bulk transfer's CPU per MB, STT beside the raw blast, in both
processes, sorted by kind; docs/performance.md reads the goodput ratio's bound from it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from stt_bench.bulk_profile import WARMUP, costs, main, report
from stt_bench.perf_samples import can_sample


def _transfer(kind: str, rate: float, source: dict[str, int],
              sink: dict[str, int]) -> dict[str, Any]:
    return {"kind": kind, "rate": rate, "seconds": 2.0,
            "counts": {"source": source, "sink": sink}}


def _profile() -> dict[str, Any]:
    # 1,000 samples a CPU-second; 2 s at 500 MB/s = 1,000 MB: one sample = 1 µs per MB
    raw = _transfer("raw", 500e6, {"AEAD arithmetic": 400, "kernel": 200, "interpreter": 100},
                    {"AEAD arithmetic": 400, "kernel": 100, "interpreter": 150})
    # 2 s at 250 MB/s = 500 MB: one sample = 2 µs per MB
    stt = _transfer("stt", 250e6, {"AEAD arithmetic": 200, "kernel": 100, "compiled core": 100,
                                   "interpreter": 100},
                    {"AEAD arithmetic": 200, "kernel": 60, "compiled core": 200,
                     "interpreter": 50})
    return {"runtime": "trio", "frame": 65000, "frequency": 1000, "raw": raw, "stt": stt}


def test_samples_become_cpu_per_megabyte() -> None:
    profile = _profile()
    raw, stt = costs(profile["raw"], 1000), costs(profile["stt"], 1000)
    assert raw["source"] == {"AEAD arithmetic": 400, "kernel": 200, "interpreter": 100}
    assert stt["source"]["compiled core"] == 200
    assert stt["sink"] == {"AEAD arithmetic": 400, "kernel": 120, "compiled core": 400,
                           "interpreter": 100}
    assert costs({**profile["raw"], "rate": 0.0}, 1000)["source"]["kernel"] == 0


def test_report_sets_stt_beside_the_blast_and_says_what_the_cpu_allows() -> None:
    lines = report(_profile()).splitlines()
    assert lines[0].startswith("trio, 65,000-byte frames, two processes under perf")
    assert lines[1][:22].strip() == "µs of CPU per MB"
    assert lines[1][22:].split() == ["raw", "src", "STT", "src", "extra", "raw", "sink", "STT",
                                     "sink", "extra"]
    rows = {line[:22].strip(): [int(x.replace(",", "")) for x in line[22:].split()]
            for line in lines[2:-1]}
    # only the kinds that occur, in the kinds' order
    assert list(rows) == ["AEAD arithmetic", "kernel", "compiled core", "interpreter",
                          "all samples"]
    assert rows["AEAD arithmetic"] == [400, 400, 0, 400, 400, 0]
    assert rows["compiled core"] == [0, 200, 200, 0, 400, 400]
    assert rows["kernel"] == [200, 200, 0, 100, 120, 20]
    assert rows["all samples"] == [700, 1000, 300, 650, 1020, 370]
    # raw is bound by its source (700 µs per MB), STT by its sink (1,020): 700 / 1,020
    assert lines[-1] == ("Goodput under perf: raw 500 MB/s, STT 250 MB/s (0.50 x). With a "
                         "core for each process, busy all the time, the CPU per MB allows "
                         "STT 0.69 x the blast (raw's busiest process 700 µs per MB, STT's "
                         "1,020).")


def test_a_transfer_too_short_to_sample_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["--seconds", str(WARMUP)])
    assert exit_.value.code == 2
    assert "leaves nothing after the" in capsys.readouterr().err


@pytest.mark.slow
def test_a_short_transfer_is_profiled(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    if not can_sample(tmp_path):
        pytest.skip("perf is missing or may not sample this user's processes")
    main(["--runtime", "asyncio", "--frame", "16384", "--seconds", "2.5", "--frequency", "499"])
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("asyncio, 16,384-byte frames")
    rows = {line[:22].strip(): [float(x.replace(",", "")) for x in line[22:].split()]
            for line in lines[2:-1]}
    # both transfers seal and open: AES-GCM shows in all four processes
    assert all(cost > 0 for cost in rows["AEAD arithmetic"][0:2] + rows["AEAD arithmetic"][3:5])
    assert rows["compiled core"][1] > 0 and rows["compiled core"][0] == 0  # STT's, not raw's
    assert "the CPU per MB allows STT" in lines[-1]
