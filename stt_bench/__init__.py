"""STT's benchmarks: every figure beside a baseline measured in the same run, as a ratio.

* ``headline``: what the suite measures first, as applications run STT: two fresh processes
  per figure (``twoproc`` starts them; ``peer`` is their entry point, ``workloads.ends_*``
  their roles per runtime), default settings, no tuning; and issue 25's targets.
* ``workloads``: STT's measurements with both ends in one process per runtime (``on_asyncio``,
  ``on_trio``), the core alone (``core``), idle sessions, worker scaling and the CPU profile.
* ``baselines``: raw UDP+AEAD (per runtime), TCP+TLS 1.3 and aioquic.
* ``remote``: both ends of ``stt bench --serve`` / ``--to`` (``serve``, ``client``).
* ``netns``: real links between two network namespaces (a veth pair's MTU, a rule dropping IP
  fragments, a rate) with one node in each (``netns_peer``): issue 28's tests and goodput.
* ``registry``: which callable measures which one-process workload on which runtime; ``run_on``.
* ``report`` (tables and JSON), ``plots`` (PNGs), ``suite`` (``python -m stt_bench``, also
  ``python -m benchmarks``), ``alloc`` (glibc heap tuning for the tools, never for the
  headline).

``stt bench`` (in ``stt_cli``) imports this package; this package imports the library only, never
the command-line tool, and no private name of it.
"""
