"""Linux ``perf`` samples of benchmark processes, sorted by what each sample's stack was doing:
the shared part of :mod:`stt_bench.burst_profile` (a handshake burst) and
:mod:`stt_bench.bulk_profile` (a bulk transfer). ``perf record -e cpu-clock --call-graph
dwarf`` is attached to the processes once they exist; every sample stands for
1/frequency s of CPU, and :func:`classify` puts it under one of :data:`KINDS`:

- *X25519 arithmetic*, *AEAD arithmetic*, *hash compression*: the field, cipher and
  compression functions at the top of the stack (OpenSSL's, hashlib's);
- *garbage collector*: a collection anywhere in the stack;
- *kernel*: the top of the stack in the kernel (system calls, page faults);
- *crypto calls*: on the way into ``cryptography`` or ``hashlib`` (STT's adapters in
  ``stt_proto.noise.primitives``, the libraries' Python and Rust layers, OpenSSL's dispatch);
- *compiled core*: in the mypyc-compiled ``stt_proto`` (with the pure-Python core installed,
  its time falls under the next);
- *interpreter*: the rest (the loop, the runtime, Python's own work between them).
"""

from __future__ import annotations

import argparse
import re
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path

KINDS = ("X25519 arithmetic", "AEAD arithmetic", "hash compression", "garbage collector",
         "kernel", "crypto calls", "compiled core", "interpreter")
ARITHMETIC = KINDS[:3]
CRYPTO = (*ARITHMETIC, "crypto calls")
ATTACH_WAIT = 0.5  # seconds given to perf to attach before the measured work starts

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


class PerfRecorder:
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


def profile_parser(prog: str, doc: str | None, runtime: str,
                   frequency: int) -> argparse.ArgumentParser:
    """A profile command's parser with the options both profiles take: the runtime of the
    processes profiled and perf's sampling frequency (with these defaults)."""
    parser = argparse.ArgumentParser(prog=prog, description=doc,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runtime", choices=("asyncio", "uvloop", "trio"), default=runtime)
    parser.add_argument("--frequency", type=int, default=frequency,
                        help="samples per CPU-second")
    return parser


def run_command(parser: argparse.ArgumentParser, argv: list[str] | None,
                profile: Callable[[argparse.Namespace], str]) -> None:
    """A profile's command line: the report that ``profile`` makes of the parsed arguments,
    printed; exit status 2 with one line where perf is missing or refuses, or the arguments
    leave nothing to profile."""
    args = parser.parse_args(argv)
    try:
        text = profile(args)
    except (ProfileError, ValueError) as exc:
        parser.exit(2, f"{parser.prog}: {exc}\n")
    print(text)


def require_perf() -> None:
    """ProfileError unless Linux perf is installed."""
    if shutil.which("perf") is None:
        raise ProfileError("perf is not installed (Linux perf: linux-tools / linux-perf)")


def can_sample(folder: Path) -> bool:
    """Whether perf is installed and may sample this user's processes (a probe recorded in
    ``folder``): kernels often forbid it (``perf_event_paranoid``) in containers."""
    if shutil.which("perf") is None:
        return False
    probe = subprocess.run(["perf", "record", "-q", "-e", "cpu-clock", "-o",
                            str(folder / "probe.data"), "--", sys.executable, "-c", "pass"],
                           capture_output=True, check=False)
    return probe.returncode == 0


def read_samples(data: Path) -> list[Sample]:
    """The samples ``perf record`` wrote to ``data``, parsed (:func:`parse`)."""
    if not data.exists():
        raise ProfileError("perf recorded nothing")
    text = subprocess.run(["perf", "script", "-i", str(data), "-F", "pid,time,ip,sym,dso"],
                          capture_output=True, text=True, check=True).stdout
    return parse(text)


__all__ = ["ARITHMETIC", "ATTACH_WAIT", "CRYPTO", "KINDS", "Frame", "PerfRecorder",
           "ProfileError", "Sample", "can_sample", "classify", "parse", "read_samples",
           "require_perf", "run_command", "tally"]
