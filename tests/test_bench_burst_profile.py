"""stt_bench/burst_profile.py: a handshake burst's CPU sorted by what each perf sample's stack
was doing, which docs/performance.md sets against the budget of the handshake target."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from stt_bench.bulk_profile import main as bulk_main
from stt_bench.burst_profile import main, report
from stt_bench.perf_samples import KINDS, can_sample, classify, parse, tally

RUST = "/venv/cryptography/hazmat/bindings/_rust.abi3.so"
CORE = "/repo/stt_proto__mypyc.cpython-311-x86_64-linux-gnu.so"
PYTHON = "/usr/lib/libpython3.11.so.1.0"
BLAKE = "/usr/lib/python3.11/lib-dynload/_blake2.cpython-311-x86_64-linux-gnu.so"
KERNEL = "[kernel.kallsyms]"

SCRIPT = f"""\
101 10.500000:
\t    1a2b x25519_fe64_sqr ({RUST})
\t    1a2c x25519_scalar_mult ({RUST})
\t    3c4d <cryptography_rust::backend::x25519::X25519PrivateKey>::exchange ({RUST})
\t    5e6f CPyDef_primitives___dh_KeyPair_obj_____call__ ({CORE})
\tffffffffffffffff [unknown] ([unknown])

101 10.600000:
\t    7a8b PyObject_Malloc ({PYTHON})
\t    7a8c CPyDef_packet___parse_packet ({CORE})
\t    7a8d CPyDef_endpoint___Endpoint___receive_datagram ({CORE})

101 10.700000:
\tffffffff81000001 _copy_to_iter ({KERNEL})
\tffffffff81000002 do_syscall_64 ({KERNEL})
\t    9a01 __libc_recvmsg (/usr/lib/libc.so.6)
\t    9a02 _PyEval_EvalFrameDefault ({PYTHON})

202 10.800000:
\t    1111 visit_decref ({PYTHON})
\t    1112 gc_collect_main ({PYTHON})
\t    1113 _PyObject_GC_Alloc (inlined)
\t    1114 CPyDef_dataplane___DataPlane_____init__ ({CORE})

202 10.900000:
\t    2221 PyBlake2_blake2s_compress (inlined)
\t    2222 py_blake2s_update ({BLAKE})
\t    2223 CPyDef_primitives___hash_HashFunction_obj_____call__ ({CORE})

202 11.000000:
\t    3331 _PyEval_EvalFrameDefault ({PYTHON})
\t    3332 CPyDef_primitives___dh_KeyPair_obj_____call__ ({CORE})
\t    3333 CPyDef_noise___state___HandshakeState___read_message ({CORE})

202 11.100000:
\t    4441 ChaCha20_ssse3 ({RUST})
\t    4442 EVP_EncryptUpdate ({RUST})

202 11.200000:
\t    5551 ossl_namemap_name2num ({RUST})
\t    5552 EVP_PKEY_CTX_new ({RUST})
\t    5553 _PyEval_EvalFrameDefault ({PYTHON})

202 11.300000:
\t    6661 _PyEval_EvalFrameDefault ({PYTHON})
\t    6662 _PyEval_Vector ({PYTHON})

303 10.600000:
\t    7771 x25519_fe64_mul ({RUST})

