"""Which model an OpenAI-compatible endpoint serves: part of the response cache key.

A llama.cpp server answers to any model name ("local"), so the name does not tell two
LLMs apart; its /v1/models lists the file it serves. Asked once per client, lazily.
"""

import json
import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import openai


class ServedModel:
    """The served model's identity, fetched on first use; None if the server won't say."""

    def __init__(self) -> None:
        self._value: str | None = None
        self._asked = False
        self._lock = threading.Lock()

    def get(self, client: "openai.OpenAI", model: str, timeout: float) -> str | None:
        with self._lock:
            if not self._asked:
                self._value = served_model(client, model, timeout)
                self._asked = True
            return self._value


def served_model(client: "openai.OpenAI", model: str, timeout: float) -> str | None:
    """The /v1/models entry named `model`, else the only one listed, as JSON of its id
    and metadata; None when there is no such entry or the listing fails (never raises)."""
    try:
        listing = client.with_options(max_retries=0, timeout=timeout).models.list()
        entries = [entry.model_dump() for entry in listing.data]
    except Exception:  # a server without /v1/models, or down: key on the base_url alone
        return None
    named = [entry for entry in entries if entry.get("id") == model]
    chosen = named or (entries if len(entries) == 1 else [])
    if len(chosen) != 1:
        return None
    identity = {"id": chosen[0].get("id"), "meta": chosen[0].get("meta")}  # not "created"
    return json.dumps(identity, sort_keys=True, default=str)
