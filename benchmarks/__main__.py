"""``python -m benchmarks``: the suite of :mod:`stt_bench.suite` (``python -m stt_bench``).

    python -m benchmarks [--quick] [--json results.json] [--plot docs/img]
"""

from __future__ import annotations

import sys

from stt_bench.suite import main

if __name__ == "__main__":
    sys.exit(main(prog="python -m benchmarks"))
