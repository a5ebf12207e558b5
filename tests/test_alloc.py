"""The command-line tool's heap tuning, which its child processes must inherit (run in a
subprocess each: the tuning and its environment variables would otherwise stay in pytest's)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from stt_bench.alloc import TOP_PAD, TRIM_THRESHOLD

ROOT = str(Path(__file__).resolve().parent.parent)

CHILD = """
import multiprocessing, os, sys
from stt_bench.alloc import tune_heap

def report(queue):
    queue.put((os.environ.get("MALLOC_TRIM_THRESHOLD_"), os.environ.get("MALLOC_TOP_PAD_")))

if __name__ == "__main__":
    applied = tune_heap()
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    child = context.Process(target=report, args=(queue,))
    child.start()
    print(applied, *queue.get(timeout=60))
    child.join(30)
"""


def _run(env: dict[str, str], folder: Path) -> list[str]:
    script = folder / "child.py"  # a file: a spawned process re-imports its parent's main
    script.write_text(CHILD)
    # the script's folder, not the checkout, heads the child's path: import this checkout
    env = {**env, "PYTHONPATH": os.pathsep.join(filter(None, (ROOT, env.get("PYTHONPATH"))))}
    done = subprocess.run([sys.executable, str(script)], env=env, capture_output=True,
                          text=True, timeout=60, check=True)
    return done.stdout.split()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_a_spawned_process_starts_with_the_same_heap_settings(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    applied, trim, pad = _run(env, tmp_path)
    if applied == "False":  # not glibc (musl): nothing was tuned, nothing exported
        assert (trim, pad) == ("None", "None")
        return
    assert (applied, trim, pad) == ("True", str(TRIM_THRESHOLD), str(TOP_PAD))


def test_a_choice_made_in_the_environment_is_kept(tmp_path: Path) -> None:
    env = {**os.environ, "MALLOC_TRIM_THRESHOLD_": "12345", "MALLOC_TOP_PAD_": "678"}
    assert _run(env, tmp_path) == ["True", "12345", "678"]
