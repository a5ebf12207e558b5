"""The runtime layer both bindings share (``stt_asyncio``, ``stt_anyio``): UDP socket I/O
(buffers, GSO/GRO, the dual-stack address rules, the bounded drain), the session, stream and
DHT facades over a small wake-up :class:`~stt_runtime._signal.Signal` interface, the worker
pool, the websocket transport's limits and socket options, and the node's loop-independent half
(:class:`~stt_runtime.node_core.NodeCore`). It imports no event loop: each binding supplies its
signals, its clock and its socket waits. See ``docs/architecture.md``."""
