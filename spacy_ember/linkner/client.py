"""`LLMClient`: span-typing questions to any OpenAI-compatible chat endpoint.

Parallel up to `max_concurrency`, retried with exponential backoff, cached on disk; a
failed or unusable answer comes back with label None and an error, never as an exception.
"""

import os
import random
import threading
import time
import warnings
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Literal, get_args

import openai

from .answers import Answer, ClientStats, LLMWarning, Request
from .cache import CachedResponse, ResponseCache
from .call import CallError, chat_completion
from .labels import LabelSet
from .logprobs import label_scores
from .prompt import answer_schema, parse_answer

ConstrainMode = Literal["json_schema_llamacpp", "json_schema_openai", "json_object", "none"]
CONSTRAIN_MODES: tuple[str, ...] = get_args(ConstrainMode)
NO_KEY = "sk-no-key"  # sent to servers that need no key (llama.cpp, vLLM, ...)


class LLMClient:
    """Ask an OpenAI-compatible chat model for span labels (see `classify`).

    base_url: None reads OPENAI_BASE_URL, else OpenAI's API. api_key: None reads
        OPENAI_API_KEY; with neither but a base_url, a placeholder key is sent. The key
        lives only in the openai client: it is never logged, cached, repr'd or pickled
        (an unpickled client reads OPENAI_API_KEY again).
    constrain: how the answer is forced into {"label": <option>}: "json_schema_llamacpp"
        (llama.cpp server), "json_schema_openai" (OpenAI structured outputs),
        "json_object" (any JSON), or "none".
    logprobs: also request the top_logprobs of each answer token, for `label_scores`.
    """

    def __init__(
        self,
        model: str,
        base_url: str | None = None,
        api_key: str | None = None,
        *,
        timeout: float = 30.0,
        max_retries: int = 3,
        backoff: float = 0.5,
        max_backoff: float = 8.0,
        max_concurrency: int = 4,
        max_tokens: int = 32,
        temperature: float = 0.0,
        constrain: ConstrainMode = "json_schema_llamacpp",
        logprobs: bool = False,
        top_logprobs: int = 10,
        cache_dir: str | os.PathLike[str] | None = None,
        extra_options: dict[str, Any] | None = None,
    ) -> None:
        if not model:
            raise ValueError("LLMClient needs a model name.")
        if constrain not in CONSTRAIN_MODES:
            raise ValueError(f"Unknown constrain mode '{constrain}': use one of {CONSTRAIN_MODES}.")
        if timeout <= 0 or max_retries < 0 or max_concurrency < 1 or max_tokens < 1:
            raise ValueError(
                "Need timeout > 0, max_retries >= 0, max_concurrency >= 1 and max_tokens >= 1."
            )
        if logprobs and not 1 <= top_logprobs <= 20:
            raise ValueError(f"top_logprobs must be 1..20, not {top_logprobs}.")
        self.model = model
        self.base_url = base_url or os.environ.get("OPENAI_BASE_URL") or None
        self.timeout = float(timeout)
        self.max_retries, self.backoff, self.max_backoff = max_retries, backoff, max_backoff
        self.max_concurrency = max_concurrency
        self.max_tokens, self.temperature = max_tokens, temperature
        self.constrain, self.logprobs, self.top_logprobs = constrain, logprobs, top_logprobs
        self.cache = ResponseCache(cache_dir)
        self.extra_options = dict(extra_options or {})
        self.stats = ClientStats()
        self._lock = threading.Lock()
        self._openai = self._make_openai(api_key)

    def _make_openai(self, api_key: str | None) -> openai.OpenAI:
        key = api_key or os.environ.get("OPENAI_API_KEY")
        if not key:
            if self.base_url is None:
                raise ValueError(
                    "No API key: set OPENAI_API_KEY or pass api_key; for a local "
                    "OpenAI-compatible server, pass its base_url."
                )
            key = NO_KEY
        return openai.OpenAI(
            api_key=key, base_url=self.base_url, timeout=self.timeout, max_retries=0
        )

    def options(self, labels: LabelSet, allow_none: bool = True) -> dict[str, Any]:
        """The request body besides model and messages (also part of the cache key)."""
        options: dict[str, Any] = {"temperature": self.temperature, "max_tokens": self.max_tokens}
        schema = answer_schema(labels, allow_none)
        if self.constrain == "json_schema_llamacpp":
            options["response_format"] = {"type": "json_object", "schema": schema}
        elif self.constrain == "json_schema_openai":
            options["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": "entity_label", "strict": True, "schema": schema},
            }
        elif self.constrain == "json_object":
            options["response_format"] = {"type": "json_object"}
        if self.logprobs:
            options.update(logprobs=True, top_logprobs=self.top_logprobs)
        options.update(self.extra_options)
        return options

    def classify(self, requests: list[Request]) -> list[Answer]:
        """One Answer per Request, in order; warns once (LLMWarning) if any failed."""
        requests = list(requests)
        workers = min(self.max_concurrency, len(requests))
        if workers <= 1:
            answers = [self._classify_one(request) for request in requests]
        else:
            with ThreadPoolExecutor(workers, thread_name_prefix="linkner-llm") as pool:
                answers = list(pool.map(self._classify_one, requests))
        failed = Counter(answer.error for answer in answers if answer.error)
        if failed:
            kinds = ", ".join(f"{kind}: {n}" for kind, n in failed.most_common())
            warnings.warn(
                f"LLM span typing failed for {sum(failed.values())} of {len(answers)} "
                f"spans ({kinds}); their label is None.",
                LLMWarning,
                stacklevel=2,
            )
        return answers

    def _classify_one(self, request: Request) -> Answer:
        started = time.perf_counter()
        try:
            answer = self._answer(request, started)
        except Exception as e:  # never raise from a batch: report it on the answer
            answer = Answer(None, error=f"error {type(e).__name__}")
        with self._lock:
            self.stats.add(answer)
        return answer

    def _answer(self, request: Request, started: float) -> Answer:
        messages, labels, allow_none = request
        options = self.options(labels, allow_none)
        key = ResponseCache.key(self.model, messages, options)
        response = self.cache.get(key)
        cached, error = response is not None, None
        if response is None:
            response, error = self._fetch(messages, options)
            if response is not None:
                self.cache.put(key, response)
        latency = 0.0 if cached else time.perf_counter() - started
        if response is None:
            return Answer(None, error=error, latency=latency)
        label = parse_answer(response.text, labels, allow_none)
        scores = label_scores(response.logprobs, labels, allow_none) if response.logprobs else None
        return Answer(
            label,
            scores,
            response.text,
            error=None if label else "malformed answer",
            cached=cached,
            latency=latency,
            prompt_tokens=response.prompt_tokens,
            completion_tokens=response.completion_tokens,
        )

    def _fetch(
        self, messages: list[dict[str, str]], options: dict[str, Any]
    ) -> tuple[CachedResponse | None, str | None]:
        """The response, or None and the error kind once retries are used up."""
        for attempt in range(self.max_retries + 1):
            with self._lock:
                self.stats.calls += 1
            try:
                return chat_completion(self._openai, self.model, messages, options), None
            except CallError as e:
                if not e.retryable or attempt == self.max_retries:
                    return None, e.kind
                delay = max(self.backoff * 2**attempt, e.retry_after or 0.0)
                time.sleep(min(delay, self.max_backoff) * (1 + 0.25 * random.random()))
                with self._lock:
                    self.stats.retries += 1
        raise AssertionError("unreachable")

    def reset_stats(self) -> None:
        with self._lock:
            self.stats = ClientStats()

    def close(self) -> None:
        self._openai.close()

    def __enter__(self) -> "LLMClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"LLMClient(model={self.model!r}, base_url={self.base_url!r}, "
            f"constrain={self.constrain!r}, logprobs={self.logprobs}, cache={self.cache!r})"
        )

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k not in ("_openai", "_lock")}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()
        self._openai = self._make_openai(None)
