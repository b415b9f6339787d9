"""A bounded cache of LM features, in memory and optionally on disk.

The LM is frozen, so a text's features never change: training epochs 2..N and
repeated evaluations read them from here instead of running the LM again.
"""

import hashlib
import os
from collections import OrderedDict
from pathlib import Path

import numpy as np
from spacy.util import registry

from .features import RawFeatures


class FeatureCache:
    """LRU memory cache of `RawFeatures` bounded by `max_mb`, backed by `directory`."""

    def __init__(self, max_mb: float = 2048, directory: str | None = None) -> None:
        self.max_bytes = int(max_mb * 2**20)
        self.directory = Path(directory) if directory else None
        self._items: OrderedDict[str, RawFeatures] = OrderedDict()
        self._bytes = 0
        self.hits = 0
        self.misses = 0

    @staticmethod
    def key(signature: str, text: str) -> str:
        return hashlib.sha1(f"{signature}\0{text}".encode()).hexdigest()

    def _path(self, key: str) -> Path:
        assert self.directory is not None
        return self.directory / key[:2] / f"{key}.npz"

    def get(self, key: str) -> RawFeatures | None:
        item = self._items.get(key)
        if item is not None:
            self._items.move_to_end(key)
        elif self.directory is not None and self._path(key).is_file():
            with np.load(self._path(key)) as data:
                item = RawFeatures(data["offsets"], data["hidden"], data["attn"])
            self._remember(key, item)
        if item is None:
            self.misses += 1
        else:
            self.hits += 1
        return item

    def put(self, key: str, item: RawFeatures) -> None:
        self._remember(key, item)
        if self.directory is not None:
            path = self._path(key)
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".{os.getpid()}.tmp.npz")
            np.savez(tmp, offsets=item.offsets, hidden=item.hidden, attn=item.attn)
            os.replace(tmp, path)

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


@registry.misc("spacy-ember.FeatureCache.v1")
def feature_cache(max_mb: float = 2048, directory: str | None = None) -> FeatureCache:
    """Memory cache of up to max_mb MiB; with a directory, features also persist across runs."""
    return FeatureCache(max_mb=max_mb, directory=directory)
