"""`LLMClient`: span-typing questions to any OpenAI-compatible chat endpoint.

Parallel up to `max_concurrency`, retried by the openai client (exponential backoff,
Retry-After honoured), cached on disk; a failed or unusable answer comes back with label
None and an error, never as an exception. `openai` is imported only when a client is made.
"""

import os
import threading
import time
import warnings
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import TYPE_CHECKING, Any, Literal, get_args

from .answers import Answer, ClientStats, LLMWarning, Request
from .cache import DEFAULT_CACHE_MB, ResponseCache
from .call import CallError, chat_completion
from .endpoint import ServedModel
from .labels import LabelSet
from .logprobs import label_scores
from .prompt import answer_schema, parse_answer

if TYPE_CHECKING:
    import openai

ConstrainMode = Literal["json_schema_llamacpp", "json_schema_openai", "json_object", "none"]
CONSTRAIN_MODES: tuple[str, ...] = get_args(ConstrainMode)
NO_KEY = "sk-no-key"  # sent to servers that need no key (llama.cpp, vLLM, ...)
OPENAI_HOST = "api.openai.com"  # the one endpoint that always needs a real key
CHAT_PATH = "/chat/completions"
NO_KEY_ERROR = (
    "No API key: set OPENAI_API_KEY or pass api_key; for a local OpenAI-compatible "
    "server, pass its base_url."
)


class LLMClient:
    """Ask an OpenAI-compatible chat model for span labels (see `classify`).

    base_url: None reads OPENAI_BASE_URL, else OpenAI's API. api_key: None reads
        OPENAI_API_KEY; with neither but another endpoint, a placeholder key is sent. The
        key lives only in the openai client: it is never logged, cached, repr'd or
        pickled (an unpickled client reads OPENAI_API_KEY again).
    max_retries: retries of a timeout, connection error, 408, 409, 429 or 5xx, done by
        the openai client (exponential backoff from 0.5 s, Retry-After honoured).
    constrain: how the answer is forced into {"label": <option>}: "json_schema_llamacpp"
        (llama.cpp server), "json_schema_openai" (OpenAI structured outputs),
        "json_object" (any JSON), or "none".
    logprobs: also request the top_logprobs of each answer token, for `label_scores`.
    cache_dir: the response cache (None: none), at most `cache_max_mb` MiB.
    """

    def __init__(
        self,
        model: str,
        base_url: str | None = None,
        api_key: str | None = None,
        *,
        timeout: float = 30.0,
        max_retries: int = 3,
        max_concurrency: int = 4,
        max_tokens: int = 32,
        temperature: float = 0.0,
        constrain: ConstrainMode = "json_schema_llamacpp",
        logprobs: bool = False,
        top_logprobs: int = 10,
        cache_dir: str | os.PathLike[str] | None = None,
        cache_max_mb: float = DEFAULT_CACHE_MB,
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
        self.timeout, self.max_retries = float(timeout), max_retries
        self.max_concurrency = max_concurrency
        self.max_tokens, self.temperature = max_tokens, temperature
        self.constrain, self.logprobs, self.top_logprobs = constrain, logprobs, top_logprobs
        self.cache = ResponseCache(cache_dir, cache_max_mb)
        self.extra_options = dict(extra_options or {})
        self.stats = ClientStats()
        self._lock = threading.Lock()
        self._served = ServedModel()
        self._openai = self._make_openai(api_key, base_url)
        self.base_url = str(self._openai.base_url).rstrip("/")

    def _make_openai(self, api_key: str | None, base_url: str | None) -> "openai.OpenAI":
        """The openai client (it reads OPENAI_API_KEY and OPENAI_BASE_URL when not given,
        and retries), counting every chat request it sends in `stats`."""
        import openai

        http_client = openai.DefaultHttpxClient(event_hooks={"request": [self._count_call]})
        settings: dict[str, Any] = {
            "base_url": base_url,
            "timeout": self.timeout,
            "max_retries": self.max_retries,
            "http_client": http_client,
        }
        try:
            return openai.OpenAI(api_key=api_key or None, **settings)
        except openai.OpenAIError:  # no key given nor in the environment
            client = openai.OpenAI(api_key=NO_KEY, **settings)
        if client.base_url.host == OPENAI_HOST:
            client.close()
            raise ValueError(NO_KEY_ERROR)
        return client

    def _count_call(self, request: Any) -> None:
        """httpx request hook: one more call (and retry, by openai's retry-count header)."""
        if request.url.path.endswith(CHAT_PATH):
            retry = request.headers.get("x-stainless-retry-count", "0") != "0"
            with self._lock:
                self.stats.calls += 1
                self.stats.retries += retry

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

    def classify(
        self, requests: list[Request], progress: Callable[[int], object] | None = None
    ) -> list[Answer]:
        """One Answer per Request, in order; warns once (LLMWarning) if any failed;
        `progress(1)` after each answer (e.g. a tqdm bar's update)."""
        requests = list(requests)
        one = partial(self._classify_one, progress=progress)
        workers = min(self.max_concurrency, len(requests))
        if workers <= 1:
            answers = [one(request) for request in requests]
        else:
            with ThreadPoolExecutor(workers, thread_name_prefix="linkner-llm") as pool:
                answers = list(pool.map(one, requests))
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

    def _classify_one(
        self, request: Request, progress: Callable[[int], object] | None = None
    ) -> Answer:
        started = time.perf_counter()
        try:
            answer = self._answer(request, started)
        except Exception as e:  # never raise from a batch: report it on the answer
            answer = Answer(None, error=f"error {type(e).__name__}")
        with self._lock:
            self.stats.add(answer)
            if progress is not None:
                progress(1)
        return answer

    def _answer(self, request: Request, started: float) -> Answer:
        messages, labels, allow_none = request
        options = self.options(labels, allow_none)
        key = self._cache_key(messages, options)
        response = self.cache.get(key) if key else None
        cached, error = response is not None, None
        if response is None:
            try:
                response = chat_completion(self._openai, self.model, messages, options)
            except CallError as e:
                error = e.kind
            if response is not None and key:
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

    def _cache_key(self, messages: list[dict[str, str]], options: dict[str, Any]) -> str | None:
        """The request's cache key (endpoint and served model included); None uncached."""
        if self.cache.disk is None:
            return None
        served = self._served.get(self._openai, self.model, self.timeout)
        return ResponseCache.key(self.model, messages, options, self.base_url, served)

    def close(self) -> None:
        self._openai.close()
        self.cache.close()

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
        skip = ("_openai", "_lock", "_served")
        return {k: v for k, v in self.__dict__.items() if k not in skip}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()
        self._served = ServedModel()
        self._openai = self._make_openai(None, self.base_url)
