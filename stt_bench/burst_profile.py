"""Where the CPU of a handshake burst goes, in the node's process and in the clients':

    python -m stt_bench.burst_profile [--runtime asyncio] [--count 2000] [--frequency 1999]

The suite's burst (``twoproc.handshakes``: one node process, one client process, ``count``
concurrent handshakes) with Linux ``perf`` attached to both processes once they have started
and before the burst is released (``perf record -e cpu-clock --call-graph dwarf``: ``perf``
must be installed and allowed to sample this user's processes). Each sample taken between the
burst's first start and last completion is sorted by what its stack was doing, in this order:

- *X25519 arithmetic*, *AEAD arithmetic*, *hash compression*: the field, cipher and
  compression functions at the top of the stack (OpenSSL's, hashlib's);
- *garbage collector*: a collection anywhere in the stack;
- *kernel*: the top of the stack in the kernel (system calls, page faults);
- *crypto calls*: on the way into ``cryptography`` or ``hashlib`` (STT's adapters in
  ``stt_proto.noise.primitives``, the libraries' Python and Rust layers, OpenSSL's dispatch);
- *compiled core*: in the mypyc-compiled ``stt_proto`` (with the pure-Python core installed,
  its time falls under the next);
- *interpreter*: the rest (the loop, the runtime, Python's own work between them).

Each is reported in µs of CPU per handshake (a cpu-clock sample is 1/frequency s of CPU) for
each process and both together, beside the budget a target rate leaves the whole machine.
Profiling slows the burst (perf copies each sample's stack), so the rate printed is not the
suite's; the shares are what the report is for.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from . import twoproc

KINDS = ("X25519 arithmetic", "AEAD arithmetic", "hash compression", "garbage collector",
         "kernel", "crypto calls", "compiled core", "interpreter")
ARITHMETIC = KINDS[:3]
CRYPTO = (*ARITHMETIC, "crypto calls")
ATTACH_WAIT = 0.5  # seconds given to perf to attach before the burst is released

_FRAME = re.compile(r"^\s*[0-9a-f]+\s+(.*?)\s+\(([^()]*)\)$")
_X25519 = re.compile(r"^(x25519|ossl_x25519|fe_|fe51_|fe64_|ge_|cmov$|table_select$|slide$)")
_AEAD = re.compile(r"chacha|poly1305|aesni|_gcm|gcm_|ghash", re.IGNORECASE)
_HASH = re.compile(r"blake2[sb]?_compress|sha\d*_block|sha\d+_compress", re.IGNORECASE)
_COLLECTOR = frozenset(("gc_collect_main", "gc_collect_region", "gc_collect_young",
                        "gc_collect_full", "gc_collect_increment"))
_CRYPTO_LIBRARIES = ("_rust.abi3", "libcrypto", "libssl", "_hashlib", "_blake2",
                     "_cffi_backend")
_CORE = "stt_proto__mypyc"
_ADAPTERS = ("CPyDef_primitives___", "CPyPy_primitives___")


class ProfileError(RuntimeError):
    """perf is missing, may not sample these processes, or recorded nothing."""


Frame = tuple[str, str]  # symbol, the library (dso) it is in
Sample = tuple[int, float, list[Frame]]  # pid, time (s, CLOCK_MONOTONIC), frames leaf first


def parse(text: str) -> list[Sample]:
    """Samples from ``perf script -F pid,time,ip,sym,dso``: a ``pid time:`` line, then one
    ``ip symbol (library)`` line per frame, innermost first, then a blank line. A frame
    inlined into its caller (``symbol (inlined)``) is in its caller's library."""
    samples: list[Sample] = []
    current: Sample | None = None
    for line in text.splitlines():
        if not line.strip():
            current = None
            continue
        if line[0] in " \t" and current is not None:
            match = _FRAME.match(line)
            if match:
                symbol, library = match.groups()
                current[2].append((symbol.split("+0x")[0], "" if library == "inlined" else library))
            continue
        fields = line.split()
        if len(fields) >= 2 and fields[0].isdigit():
            current = (int(fields[0]), float(fields[1].rstrip(":")), [])
            samples.append(current)
    for _, _, frames in samples:
        for at in range(len(frames) - 2, -1, -1):
            if not frames[at][1]:
                frames[at] = (frames[at][0], frames[at + 1][1])
    return samples


def classify(frames: list[Frame]) -> str:
    """The kind (one of :data:`KINDS`) of one sample's stack, innermost frame first."""
    if not frames:
        return "interpreter"
    leaf, leaf_library = frames[0]
    in_crypto_library = any(part in leaf_library for part in _CRYPTO_LIBRARIES)
    if in_crypto_library and _X25519.match(leaf):
        return "X25519 arithmetic"
    if in_crypto_library and _AEAD.search(leaf):
        return "AEAD arithmetic"
    if in_crypto_library and _HASH.search(leaf):
        return "hash compression"
    if any(symbol in _COLLECTOR for symbol, _ in frames):
        return "garbage collector"
    if leaf_library == "[kernel.kallsyms]":
        return "kernel"
    for symbol, library in frames:
        if _CORE in library:  # the innermost frame of the compiled core
            return "crypto calls" if symbol.startswith(_ADAPTERS) else "compiled core"
        if any(part in library for part in _CRYPTO_LIBRARIES):
            return "crypto calls"
    return "interpreter"


