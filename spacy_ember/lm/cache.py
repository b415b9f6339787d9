"""A bounded cache of LM features, in memory and optionally on disk.

The LM is frozen, so a text's features never change: training epochs 2..N and
repeated evaluations read them from here instead of running the LM again.
"""

import io
import zipfile
from collections import OrderedDict
from pathlib import Path

import numpy as np
from spacy.util import registry

from ..cache import DiskCache, cache_key
from .features import RawFeatures

DEFAULT_DISK_MB = 16384  # 16 GiB: the features of a large training corpus


class FeatureCache:
    """LRU memory cache of `RawFeatures` bounded by `max_mb`, backed by `directory`
    (at most `max_disk_mb`, shared safely by processes)."""

    def __init__(
        self,
        max_mb: float = 2048,
        directory: str | None = None,
        max_disk_mb: float = DEFAULT_DISK_MB,
    ) -> None:
        self.max_bytes = int(max_mb * 2**20)
        self.directory = Path(directory) if directory else None
        self.disk = DiskCache(directory, max_disk_mb, "LM feature") if directory else None
        self._items: OrderedDict[str, RawFeatures] = OrderedDict()
        self._bytes = 0
        self.hits = 0
        self.misses = 0

    @staticmethod
    def key(signature: str, text: str) -> str:
        """sha256 of the feature signature (LM, layers, ...) and the text."""
        return cache_key(signature, text)

    def get(self, key: str) -> RawFeatures | None:
        item = self._items.get(key)
        if item is not None:
            self._items.move_to_end(key)
        elif self.disk is not None:
            item = _from_bytes(self.disk.get(key))
            if item is not None:
                self._remember(key, item)
        if item is None:
            self.misses += 1
        else:
            self.hits += 1
        return item

    def put(self, key: str, item: RawFeatures) -> None:
        self._remember(key, item)
        if self.disk is not None:
            self.disk.put(key, _to_bytes(item))

    def _remember(self, key: str, item: RawFeatures) -> None:
        if item.nbytes > self.max_bytes or key in self._items:
            return
        self._items[key] = item
        self._bytes += item.nbytes
        while self._bytes > self.max_bytes:
            _, old = self._items.popitem(last=False)
            self._bytes -= old.nbytes

    def __len__(self) -> int:
        return len(self._items)


def _to_bytes(item: RawFeatures) -> bytes:
    """The features as an .npz archive (dtypes kept, no pickles)."""
    buffer = io.BytesIO()
    np.savez(buffer, offsets=item.offsets, hidden=item.hidden, attn=item.attn)
    return buffer.getvalue()


def _from_bytes(data: bytes | None) -> RawFeatures | None:
    """Features from `_to_bytes`, or None for a missing or unreadable record."""
    if data is None:
        return None
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as arrays:
            return RawFeatures(arrays["offsets"], arrays["hidden"], arrays["attn"])
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        return None


@registry.misc("spacy-ember.FeatureCache.v1")
def feature_cache(
    max_mb: float = 2048, directory: str | None = None, max_disk_mb: float = DEFAULT_DISK_MB
) -> FeatureCache:
    """Memory cache of up to max_mb MiB; with a directory, features also persist across
    runs, up to max_disk_mb MiB there."""
    return FeatureCache(max_mb=max_mb, directory=directory, max_disk_mb=max_disk_mb)
