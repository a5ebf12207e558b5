"""The headline measurements: every figure from two fresh processes (:mod:`stt_bench.peer`) on
the same runtime, started for that one measurement, with nothing special in either. The process
running the suite only starts them and reads their lines; it measures nothing itself, so
whatever it did before (other workloads, heap growth, a tuned allocator) cannot leak in.

Unless ``tuned`` is asked for, a peer's environment is the caller's less every glibc allocator
variable (``MALLOC_*``, ``GLIBC_TUNABLES``): a figure of processes that do nothing special.
``tuned=True`` sets ``stt_bench.alloc``'s heap settings in both peers instead, for a figure
labelled as such beside the headline.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import os
import select
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any

from .alloc import TOP_PAD, TRIM_THRESHOLD
from .common import one_peer_sessions

PEER_TIMEOUT = 60.0
ROOT = str(Path(__file__).resolve().parent.parent)  # where the stt packages are imported from


class PeerError(RuntimeError):
    """A benchmark peer process failed or went silent; the message ends with its stderr."""


def peer_environment(tuned: bool) -> dict[str, str]:
    """The environment of a peer process: the caller's without allocator settings, or with
    the tools' heap settings when ``tuned``."""
    env = {key: value for key, value in os.environ.items()
           if not key.startswith("MALLOC_") and key != "GLIBC_TUNABLES"}
    if tuned:
        env["MALLOC_TRIM_THRESHOLD_"] = str(TRIM_THRESHOLD)
        env["MALLOC_TOP_PAD_"] = str(TOP_PAD)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (ROOT, env.get("PYTHONPATH")) if p)
    return env


