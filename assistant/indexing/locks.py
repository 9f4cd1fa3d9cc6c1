"""Who may write an index: a file lock on a local folder, a lease on a Chroma server."""

from __future__ import annotations

import fcntl
import os
import socket
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

from ..errors import IndexLockedError, StoreError
from .store import IndexLocation, server_manifest


class IndexLock:
    """An exclusive, non-blocking lock on an index folder that names its holder."""

    def __init__(self, root: Path) -> None:
        self.path = root / ".lock"
        self._fh: Any = None

    def __enter__(self) -> "IndexLock":
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fh = open(self.path, "a+", encoding="utf-8")
        except OSError as exc:
            raise StoreError(
                f"cannot write the index folder {self.path.parent} ({exc.strerror or exc}); "
                "choose a writable folder with --index-dir or ASSISTANT_INDEX_DIR") from None
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            holder = fh.read().strip() or "another process"
            fh.close()
            raise IndexLockedError(
                f"another indexing run is writing {self.path.parent} ({holder}); "
                "wait for it to finish, then run `assistant index` again") from None
        fh.seek(0)
        fh.truncate()
        fh.write(f"pid {os.getpid()} on {socket.gethostname()}, started {time.strftime('%Y-%m-%d %H:%M:%S')}")
        fh.flush()
        self._fh = fh
        return self

    def __exit__(self, *exc: object) -> None:
        if self._fh is not None:
            self._fh.seek(0)
            self._fh.truncate()
            fcntl.flock(self._fh.fileno(), fcntl.LOCK_UN)
            self._fh.close()


def lock_held(root: Path) -> bool:
    """True while an indexing run holds the folder's lock (a reader then keeps the last keyword index)."""
    try:
        fh = open(root / ".lock", "r", encoding="utf-8")
    except OSError:
        return False
    with fh:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
        return False


@contextmanager
def _server_lease(loc: IndexLocation) -> Iterator[Callable[[], None]]:
    # On a Chroma server several machines may index at once: one lease on the server decides.
    if not loc.chroma_url:
        yield lambda: None
        return
    holder = f"pid {os.getpid()} on {socket.gethostname()}, started {time.strftime('%Y-%m-%d %H:%M:%S')}"
    manifest = server_manifest(loc)
    manifest.acquire(holder)
    try:
        yield lambda: manifest.renew(holder)
    finally:
        manifest.release(holder)
