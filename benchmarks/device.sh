#!/usr/bin/env bash
# The 16-core figures (issue 25, item 5) in one prepared command per call of a lent machine.
#
#   bash benchmarks/device.sh headline   # the suite's headline and targets (~8 min)
#   bash benchmarks/device.sh extras     # stage breakdown, handshake cost, workers (~4 min)
#
# Run from the repository root. Wheels the machine lacks (cryptography, trio, wsproto, mypy
# and their dependencies, for its Python) are taken from .whl/ when it exists and installed
# into /tmp/site; the core is compiled in place with mypyc when mypy is there. Results go to
# $OUT (the lent machine's output folder) or ./device-out. Nothing here tunes the process: the
# figures are the same untuned, two-process ones as on the 2-core machine.
set -euo pipefail
mode="${1:-headline}"
case "$mode" in
  headline|extras) ;;
  *) echo "usage: bash benchmarks/device.sh headline|extras" >&2; exit 2 ;;
esac
out="${OUT:-device-out}"
mkdir -p "$out"
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site \
    .whl/*.whl
  export PYTHONPATH="/tmp/site:$PWD"
else
  export PYTHONPATH="$PWD"
fi
export PYTHONUNBUFFERED=1
python3 setup.py build_ext --inplace >"$out/build.log" 2>&1 || true
python3 - <<'EOF' | tee "$out/machine.txt"
import os, platform, stt_proto
print(f"cpus {os.cpu_count()}, {platform.python_version()}, compiled core: {stt_proto.COMPILED}")
EOF
case "$mode" in
  headline)
    python3 -m stt_bench --headline-only --json "$out/headline.json" --plot "$out/img" \
      2>&1 | tee "$out/headline.txt"
    ;;
  extras)
    python3 -m stt_bench.stages --count 2000 2>&1 | tee "$out/stages.txt"
    python3 -m stt_bench.handshake_cost --retry 2>&1 | tee "$out/handshake_cost.txt"
    python3 -m stt_bench.workloads.workers_many --workers 1,2,4,8 --procs 4 --sessions 16 \
      --json "$out/workers.json" 2>&1 | tee "$out/workers.txt"
    ;;
esac