202 20.000000:
\t    8881 x25519_fe64_mul ({RUST})
"""


def test_perf_script_text_is_read_into_samples() -> None:
    samples = parse(SCRIPT)
    assert [(pid, stamp) for pid, stamp, _ in samples] == [
        (101, 10.5), (101, 10.6), (101, 10.7), (202, 10.8), (202, 10.9), (202, 11.0),
        (202, 11.1), (202, 11.2), (202, 11.3), (303, 10.6), (202, 20.0)]
    first = samples[0][2]
    assert first[0] == ("x25519_fe64_sqr", RUST)
    # a Rust symbol with spaces and colons keeps its whole name; an inlined frame is in its
    # caller's library
    assert first[2] == ("<cryptography_rust::backend::x25519::X25519PrivateKey>::exchange", RUST)
    assert ("_PyObject_GC_Alloc", CORE) in samples[3][2]
    assert samples[4][2][0] == ("PyBlake2_blake2s_compress", BLAKE)


def test_each_stack_is_sorted_by_what_it_was_doing() -> None:
    kinds = [classify(frames) for _, _, frames in parse(SCRIPT)]
    assert kinds == ["X25519 arithmetic", "compiled core", "kernel", "garbage collector",
                     "hash compression", "crypto calls", "AEAD arithmetic", "crypto calls",
                     "interpreter", "X25519 arithmetic", "X25519 arithmetic"]
    assert classify([]) == "interpreter"
    # the names of the arithmetic count only inside a cryptographic library
    assert classify([("fe_mul", "/repo/some_extension.so")]) == "interpreter"


def test_only_the_bursts_samples_of_the_two_processes_count() -> None:
    counts = tally(parse(SCRIPT), {101: "node", 202: "clients"}, 10.55, 11.5)
    assert counts["node"] == {"compiled core": 1, "kernel": 1}  # 10.5 is before the burst
    assert counts["clients"] == {"garbage collector": 1, "hash compression": 1,
                                 "crypto calls": 2, "AEAD arithmetic": 1, "interpreter": 1}


def _profile() -> dict[str, object]:
    node = {"X25519 arithmetic": 300, "crypto calls": 100, "compiled core": 500,
            "interpreter": 100}
    clients = {"X25519 arithmetic": 300, "AEAD arithmetic": 20, "hash compression": 30,
               "crypto calls": 150, "compiled core": 400, "kernel": 50, "interpreter": 50}
    return {"runtime": "asyncio", "count": 1000, "frequency": 1000, "cores": 2,
            "counts": {"node": node, "clients": clients},
            "result": {"handshakes_per_s": 1500.0, "node_cpu_s": 1.05e-3,
                       "clients_cpu_s": 1.1e-3}}


def test_report_sets_the_kinds_against_the_budget() -> None:
    lines = report(_profile(), 3000).splitlines()
    assert lines[0] == "1,000 handshakes on asyncio, profiled (1,500/s under perf; " \
                       "cpu-clock at 1,000 Hz)"
    rows = {line[:34].strip(): line[34:].split() for line in lines[2:-1]}
    assert list(rows) == [*KINDS, "all samples", "CPU the processes measured"]
    assert rows["X25519 arithmetic"] == ["300", "300", "600"]  # one sample = 1 µs a handshake
    assert rows["all samples"] == ["1000", "1000", "2000"]
    assert rows["CPU the processes measured"] == ["1050", "1100", "2150"]
    # 2 cores at 3,000/s: 667 µs; crypto 300+100 + 300+20+30+150 = 900 already exceeds it
    assert lines[-1].startswith("At 3,000/s the machine's 2 cores leave 667 µs of CPU")
    assert "Cryptography takes 900 (its arithmetic 650, the calls into it 250); " \
           "everything else 1,100, which would have to fit in nothing" in lines[-1]
    # at 1,000/s: 2,000 µs, of which 1,100 are left for the 1,100 of the rest
    assert lines[-1] != report(_profile(), 1000).splitlines()[-1]
    assert report(_profile(), 1000).splitlines()[-1].endswith(
        "everything else 1,100, which would have to fit in 1,100 (100% of it).")


@pytest.mark.parametrize(("command", "argv"), [(main, ["--count", "10"]),
                                               (bulk_main, ["--seconds", "3"])])
def test_without_perf_the_commands_say_so(monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str],
                                          command: Callable[[list[str]], None],
                                          argv: list[str]) -> None:
    """Both profiles (the burst's and stt_bench.bulk_profile's) exit 2 with a clear line."""
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(SystemExit) as exit_:
        command(argv)
    assert exit_.value.code == 2
    assert "perf is not installed" in capsys.readouterr().err


@pytest.mark.slow
def test_a_small_burst_is_profiled(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    if not can_sample(tmp_path):
        pytest.skip("perf is missing or may not sample this user's processes")
    main(["--count", "200", "--frequency", "997"])
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("200 handshakes on asyncio, profiled")
    rows = {line[:34].strip(): [float(x) for x in line[34:].split()] for line in lines[2:-1]}
    # four X25519 a side: the arithmetic shows in both processes
    assert rows["X25519 arithmetic"][0] > 0 and rows["X25519 arithmetic"][1] > 0
    assert rows["all samples"][2] > 0
