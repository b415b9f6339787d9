"""LinkNER's LLM half: label definitions, span-typing prompts, and a robust chat client."""

from .answers import Answer, ClientStats, LLMWarning, Request
from .cache import CachedResponse, ResponseCache
from .client import CONSTRAIN_MODES, ConstrainMode, LLMClient
from .labels import NONE_LABEL, LabelSet, labels_for
from .logprobs import label_scores
from .prompt import FewShot, answer_schema, build_messages, parse_answer, sample_examples

__all__ = [
    "CONSTRAIN_MODES",
    "NONE_LABEL",
    "Answer",
    "CachedResponse",
    "ClientStats",
    "ConstrainMode",
    "FewShot",
    "LLMClient",
    "LLMWarning",
    "LabelSet",
    "Request",
    "ResponseCache",
    "answer_schema",
    "build_messages",
    "label_scores",
    "labels_for",
    "parse_answer",
    "sample_examples",
]
