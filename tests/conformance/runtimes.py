"""The runtime configurations every conformance test runs in: one line each.

A test body is an ``async def body(rt)`` written with anyio's primitives (which run on asyncio,
uvloop and trio alike); ``rt.node(...)`` builds the runtime's ``STTNode``. Only public names are
used, so the suite reads like a user's program.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Awaitable, Callable
from types import ModuleType
from typing import Any, TypeVar

import anyio
import attrs

import stt_anyio
import stt_asyncio

T = TypeVar("T")


@attrs.frozen
class Runtime:
    """One way a user runs STT: which package's node, on which event loop."""

    name: str
    package: ModuleType
    backend: str
    backend_options: dict[str, Any] = attrs.field(factory=dict)
    requires: str | None = None  # a module that must be importable

    @property
    def available(self) -> bool:
        return self.requires is None or importlib.util.find_spec(self.requires) is not None

    @property
    def is_anyio(self) -> bool:
        return self.package is stt_anyio

    def node(self, *args: Any, **settings: Any) -> Any:
        """The runtime's ``STTNode(*args, **settings)``."""
        return self.package.STTNode(*args, **settings)

    def run(self, body: Callable[[Runtime], Awaitable[T]]) -> T:
        """Run ``body(self)`` to completion on this runtime's loop."""

        async def main() -> T:
            return await body(self)

        return anyio.run(main, backend=self.backend, backend_options=self.backend_options)


RUNTIMES = [
    Runtime("asyncio", stt_asyncio, "asyncio"),
    Runtime("uvloop", stt_asyncio, "asyncio", {"use_uvloop": True}, requires="uvloop"),
    Runtime("trio", stt_anyio, "trio"),
    Runtime("anyio-asyncio", stt_anyio, "asyncio"),
]
BY_NAME = {runtime.name: runtime for runtime in RUNTIMES}
