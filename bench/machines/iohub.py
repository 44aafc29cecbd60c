"""One thread that waits on many sockets at once.

Consoles of hundreds of instances are read by a single selector thread instead of a
thread (or a poll loop) per instance: the harness shares the host's cores with the
instances it times, so waiting must cost nothing and must not grow with N.
"""

from __future__ import annotations

import os
import selectors
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from _typeshed import FileDescriptorLike

# How long remove() waits for the hub thread: it answers within one turn of its loop,
# so only a hub that is shutting down takes this long.
REMOVE_WAIT_S = 5.0


class Stream(Protocol):
    """A non-blocking socket as add_stream reads it."""

    def fileno(self) -> int: ...
    def recv(self, bufsize: int, /) -> bytes: ...


class IOHub:
    def __init__(self, name: str = "bench-io"):
        self._sel = selectors.DefaultSelector()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        self._sel.register(self._wake_r, selectors.EVENT_READ, None)
        self._pending: list[tuple[str, FileDescriptorLike, Callable[[], None] | None]] = []
        self._lock = threading.Lock()
        self._stopping = False
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    def add(self, fileobj: FileDescriptorLike, on_readable: Callable[[], None]) -> None:
        """Call on_readable() in the hub thread whenever fileobj has data (or EOF)."""
        self._request("add", fileobj, on_readable)

    def add_stream(
        self,
        sock: Stream,
        on_data: Callable[[bytes], None],
        on_end: Callable[[OSError | None], None],
    ) -> None:
        """Read a non-blocking socket in the hub thread: on_data(bytes) per read, then
        on_end(error or None) once, at EOF or a socket error (the socket is removed)."""

        def on_readable() -> None:
            err: OSError | None
            try:
                data = sock.recv(65536)
            except BlockingIOError:
                return
            except OSError as e:
                data, err = b"", e
            else:
                err = None
            if not data:
                self.remove(sock)
                on_end(err)
                return
            on_data(data)

        self.add(sock, on_readable)

    def remove(self, fileobj: FileDescriptorLike) -> None:
        """Stop watching fileobj. From another thread it returns once the hub thread has
        let it go, so no callback of it runs after: the caller may close it. (Closed
        any earlier, a readable event already taken from the selector would call its
        callback on a closed socket, which reads as the stream's end.)"""
        if threading.current_thread() is self._thread:
            self._unregister(fileobj)
            return
        done = threading.Event()
        self._request("remove", fileobj, done.set)
        if not self._stopping:
            done.wait(REMOVE_WAIT_S)

    def close(self) -> None:
        self._stopping = True
        os.write(self._wake_w, b"x")
        self._thread.join(timeout=5)
        self._sel.close()
        os.close(self._wake_r)
        os.close(self._wake_w)

    def _request(self, op: str, fileobj: FileDescriptorLike, cb: Callable[[], None] | None) -> None:
        # Registration happens in the hub thread, so the selector is never touched
        # by two threads at once.
        with self._lock:
            self._pending.append((op, fileobj, cb))
        os.write(self._wake_w, b"x")

    def _apply_pending(self) -> None:
        with self._lock:
            pending, self._pending = self._pending, []
        for op, fileobj, cb in pending:
            if op == "add":
                try:
                    self._sel.register(fileobj, selectors.EVENT_READ, cb)
                except (KeyError, ValueError, OSError):
                    pass  # closed before the hub saw it: nothing to watch
            else:
                self._unregister(fileobj)
                if cb is not None:
                    cb()

    def _unregister(self, fileobj: FileDescriptorLike) -> None:
        try:
            self._sel.unregister(fileobj)
        except (KeyError, ValueError, OSError):
            pass  # already removed or closed: nothing left to watch

    def _loop(self) -> None:
        while not self._stopping:
            for key, _ in self._sel.select():
                if key.data is None:
                    try:
                        os.read(self._wake_r, 4096)
                    except BlockingIOError:
                        pass
                    continue
                try:
                    key.data()
                except Exception:  # a broken callback must not stop every other console
                    try:
                        self._sel.unregister(key.fileobj)
                    except (KeyError, ValueError):
                        pass
            self._apply_pending()
