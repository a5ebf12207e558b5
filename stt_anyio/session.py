"""stt_anyio's sessions and streams: the shared facades of ``stt_runtime.session``, raising
exceptions that are anyio's too.

A stream is an ``anyio.abc.ObjectStream[bytes]``, so code written against anyio's stream
contract works unchanged: ``ClosedResourceError`` after our own ``send_eof``/``aclose``,
``EndOfStream`` after the peer's graceful close, ``BrokenResourceError`` after a reset or the
loss of the session. Each of those is raised as a class deriving from both the ``stt_proto``
exception and anyio's, so ``except StreamReset`` and ``except anyio.BrokenResourceError`` both
catch a reset.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import ClassVar, TypeVar, cast

import anyio
import anyio.abc

from stt_proto import errors as _errors
from stt_runtime.session import Session as _Session
from stt_runtime.session import Stream as _Stream


class StreamClosed(_errors.StreamClosed, anyio.EndOfStream):
    """The peer closed the stream gracefully and everything it sent has been read."""


StreamEnd = StreamClosed  # the name of this class before it took stt_proto's


class StreamReset(_errors.StreamReset, anyio.BrokenResourceError):
    """The stream was aborted, by either side; ``error_code`` is the code given to reset."""


class StreamClosedLocally(_errors.StreamClosedLocally, anyio.ClosedResourceError):
    """This side closed the stream for that operation (``send_eof``/``aclose``)."""


class SessionClosed(_errors.SessionClosed, anyio.BrokenResourceError):
    """The session is closed: ``error_code`` and ``reason`` say why, ``by_peer`` who closed it."""


ErrorT = TypeVar("ErrorT", bound=_errors.STTError)

# stt_proto class -> its subclass that is also BrokenResourceError (made once per class).
_BROKEN: dict[type[_errors.STTError], type[_errors.STTError]] = {
    _errors.SessionClosed: SessionClosed,
}


def broken(error: ErrorT) -> ErrorT:
    """``error`` as an instance of a subclass of its class and of BrokenResourceError, with
    the same arguments and attributes: how the loss of a session (keep-alive timeout, a
    protocol error, a CLOSE) reaches anyio code that waits on a stream."""
    if isinstance(error, anyio.BrokenResourceError):
        return error
    cls = type(error)
    broken_cls = _BROKEN.get(cls)
    if broken_cls is None:
        broken_cls = _BROKEN[cls] = type(cls.__name__, (cls, anyio.BrokenResourceError),
                                         {"__module__": __name__, "__doc__": cls.__doc__})
    copy = broken_cls.__new__(broken_cls, *error.args)
    copy.__dict__.update(error.__dict__)
    copy.__cause__, copy.__context__ = error.__cause__, error.__context__
    return cast("ErrorT", copy)


class Stream(_Stream, anyio.abc.ObjectStream[bytes]):
    """A reliable, ordered, message-preserving stream that is an anyio ObjectStream."""

    _end_error: ClassVar[type[_errors.StreamClosed]] = StreamClosed
    _reset_error: ClassVar[type[_errors.StreamReset]] = StreamReset
    _closed_error: ClassVar[type[_errors.StreamClosedLocally]] = StreamClosedLocally

    def __aiter__(self) -> Stream:
        return self

    async def __anext__(self) -> bytes:
        try:
            return await self.receive()
        except anyio.EndOfStream:
            raise StopAsyncIteration from None

    async def send_eof(self) -> None:
        """Half-close: queued data is sent, then FIN; this side can still receive."""
        await self.close()

    async def aclose(self) -> None:
        """Close both directions: FIN (if not sent yet) after what is queued, and STOP_SENDING
        so the peer's further sends fail with StreamReset; our own later sends and receives
        raise ClosedResourceError."""
        await self._close_both()


class Session(_Session):
    """An authenticated, encrypted session with one peer, on anyio."""

    __slots__ = ()
    stream_class = Stream

    # The same calls as stt_asyncio's, typed with this runtime's Stream (an ObjectStream).
    def open_stream(self, max_frame_size: int | None = None, no_delay: bool | None = None,
                    priority: int = 0) -> Stream:
        """Open a stream (synchronous). Raises StreamLimitError past max_concurrent_streams."""
        return cast(Stream, super().open_stream(max_frame_size, no_delay, priority))

    async def accept_stream(self) -> Stream:
        """The next stream the peer opened."""
        return cast(Stream, await super().accept_stream())

    async def streams(self) -> AsyncIterator[Stream]:
        """Every stream the peer opens, as it opens them."""
        async for stream in super().streams():
            yield cast(Stream, stream)

    def _session_error(self) -> _errors.STTError:
        return broken(super()._session_error())
