"""The one on-disk cache behind the LM feature cache and the LLM response cache.

Values are bytes under sha256 keys, kept by `diskcache` (SQLite plus files) within a size
bound, so threads and processes (a worker pool) can share one directory. A cache never
breaks a run: an unreadable record reads as a miss, and a failed write only warns.
"""

import hashlib
import json
import os
import sqlite3
import threading
import warnings
from pathlib import Path
from typing import Any

import diskcache

_ERRORS = (OSError, sqlite3.Error, diskcache.Timeout)


def cache_key(*parts: Any) -> str:
    """sha256 of the parts as canonical JSON (sorted keys): stable across processes."""
    blob = json.dumps(parts, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf8", "surrogatepass")).hexdigest()


class DiskCache:
    """Bytes under `directory`, at most `max_mb` MiB (the oldest records go first).

    `what` names the cache in warnings. Opened on first use; pickles as its settings.
    """

    def __init__(self, directory: str | os.PathLike[str], max_mb: float, what: str) -> None:
        if max_mb <= 0:
            raise ValueError(f"The {what} cache needs a size bound above 0 MiB, not {max_mb}.")
        self.directory = Path(directory)
        self.max_mb, self.what = max_mb, what
        self._store: diskcache.Cache | None = None
        self._lock = threading.Lock()

    def _open(self) -> diskcache.Cache:
        with self._lock:
            if self._store is None:
                size_limit = int(self.max_mb * 2**20)
                self._store = diskcache.Cache(str(self.directory), size_limit=size_limit)
            return self._store

    def get(self, key: str) -> bytes | None:
        """The stored bytes, or None if absent or unreadable."""
        try:
            value = self._open().get(key)
        except _ERRORS:
            return None
        return value if isinstance(value, bytes) else None

    def put(self, key: str, value: bytes) -> None:
        """Store `value`; a failed write (full disk, no permission) warns and is skipped."""
        try:
            self._open().set(key, value)
        except _ERRORS as e:
            warnings.warn(
                f"Could not write to the {self.what} cache in {self.directory} ({e}); the "
                "result is used but not cached. Free disk space or point the cache elsewhere.",
                stacklevel=3,
            )

    def __len__(self) -> int:
        return len(self._open())

    def close(self) -> None:
        with self._lock:
            if self._store is not None:
                self._store.close()
                self._store = None

    def __getstate__(self) -> dict[str, Any]:
        return {"directory": self.directory, "max_mb": self.max_mb, "what": self.what}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["directory"], state["max_mb"], state["what"])  # type: ignore[misc]

    def __repr__(self) -> str:
        return f"DiskCache({str(self.directory)!r}, max_mb={self.max_mb})"
