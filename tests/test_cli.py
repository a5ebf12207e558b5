"""The stt command line."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from stt_cli.main import main
from stt_proto import Identity

pytestmark = pytest.mark.filterwarnings("ignore:the kernel granted:RuntimeWarning")


def test_keygen_writes_a_private_identity(tmp_path: Path) -> None:
    path = tmp_path / "node.key"
    result = CliRunner().invoke(main, ["keygen", str(path)])
    assert result.exit_code == 0, result.output
    assert Identity.load(path).node_id.hex() in result.output
    again = CliRunner().invoke(main, ["keygen", str(path)])
    assert again.exit_code != 0 and "--force" in again.output


@pytest.mark.parametrize("kind", ["throughput", "latency", "sessions", "core"])
def test_bench_runs_and_prints_ratios(kind: str) -> None:
    args = ["bench", kind, "--seconds", "0.2", "--frame-size", "16384", "--count", "50"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    if kind in ("throughput", "latency", "core"):
        assert "ratio" in result.output
    else:
        assert "/s" in result.output
