"""Which worker's socket the kernel hands a datagram to, for ``STTNode(workers=N)``.

Worker 0 binds every socket of the port's ``SO_REUSEPORT`` group itself, in order, so the
kernel numbers them 0..N-1, and attaches one classic BPF program to the group
(``SO_ATTACH_REUSEPORT_CBPF``, Linux 4.5+). The kernel runs it on each datagram's UDP payload
and delivers to the socket whose index it returns:

* a payload shorter than a header (10 bytes) or of another version: socket 0;
* anything else: ``u32(bytes 2..5) mod N``, the first 4 bytes of the destination session id,
  which every packet type carries at the same place (``docs/wire-format.md``). An INITIAL's is
  the initiator's random id (uniform over sessions), or the id a redirecting RETRY gave it,
  which names a less-loaded worker (``stt_proto/placement.py``: the program stays stateless);
  every later packet's was chosen by the worker that owns the session, with its index encoded
  (``stt_proto/cids.py``).

The program returns only 0..N-1, the group's own sockets: a socket some other process of the
same user binds to the same address joins the group at index N or later and is never chosen
(the kernel falls back to its address hash only for an index past the group's end).

Where the program cannot be attached (another OS, an old kernel, a refusal) the kernel's
address hash steers, as before this module existed: :data:`ADDRESS_HASH`.
"""

from __future__ import annotations

import ctypes
import logging
import platform
import socket
import sys

from stt_proto import UsageError
from stt_proto.packet import VERSION

log = logging.getLogger("stt.workers")

SESSION_ID = "session-id"  # get_stats()["steering"]: this module's program runs
ADDRESS_HASH = "address-hash"  # the kernel's hash of the peer's address (the fallback)
SO_ATTACH_REUSEPORT_CBPF = 51  # asm-generic/socket.h; not in Python's socket module
HEADER = 10  # version, flags, destination id: the shortest datagram the program reads
Instruction = tuple[int, int, int, int]  # code, jump if true, jump if false, constant

# cBPF opcodes (linux/filter.h)
_LD_W_LEN = 0x80  # A = the packet's length
_LD_B_ABS = 0x30  # A = the byte at k
_LD_W_ABS = 0x20  # A = the big-endian 32-bit word at k (past the end: the program returns 0)
_JGE_K = 0x35
_JEQ_K = 0x15
_MOD_K = 0x94
_RET_A = 0x16
_RET_K = 0x06


def program(count: int) -> list[Instruction]:
    """The steering program for a group of ``count`` sockets."""
    if not 1 <= count <= 0xFFFF:
        raise ValueError(f"a group of {count} sockets")
    return [
        (_LD_W_LEN, 0, 0, 0),
        (_JGE_K, 0, 5, HEADER),  # shorter than a header: socket 0
        (_LD_B_ABS, 0, 0, 0),
        (_JEQ_K, 0, 3, VERSION),  # another version: socket 0
        (_LD_W_ABS, 0, 0, 2),  # the destination id's first 4 bytes
        (_MOD_K, 0, 0, count),
        (_RET_A, 0, 0, 0),
        (_RET_K, 0, 0, 0),
    ]


def select(payload: bytes | bytearray | memoryview, count: int) -> int:
    """The socket :func:`program` picks for ``payload``, in Python (for tests and tools)."""
    if len(payload) < HEADER or payload[0] != VERSION:
        return 0
    return int.from_bytes(bytes(payload[2:6]), "big") % count


class _Filter(ctypes.Structure):
    _fields_ = [("code", ctypes.c_uint16), ("jt", ctypes.c_uint8), ("jf", ctypes.c_uint8),
                ("k", ctypes.c_uint32)]


class _Program(ctypes.Structure):
    _fields_ = [("len", ctypes.c_uint16), ("filter", ctypes.POINTER(_Filter))]


def available() -> bool:
    """Whether this platform may have reuseport cBPF (Linux, with the generic option number)."""
    return (sys.platform.startswith("linux") and hasattr(socket, "SO_REUSEPORT")
            and not platform.machine().startswith(("sparc", "parisc", "alpha")))


def attach(sock: socket.socket, count: int) -> str | None:
    """Steer ``sock``'s reuseport group with :func:`program`; None when attached, else why not.
    Attaching again replaces the group's program (how worker 0 moves from 1 to N sockets)."""
    if not available():
        return f"reuseport cBPF is Linux-only (this is {sys.platform} {platform.machine()})"
    instructions = program(count)
    array = (_Filter * len(instructions))(*(_Filter(*i) for i in instructions))
    fprog = _Program(len(instructions), ctypes.cast(array, ctypes.POINTER(_Filter)))
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_REUSEPORT_CBPF, bytes(fprog))
    except OSError as exc:
        return f"SO_ATTACH_REUSEPORT_CBPF refused: {exc}"
    return None


def bind_first(sock: socket.socket, address: tuple[str, int]) -> None:
    """Bind a group's first socket while nobody else may hold the address, then let the rest of
    the group join: a port already in use fails here (as with one worker) instead of merging
    two unrelated groups, where either could replace the other's program."""
    option = getattr(socket, "SO_REUSEPORT", None)
    if option is None:
        raise UsageError("workers > 1 needs SO_REUSEPORT, which this platform lacks")
    sock.bind(address)
    sock.setsockopt(socket.SOL_SOCKET, option, 1)


def bind_member(sock: socket.socket, address: tuple[str, int]) -> None:
    """Bind another socket of the group :func:`bind_first` started."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(address)


__all__ = ["ADDRESS_HASH", "HEADER", "SESSION_ID", "SO_ATTACH_REUSEPORT_CBPF", "Instruction",
           "attach", "available", "bind_first", "bind_member", "program", "select"]
