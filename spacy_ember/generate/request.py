"""What a generation starts from and stops at: prompt token ids, the checks made before
the LM runs, and the tokens and flag that stop it."""

import threading
from collections.abc import Mapping, Sequence

import torch
from spacy.language import Language
from transformers import StoppingCriteria

from ..lm.extractor import FeatureExtractor, context_size
from .settings import GenerationSettings


def extractor_of(nlp: Language, component: str) -> FeatureExtractor:
    """The feature extractor (LM, tokenizer, layers) that `component` listens to."""
    return nlp.get_pipe(component).upstream(nlp).extractor  # type: ignore[attr-defined]


Prompt = str | Sequence[Mapping[str, str]]  # a text, or chat messages (role, content)


def prompt_ids(nlp: Language, prompt: Prompt, chat: bool | None, component: str) -> list[int]:
    """Token ids the LM starts from: the chat template if there is one (or chat=True),
    else the start token and the raw prompt, as in batch mode. A list of chat messages
    goes through the template as it is; without one, their contents are the raw prompt."""
    extractor = extractor_of(nlp, component)
    tokenizer = extractor.lm.tokenizer
    has_template = bool(getattr(tokenizer, "chat_template", None))
    if chat and not has_template:
        raise ValueError(
            f"The tokenizer of '{extractor.lm.name}' has no chat template; use chat=False "
            "(the raw prompt is continued)."
        )
    messages = (
        [{"role": "user", "content": prompt}]
        if isinstance(prompt, str)
        else [dict(m) for m in prompt]
    )
    if chat or (chat is None and has_template):
        ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
        ids = ids["input_ids"] if isinstance(ids, Mapping) else ids
        return [int(i) for i in ids]  # type: ignore[arg-type, union-attr]
    text = "\n\n".join(m["content"] for m in messages)
    raw = tokenizer(text, add_special_tokens=False)["input_ids"]
    return [extractor.start_token_id, *raw]


def check_request(
    nlp: Language, component: str, n_prompt: int, settings: GenerationSettings
) -> None:
    if settings.max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be at least 1, got {settings.max_new_tokens}.")
    limit = context_size(extractor_of(nlp, component).lm)
    if limit is not None and n_prompt + settings.max_new_tokens + 2 > limit:
        raise ValueError(
            f"The prompt has {n_prompt} tokens; with max_new_tokens={settings.max_new_tokens} "
            f"(and the end-of-text lookahead) that exceeds the LM's context of {limit} tokens. "
            "Shorten the prompt or lower max_new_tokens."
        )


def stop_ids(model, tokenizer) -> set[int]:
    """Tokens that end generation: the generation config's EOS ids and the tokenizer's."""
    eos = getattr(model.generation_config, "eos_token_id", None)
    ids = set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
    if tokenizer.eos_token_id is not None:
        ids.add(tokenizer.eos_token_id)
    return ids


class StopFlag(StoppingCriteria):
    """Stops `generate` once `flag` is set (the consumer closed the stream)."""

    def __init__(self, flag: threading.Event) -> None:
        self.flag = flag

    def __call__(self, input_ids, scores, **kwargs) -> torch.Tensor:
        return torch.full((input_ids.shape[0],), self.flag.is_set(), dtype=torch.bool)
