"""STT's benchmark suite: ``python -m benchmarks``, an entry point into the installed
``stt_bench`` package (``python -m stt_bench``; see ``docs/performance.md``)."""
