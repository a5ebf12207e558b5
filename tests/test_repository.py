"""The repository stands alone: a fresh clone tests itself with nothing beside it."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
OUTSIDE = ".." + "/shared"  # spelt in two parts so this file does not match itself


def _tracked_files() -> list[Path]:
    try:
        out = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True,
                             check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout")
    return [ROOT / name for name in out.decode().split("\0") if name]


def test_no_file_reaches_outside_the_repository() -> None:
    offenders = []
    for path in _tracked_files():
        if not path.is_file() or path.suffix in {".png", ".json", ".so"}:
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue
        if OUTSIDE in text:
            offenders.append(str(path.relative_to(ROOT)))
    assert offenders == []


def test_the_noise_vectors_ship_with_their_license() -> None:
    vectors = ROOT / "tests" / "vectors"
    assert (vectors / "noise-cacophony-25519.json").stat().st_size > 100_000
    assert "public domain" in (vectors / "LICENSE-cacophony-vectors.txt").read_text().lower()


@pytest.mark.parametrize("package", ["stt_proto", "stt_asyncio", "stt_anyio", "stt_cli"])
def test_every_package_is_typed(package: str) -> None:
    assert (ROOT / package / "py.typed").exists()
