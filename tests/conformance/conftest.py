"""Every conformance test takes ``rt``: it runs once per runtime configuration."""

from __future__ import annotations

import json
import select
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest

from .runtimes import RUNTIMES, Runtime

PEER = Path(__file__).resolve().parent / "peer.py"

pytestmark = pytest.mark.filterwarnings("ignore:the kernel granted:RuntimeWarning")


@pytest.fixture(params=[runtime.name for runtime in RUNTIMES])
def rt(request: pytest.FixtureRequest) -> Runtime:
    runtime = next(r for r in RUNTIMES if r.name == request.param)
    if not runtime.available:
        pytest.skip(f"{runtime.requires} is not installed")
    return runtime


@attrs.frozen
class Peer:
    """A node serving :mod:`tests.conformance.peer`'s commands in another process."""

    process: subprocess.Popen[str]
    address: tuple[str, int]
    node_id: bytes

    @property
    def alive(self) -> bool:
        return self.process.poll() is None


def spawn_peer(runtime: Runtime, **settings: Any) -> Peer:
    args = [sys.executable, str(PEER), runtime.name, *(f"{k}={v}" for k, v in settings.items())]
    process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert process.stdout is not None
    ready, _, _ = select.select([process.stdout], [], [], 30)
    line = process.stdout.readline() if ready else ""
    if not line:
        process.kill()
        _, err = process.communicate()
        pytest.fail(f"the peer process did not start: {err[-2000:]}")
    info = json.loads(line)
    return Peer(process, ("127.0.0.1", info["port"]), bytes.fromhex(info["node_id"]))


@pytest.fixture
def peer(rt: Runtime) -> Iterator[Peer]:
    """The same runtime as the test, in another process."""
    started = spawn_peer(rt)
    yield started
    if started.alive:
        started.process.kill()
    started.process.communicate()
