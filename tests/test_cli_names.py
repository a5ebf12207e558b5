"""The pieces of :mod:`stt_cli.names` that decide where a received file lands."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from stt_cli.names import MAX_NAME, numbered, partial_path, place, safe_folder, safe_name


@pytest.mark.parametrize(("name", "number", "expected"), [
    ("report.pdf", 0, "report.pdf"), ("report.pdf", 2, "report (2).pdf"),
    ("archive.tar.gz", 1, "archive.tar (1).gz"), ("README", 1, "README (1)"),
])
def test_numbered_names(name: str, number: int, expected: str) -> None:
    assert numbered(name, number) == expected


@pytest.mark.parametrize(("name", "expected"), [
    ("...", "received.bin"), ("..hidden", "hidden"), ("C:\\\\Windows\\\\evil.dll", "evil.dll"),
    ("  spaced  ", "spaced"),
])
def test_safe_names(name: str, expected: str) -> None:
    assert safe_name(name) == expected


def test_a_long_name_is_cut_to_fit() -> None:
    name = safe_name("\u00e9" * 500 + ".txt")
    assert name.startswith("\u00e9" * 50) and len(name.encode()) <= MAX_NAME
    assert name.endswith(".txt")  # the extension survives the cut


def test_a_folder_too_deep_is_refused() -> None:
    assert safe_folder(["a"] * 32) == ["a"] * 32
    with pytest.raises(ValueError, match="deep"):
        safe_folder(["a"] * 33)


def test_partial_files_differ_by_sender_path_and_size(tmp_path: Path) -> None:
    base = partial_path(tmp_path, b"a" * 32, "x.bin", 10)
    assert base.name.startswith(".stt-partial-")
    assert base == partial_path(tmp_path, b"a" * 32, "x.bin", 10)
    assert len({base, partial_path(tmp_path, b"b" * 32, "x.bin", 10),
                partial_path(tmp_path, b"a" * 32, "y.bin", 10),
                partial_path(tmp_path, b"a" * 32, "x.bin", 11)}) == 4


def test_placing_never_replaces_and_concurrent_placements_get_distinct_names(
        tmp_path: Path) -> None:
    (tmp_path / "f.txt").write_text("original")
    partials = []
    for index in range(8):
        partial = tmp_path / f".p{index}"
        partial.write_text(str(index))
        partials.append(partial)
    placed: list[Path] = []
    threads = [threading.Thread(target=lambda p=p: placed.append(place(p, tmp_path, "f.txt")))
               for p in partials]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert (tmp_path / "f.txt").read_text() == "original"
    assert len(set(placed)) == 8
    assert sorted(path.read_text() for path in placed) == [str(i) for i in range(8)]