class Peer:
    """One peer process: JSON lines from its stdout, lines to its stdin."""

    def __init__(self, spec: dict[str, Any], tuned: bool = False, *,
                 module: str = "stt_bench.peer", env: dict[str, str] | None = None) -> None:
        self.role = str(spec["role"])
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 (closed in close())
        self._buffer = b""
        self.process = subprocess.Popen(
            [sys.executable, "-m", module, json.dumps(spec)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr,
            env=peer_environment(tuned) if env is None else env)

    def _failure(self, what: str) -> PeerError:
        self._stderr.seek(0)
        tail = self._stderr.read()[-2000:].decode(errors="replace").strip()
        return PeerError(f"the {self.role} peer {what}" + (f": {tail}" if tail else ""))

    def read(self, timeout: float = PEER_TIMEOUT) -> dict[str, Any]:
        """The peer's next JSON line; PeerError if it exits or says nothing for ``timeout``."""
        assert self.process.stdout is not None
        fd = self.process.stdout.fileno()
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                raise self._failure(f"said nothing for {timeout:g} s")
            chunk = os.read(fd, 65536)
            if not chunk:
                raise self._failure(f"exited ({self.process.wait()})")
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        doc: dict[str, Any] = json.loads(line)
        return doc

    def tell(self, line: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(line.encode() + b"\n")
        self.process.stdin.flush()

    def close(self, timeout: float = 10.0) -> None:
        """End the peer's input and wait for it to exit (killed if it does not)."""
        if self.process.stdin is not None and not self.process.stdin.closed:
            with contextlib.suppress(BrokenPipeError):
                self.process.stdin.close()
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()
        self._stderr.close()

    def __enter__(self) -> Peer:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 trace: TracebackType | None) -> None:
        if exc is not None:
            self.process.kill()
        self.close()


BUSY_FROM = 1.0  # s after the source's start: its imports and handshake are over by then
STARVED = 0.8  # a busier process with less of a core waited, or the machine did not run it
_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100  # /proc's CPU time unit


def goodput(runtime: str, kind: str, seconds: float, *, settings: dict[str, Any] | None = None,
            frame: int = 16384, datagram: int | None = None, tuned: bool = False,
            on_ready: Callable[[list[int]], None] | None = None) -> float:
    """Bytes/s that the sink process takes in while the source process sends for ``seconds``:
    ``kind`` "raw" (sealed ``frame``-byte datagrams), "stt" (1 MiB messages on one stream of
    a node with ``settings``) or "quic" (aioquic, at ``datagram`` bytes or its default).
    ``on_ready``, if given, is called with the process ids (the sink's, then the source's) as
    soon as the source process has been started (a profiler attaches there)."""
    rate: float = transfer(runtime, kind, seconds, settings=settings, frame=frame,
                           datagram=datagram, tuned=tuned, on_ready=on_ready)["rate"]
    return rate


def transfer(runtime: str, kind: str, seconds: float, *, settings: dict[str, Any] | None = None,
             frame: int = 16384, datagram: int | None = None, tuned: bool = False,
             on_ready: Callable[[list[int]], None] | None = None) -> dict[str, Any]:
    """:func:`goodput`'s transfer: ``rate`` (bytes/s) and ``busy``, the share of a core that
    the sink's and the source's process each used from ``BUSY_FROM`` s after the source's
    start until it was done (None for a transfer too short to tell, or where ``/proc`` is
    missing). Both near 1 means the pair had its two cores and used them; a busier process
    under :data:`STARVED` means it waited, or (the raw blast never waits) the machine did not
    run it."""
    base = {"runtime": runtime, "kind": kind, "settings": settings or {}, "frame": frame,
            "datagram": datagram, "key": os.urandom(32).hex()}
    busy: dict[str, float] | None = None
    with Peer({**base, "role": "sink"}, tuned) as sink:
        ready = sink.read()
        with Peer({**base, "role": "source", "seconds": seconds, **ready}, tuned) as source:
            started = time.monotonic()
            pids = {"sink": sink.process.pid, "source": source.process.pid}
            if on_ready is not None:
                on_ready(list(pids.values()))
            first = None
            if seconds >= BUSY_FROM + 0.5:
                time.sleep(max(0.0, started + BUSY_FROM - time.monotonic()))
                first = _cpu_times(pids)
            source.read(seconds + PEER_TIMEOUT)
            last = _cpu_times(pids)  # (the source has not been waited for: still readable)
            if first is not None and last is not None and last[0] > first[0]:
                span = last[0] - first[0]
                busy = {role: (last[1][role] - first[1][role]) / span for role in pids}
        time.sleep(0.1)  # what is still in flight lands
        sink.tell("report")
        return {"rate": float(sink.read()["rate"]), "busy": busy}


def _cpu_times(pids: dict[str, int]) -> tuple[float, dict[str, float]] | None:
    """The time now and each process's CPU time so far (user + system, from ``/proc``)."""
    try:
        now = time.monotonic()
        times = {}
        for role, pid in pids.items():
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            times[role] = (int(fields[11]) + int(fields[12])) / _TICKS
        return now, times
    except (OSError, IndexError, ValueError):
        return None


def ping_pong(runtime: str, kind: str, count: int, *,
              settings: dict[str, Any] | None = None, tuned: bool = False) -> list[float]:
    """Round-trip times (s) of ``count`` pings from one process to an echo process: raw UDP,
    or (``kind`` "stt") a no_delay stream between nodes with ``settings``."""
    base = {"runtime": runtime, "kind": kind, "settings": settings or {}, "count": count}
    with Peer({**base, "role": "echo"}, tuned) as echo:
        ready = echo.read()
        with Peer({**base, "role": "pinger", **ready}, tuned) as pinger:
            times: list[float] = pinger.read(PEER_TIMEOUT + count * 0.05)["times"]
            return times


def handshakes(runtime: str, count: int, clients: int, *,
               settings: dict[str, Any] | None = None, tuned: bool = False,
               on_ready: Callable[[list[int]], None] | None = None) -> dict[str, Any]:
    """``count`` concurrent handshakes with one node, from ``clients`` client processes
    released at once: completed handshakes/s from the first start to the last completion
    (``start`` and ``end``, ``time.perf_counter`` stamps), and the CPU time (user + system)
    per handshake of the node's process and of the client processes together over the burst.
    ``on_ready``, if given, is called with the process ids (the node's first) once every process
    has started and before the burst is released (a profiler attaches there).

    The node is one process, so its own CPU per handshake bounds its rate wherever the
    clients run: ``node_bound_per_s`` is the rate at which it would need all of one core.
    Every client is on 127.0.0.1, so the node's admission limits per address and identity
    (flood defences) are raised to ``count``; all else is default, or ``settings``."""
    settings = {**one_peer_sessions(count), **(settings or {})}
    shares = [count // clients + (i < count % clients) for i in range(clients)]
    base = {"runtime": runtime, "kind": "stt", "settings": settings}
    with Peer({**base, "role": "hs_server"}, tuned) as server:
        ready = server.read()
        peers = [Peer({**base, "role": "hs_client", "count": share, **ready}, tuned)
                 for share in shares]
        try:
            for peer in peers:
                peer.read()
            if on_ready is not None:
                on_ready([server.process.pid] + [peer.process.pid for peer in peers])
            server_cpu = _cpu_time(server)
            for peer in peers:
                peer.tell("go")
            results = [peer.read(PEER_TIMEOUT + count / 100) for peer in peers]
            server_cpu = _cpu_time(server) - server_cpu
        finally:
            for peer in peers:
                peer.close()
    start = min(r["start"] for r in results)
    end = max(r["end"] for r in results)
    done = sum(r["count"] for r in results)
    node_cpu = server_cpu / done
    return {"handshakes_per_s": done / (end - start), "sessions": done, "clients": clients,
            "seconds": end - start, "start": start, "end": end,
            "node_cpu_s": node_cpu, "node_bound_per_s": 1 / node_cpu,
            "clients_cpu_s": sum(r["cpu"] for r in results) / done}


def _cpu_time(peer: Peer) -> float:
    """The CPU time a ``hs_server`` peer's process has used so far."""
    peer.tell("cpu")
    return float(peer.read()["cpu"])


# -- the floor -----------------------------------------------------------------------------------

# One side of STT's handshake (Noise_XX_25519_ChaChaPoly_BLAKE2s, see stt_proto.handshake):
# an ephemeral key pair and three DH (ee, es, se); MixHash for the prologue, e, s and the three
# payloads plus the protocol name (8 BLAKE2s); MixKey for ee, es, se and Split, each an HKDF of
# three HMAC-BLAKE2s (12 HMACs); and the peer's node id (one BLAKE2s).
DH_PER_SIDE = 3
HASHES_PER_SIDE = 9
HMACS_PER_SIDE = 12


def handshake_floor(rounds: int = 2000) -> dict[str, float]:
    """The X25519 and hash cost of one side of a handshake, measured with ``cryptography``
    and ``hashlib`` directly (no framing, no AEAD, no Python of STT's own): seconds per
    side, and the handshakes/s one core could complete at that cost alone."""
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

    peer_public = X25519PrivateKey.generate().public_key()
    start = time.perf_counter()
    for _ in range(rounds):
        key = X25519PrivateKey.generate()
        key.public_key()
        for _ in range(DH_PER_SIDE):
            key.exchange(peer_public)
    x25519 = (time.perf_counter() - start) / rounds
    data, chaining = bytes(96), bytes(32)
    start = time.perf_counter()
    for _ in range(rounds):
        for _ in range(HASHES_PER_SIDE):
            hashlib.blake2s(data).digest()
        for _ in range(HMACS_PER_SIDE):
            hmac.digest(chaining, data, hashlib.blake2s)
    hashing = (time.perf_counter() - start) / rounds
    per_side = x25519 + hashing
    return {"x25519_s": x25519, "hash_s": hashing, "per_side_s": per_side,
            "floor_per_s": 1 / per_side}