def tally(samples: Iterable[Sample], pids: dict[int, str], start: float,
          end: float) -> dict[str, Counter[str]]:
    """Samples taken from ``start`` to ``end`` counted by process role and kind."""
    counts: dict[str, Counter[str]] = {role: Counter() for role in pids.values()}
    for pid, stamp, frames in samples:
        role = pids.get(pid)
        if role is not None and start <= stamp <= end:
            counts[role][classify(frames)] += 1
    return counts


class _Perf:
    """``perf record`` attached to processes once they exist, until :meth:`stop`."""

    def __init__(self, data: Path, frequency: int) -> None:
        self.data, self.frequency = data, frequency
        self.process: subprocess.Popen[bytes] | None = None

    def attach(self, pids: list[int]) -> None:
        self.process = subprocess.Popen(
            ["perf", "record", "-q", "-e", "cpu-clock", "-F", str(self.frequency),
             "-k", "CLOCK_MONOTONIC", "--call-graph", "dwarf,16384", "-o", str(self.data),
             "-p", ",".join(str(pid) for pid in pids)],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        time.sleep(ATTACH_WAIT)
        if self.process.poll() is not None:
            assert self.process.stderr is not None
            raise ProfileError("perf record failed: "
                               + self.process.stderr.read().decode(errors="replace").strip())

    def stop(self) -> None:
        """SIGINT, as at a terminal: perf writes what it recorded and exits."""
        if self.process is not None:
            if self.process.poll() is None:
                self.process.send_signal(signal.SIGINT)
            self.process.wait(60)
            if self.process.stderr is not None:
                self.process.stderr.close()


def profile_burst(runtime: str, count: int, frequency: int) -> dict[str, Any]:
    """The burst run under perf: its result (``twoproc.handshakes``) and the samples of the
    node's process and the client process counted by kind."""
    if shutil.which("perf") is None:
        raise ProfileError("perf is not installed (Linux perf: linux-tools / linux-perf)")
    roles: dict[int, str] = {}
    with tempfile.TemporaryDirectory() as folder:
        perf = _Perf(Path(folder) / "perf.data", frequency)

        def ready(pids: list[int]) -> None:
            roles.update({pids[0]: "node", pids[1]: "clients"})
            perf.attach(pids)

        try:
            result = twoproc.handshakes(runtime, count, 1, on_ready=ready)
        finally:
            perf.stop()
        if not perf.data.exists():
            raise ProfileError("perf recorded nothing")
        text = subprocess.run(["perf", "script", "-i", str(perf.data), "-F",
                               "pid,time,ip,sym,dso"],
                              capture_output=True, text=True, check=True).stdout
    counts = tally(parse(text), roles, result["start"], result["end"])
    return {"runtime": runtime, "count": count, "frequency": frequency, "result": result,
            "counts": {role: dict(kinds) for role, kinds in counts.items()},
            "cores": os.cpu_count() or 1}


def report(profile: dict[str, Any], target: float) -> str:
    """The table of µs per handshake by kind and process, and the budget ``target``
    handshakes/s leaves both processes together on this machine's cores."""
    count, frequency = profile["count"], profile["frequency"]
    per = 1e6 / frequency / count  # µs per handshake that one sample stands for
    counts = {role: Counter(kinds) for role, kinds in profile["counts"].items()}
    result = profile["result"]
    lines = [f"{count:,} handshakes on {profile['runtime']}, profiled "
             f"({result['handshakes_per_s']:,.0f}/s under perf; cpu-clock at {frequency:,} Hz)",
             f"{'µs per handshake':<34}{'node':>8}{'clients':>9}{'both':>8}"]

    def row(name: str, node: float, clients: float) -> str:
        return f"{name:<34}{node:>8.0f}{clients:>9.0f}{node + clients:>8.0f}"

    for kind in KINDS:
        lines.append(row(kind, counts["node"][kind] * per, counts["clients"][kind] * per))
    totals = {role: sum(kinds.values()) * per for role, kinds in counts.items()}
    lines.append(row("all samples", totals["node"], totals["clients"]))
    lines.append(row("CPU the processes measured", result["node_cpu_s"] * 1e6,
                     result["clients_cpu_s"] * 1e6))
    both = totals["node"] + totals["clients"]
    crypto = sum(counts[role][kind] for role in counts for kind in CRYPTO) * per
    arithmetic = sum(counts[role][kind] for role in counts for kind in ARITHMETIC) * per
    budget = profile["cores"] / target * 1e6
    rest = both - crypto
    room = budget - crypto
    lines.append(
        f"At {target:,.0f}/s the machine's {profile['cores']} cores leave {budget:,.0f} µs of CPU "
        f"per handshake for both processes together. Cryptography takes {crypto:,.0f} "
        f"(its arithmetic {arithmetic:,.0f}, the calls into it {crypto - arithmetic:,.0f}); "
        f"everything else {rest:,.0f}, which would have to fit in "
        + (f"{room:,.0f} ({room / rest:.0%} of it)." if room > 0 else "nothing: the "
           "cryptography alone exceeds the budget."))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m stt_bench.burst_profile", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runtime", choices=("asyncio", "uvloop", "trio"), default="asyncio")
    parser.add_argument("--count", type=int, default=2000, help="concurrent handshakes")
    parser.add_argument("--frequency", type=int, default=1999, help="samples per CPU-second")
    parser.add_argument("--target", type=float, default=3000.0, help="handshakes/s")
    args = parser.parse_args(argv)
    try:
        profile = profile_burst(args.runtime, args.count, args.frequency)
    except ProfileError as exc:
        parser.exit(2, f"burst_profile: {exc}\n")
    print(report(profile, args.target))


if __name__ == "__main__":
    main()
