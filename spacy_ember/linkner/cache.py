"""An on-disk cache of LLM responses, so a rerun makes no repeated calls.

Keyed by the request (model, messages, request options), never by credentials; each
record is one small JSON file written atomically, so threads and processes can share it.
"""

import hashlib
import json
import os
import tempfile
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .logprobs import TokenLogprobs


@dataclass
class CachedResponse:
    """What a successful call returned: the answer text, its token logprobs, token counts."""

    text: str
    logprobs: list[TokenLogprobs] | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "CachedResponse":
        logprobs = data.get("logprobs")
        return cls(
            text=str(data["text"]),
            logprobs=None
            if logprobs is None
            else [
                (str(t), float(lp), [(str(a), float(b)) for a, b in top]) for t, lp, top in logprobs
            ],
            prompt_tokens=int(data.get("prompt_tokens", 0)),
            completion_tokens=int(data.get("completion_tokens", 0)),
        )


class ResponseCache:
    """JSON records under `directory`/<2 hex>/<sha256>.json; directory None disables it."""

    def __init__(self, directory: str | os.PathLike[str] | None) -> None:
        self.directory = Path(directory) if directory is not None else None

    @staticmethod
    def key(model: str, messages: list[dict[str, str]], options: dict[str, Any]) -> str:
        """sha256 of the request; `options` are the request's body fields (no credentials)."""
        request = {"model": model, "messages": messages, "options": options}
        blob = json.dumps(request, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
        return hashlib.sha256(blob.encode("utf8")).hexdigest()

    def _path(self, key: str) -> Path:
        assert self.directory is not None
        return self.directory / key[:2] / f"{key}.json"

    def get(self, key: str) -> CachedResponse | None:
        """The stored response, or None if absent or unreadable (then it is fetched again)."""
        if self.directory is None:
            return None
        try:
            with open(self._path(key), encoding="utf8") as f:
                return CachedResponse.from_json(json.load(f))
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def put(self, key: str, response: CachedResponse) -> None:
        """Write the record to a temporary file, then rename it into place; a failed
        write only warns (the answer is still returned, just not cached)."""
        if self.directory is None:
            return
        path = self._path(key)
        tmp: str | None = None
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{key[:8]}.", suffix=".tmp", dir=path.parent)
            with os.fdopen(fd, "w", encoding="utf8") as f:
                json.dump(asdict(response), f, ensure_ascii=False)
            os.replace(tmp, path)
        except OSError as e:
            if tmp is not None:
                Path(tmp).unlink(missing_ok=True)
            warnings.warn(f"Could not write the LLM response cache file {path}: {e}", stacklevel=2)

    def __repr__(self) -> str:
        return f"ResponseCache({str(self.directory) if self.directory else None!r})"
