"""What `LLMClient` takes and gives: requests, answers, running statistics."""

from dataclasses import dataclass, field
from typing import NamedTuple

from .labels import LabelSet


class LLMWarning(UserWarning):
    """Some LLM calls of a batch failed; their answers have label None."""


class Request(NamedTuple):
    """One span to type: its chat messages and the options it may be given."""

    messages: list[dict[str, str]]
    labels: LabelSet
    allow_none: bool = True


@dataclass
class Answer:
    """The LLM's answer to one Request; label None when the call failed or was unusable."""

    label: str | None  # a label, "NONE", or None
    label_scores: dict[str, float] | None = None  # P(option) from logprobs, if available
    text: str | None = None  # the raw answer
    error: str | None = None  # "timeout", "connection", "http 429", "malformed answer", ...
    cached: bool = False
    latency: float = 0.0  # seconds, retries and backoff included; 0 from the cache
    prompt_tokens: int = 0
    completion_tokens: int = 0


@dataclass
class ClientStats:
    """Running totals; tokens and latency count only calls actually made."""

    requests: int = 0  # answers returned
    calls: int = 0  # chat requests sent over HTTP, the openai client's retries included
    cache_hits: int = 0
    retries: int = 0
    failures: dict[str, int] = field(default_factory=dict)  # answers with an error, by kind
    latency: float = 0.0
    prompt_tokens: int = 0
    completion_tokens: int = 0

    def add(self, answer: Answer) -> None:
        self.requests += 1
        self.cache_hits += answer.cached
        if answer.error:
            self.failures[answer.error] = self.failures.get(answer.error, 0) + 1
        if not answer.cached:
            self.latency += answer.latency
            self.prompt_tokens += answer.prompt_tokens
            self.completion_tokens += answer.completion_tokens
