"""Wake-ups across processes without busy polling.

Each waiting consumer binds a unix datagram socket (Linux abstract namespace, so no path
length limit and nothing to clean up on a crash) and registers its name as an empty file in
the wake directory beside the database. After every commit that readers care about, the
writer sends one small datagram to each registered socket. A datagram queued before the
reader waits is not lost, so "check, then wait" has no race; a full socket buffer only drops
redundant wake-ups. Readers still re-check every ``FALLBACK`` seconds in case a wake-up went
missing (for example on platforms without abstract sockets, where this degrades to polling).
"""

from __future__ import annotations

import contextlib
import os
import select
import socket
import sys
import time
import uuid
from pathlib import Path

FALLBACK = 0.15
"""Longest a reader sleeps without a wake-up before it looks again."""

_SETTLE_NS = 100_000_000
_ABSTRACT = sys.platform.startswith("linux")
_PREFIX = "\0ferryman-"


class Waiter:
    """One reader's wake-up socket."""

    def __init__(self, wake_dir: Path) -> None:
        self._file: Path | None = None
        self._sock: socket.socket | None = None
        if not _ABSTRACT:
            return
        name = uuid.uuid4().hex
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            sock.bind(_PREFIX + name)
            sock.setblocking(False)
            path = wake_dir / name
            path.touch()
        except OSError:
            sock.close()
            return
        self._sock = sock
        self._file = path

    def wait(self, timeout: float) -> bool:
        """Sleep until woken or ``timeout`` (capped at FALLBACK) passes, then drain wake-ups.

        Returns whether a wake-up arrived.
        """
        timeout = max(min(timeout, FALLBACK), 0.0)
        sock = self._sock
        if sock is None:
            select.select([], [], [], timeout)
            return False
        ready, _, _ = select.select([sock], [], [], timeout)
        if ready:
            self.drain()
        return bool(ready)

    def drain(self) -> None:
        sock = self._sock
        if sock is None:
            return
        with contextlib.suppress(OSError):
            while True:
                sock.recv(64)

    def close(self) -> None:
        if self._file is not None:
            with contextlib.suppress(OSError):
                self._file.unlink()
            self._file = None
        if self._sock is not None:
            self._sock.close()
            self._sock = None


class Notifier:
    """Sends wake-ups to every registered reader; the listing is re-read only when it changes."""

    def __init__(self, wake_dir: Path) -> None:
        self._dir = wake_dir
        self._stamp = -1
        self._listed_at = 0
        self._names: list[str] = []
        self._sock: socket.socket | None = None
        if _ABSTRACT:
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            self._sock.setblocking(False)

    def notify(self) -> None:
        sock = self._sock
        if sock is None:
            return
        try:
            stamp = os.stat(self._dir).st_mtime_ns
        except OSError:
            return
        # Directory times tick coarsely (a jiffy): a reader registering in the same tick as the
        # last listing leaves the time unchanged, so a listing made soon after a change is
        # repeated until the directory has been quiet for a while.
        if stamp != self._stamp or self._listed_at - stamp < _SETTLE_NS:
            self._stamp = stamp
            self._listed_at = time.time_ns()
            try:
                self._names = os.listdir(self._dir)
            except OSError:
                self._names = []
        for name in self._names:
            try:
                sock.sendto(b"!", _PREFIX + name)
            except BlockingIOError:
                pass  # its buffer is full of wake-ups already
            except (ConnectionRefusedError, FileNotFoundError):
                # nobody listens: a reader that died without unregistering
                with contextlib.suppress(OSError):
                    (self._dir / name).unlink()
            except OSError:
                pass

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
