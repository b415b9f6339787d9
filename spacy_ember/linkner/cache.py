"""An on-disk cache of LLM responses, so a rerun makes no repeated calls.

Keyed by the request (model, messages, request options) and the endpoint that answers
it (its base_url and, where the server reports it, the model it serves), never by
credentials. Stored in the shared, size-bounded `DiskCache`.
"""

import json
import os
from dataclasses import asdict, dataclass
from typing import Any

from ..cache import DiskCache, cache_key
from .logprobs import TokenLogprobs

DEFAULT_CACHE_MB = 1024  # 1 GiB: some hundred thousand answers


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
    """JSON records in a `DiskCache` under `directory` (at most `max_mb` MiB); directory
    None disables it."""

    def __init__(
        self, directory: str | os.PathLike[str] | None, max_mb: float = DEFAULT_CACHE_MB
    ) -> None:
        self.disk = DiskCache(directory, max_mb, "LLM response") if directory is not None else None

    @staticmethod
    def key(
        model: str,
        messages: list[dict[str, str]],
        options: dict[str, Any],
        base_url: str | None = None,
        served_model: str | None = None,
    ) -> str:
        """sha256 of the request and its endpoint; `options` are the request's body fields
        (no credentials), `served_model` what the server says it runs (see endpoint.py)."""
        request = {"model": model, "messages": messages, "options": options}
        return cache_key(request, {"base_url": base_url, "served_model": served_model})

    def get(self, key: str) -> CachedResponse | None:
        """The stored response, or None if absent or unreadable (then it is fetched again)."""
        data = self.disk.get(key) if self.disk is not None else None
        if data is None:
            return None
        try:
            return CachedResponse.from_json(json.loads(data))
        except (ValueError, KeyError, TypeError):
            return None

    def put(self, key: str, response: CachedResponse) -> None:
        """Store the response; a failed write only warns (the answer is still returned)."""
        if self.disk is not None:
            self.disk.put(key, json.dumps(asdict(response)).encode("ascii"))

    def close(self) -> None:
        if self.disk is not None:
            self.disk.close()

    def __repr__(self) -> str:
        return f"ResponseCache({str(self.disk.directory) if self.disk else None!r})"
