"""``python -m stt_bench``: the whole suite (see :mod:`stt_bench.suite`)."""

import sys

from .suite import main

sys.exit(main())
