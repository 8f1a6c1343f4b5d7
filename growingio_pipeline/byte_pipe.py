"""A bounded pipe of bytes between two threads: a download writes a part's inflated CSV, a parser reads it.

The writer ends the pipe (:meth:`BytePipe.finish`) only once the part is verified, or breaks it
(:meth:`BytePipe.fail`) with the reason: a reader never sees the end of a part that turns out to be
corrupt, so it can never finish parsing one. A reader that stops early closes the pipe; the writer's
later bytes are then dropped (the download still runs to the end, to tell a corrupt part from bad data).
"""

from __future__ import annotations

import io
import queue
import threading
from typing import Any

DEFAULT_DEPTH = 4
"""Writes held at once before the writer waits (each at most the inflater's output bound)."""

_POLL_S = 0.1


class BrokenPipeFailure(OSError):
    """Raised to the reader: the writer broke the pipe (``__cause__`` says why)."""


class BytePipe(io.RawIOBase):
    """A readable binary stream fed by another thread's :meth:`feed` calls, at most ``depth`` writes ahead."""

    def __init__(self, depth: int = DEFAULT_DEPTH) -> None:
        super().__init__()
        self._chunks: queue.Queue[bytes | BaseException | None] = queue.Queue(maxsize=depth)
        self._current = memoryview(b"")
        self._ended = False
        self._reader_gone = threading.Event()

    # writer side

    def feed(self, data: bytes) -> None:
        """Hand ``data`` to the reader, waiting while the pipe is full; dropped once the reader has closed."""
        if data:
            self._put(bytes(data))

    def finish(self) -> None:
        """No more bytes: the reader's next read past the data returns end of stream."""
        self._put(None)

    def fail(self, error: BaseException) -> None:
        """Break the pipe: the reader's next read raises :class:`BrokenPipeFailure` from ``error``."""
        self._put(error)

    def _put(self, item: bytes | BaseException | None) -> None:
        while not self._reader_gone.is_set():
            try:
                self._chunks.put(item, timeout=_POLL_S)
                return
            except queue.Full:
                continue

    # reader side

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        """Copy the next bytes into ``buffer``; 0 at the end of the stream."""
        while not self._current and not self._ended:
            item = self._chunks.get()
            if item is None:
                self._ended = True
            elif isinstance(item, BaseException):
                self._ended = True
                raise BrokenPipeFailure(f"the download failed: {item}") from item
            else:
                self._current = memoryview(item)
        size = min(len(buffer), len(self._current))
        buffer[:size] = self._current[:size]
        self._current = self._current[size:]
        return size

    def close(self) -> None:
        """The reader is done: the writer stops waiting and its later bytes are dropped."""
        self._reader_gone.set()
        super().close()
