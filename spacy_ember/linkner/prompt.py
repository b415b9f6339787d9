"""Chat prompts asking an LLM for the type of one marked span, and parsing its answer."""

import json
import random
import re
from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple

from .labels import NONE_LABEL, LabelSet

OPEN, CLOSE = "<<", ">>"  # span markers in the sentence


class FewShot(NamedTuple):
    """A solved example: the span sentence[start_char:end_char] has the gold `label`."""

    sentence: str
    start_char: int
    end_char: int
    label: str


def mark_span(sentence: str, start_char: int, end_char: int) -> str:
    """The sentence with the span between << and >>."""
    if not 0 <= start_char < end_char <= len(sentence):
        raise ValueError(
            f"Invalid span [{start_char}, {end_char}) for a sentence of {len(sentence)} characters."
        )
    return (
        sentence[:start_char] + OPEN + sentence[start_char:end_char] + CLOSE + sentence[end_char:]
    )


def system_prompt(labels: LabelSet, allow_none: bool = True) -> str:
    """The task, each label with its definition, and the answer format."""
    lines = [
        "You are an expert annotator of named entities. In the sentence, one span is marked "
        f"with {OPEN} and {CLOSE}. Classify the marked span as exactly one of these types:",
    ]
    for label, definition in labels.items:
        lines.append(f"- {label}: {definition}" if definition not in ("", label) else f"- {label}")
    if allow_none:
        lines.append(
            f"- {NONE_LABEL}: the span is not a named entity, or not one of the types above."
        )
    options = ", ".join(labels.options(allow_none))
    lines.append(f'Answer with a JSON object and nothing else: {{"label": "<one of {options}>"}}')
    return "\n".join(lines)


def user_prompt(sentence: str, start_char: int, end_char: int, context: str = "") -> str:
    """The question about one span; `context` (the text before the sentence) if given."""
    marked = mark_span(sentence, start_char, end_char)
    span = json.dumps(sentence[start_char:end_char], ensure_ascii=False)
    before = f"Context: {context}\n" if context else ""
    return f"{before}Sentence: {marked}\nSpan: {span}"


def answer_json(label: str) -> str:
    return json.dumps({"label": label}, ensure_ascii=False)


def build_messages(
    sentence: str,
    start_char: int,
    end_char: int,
    labels: LabelSet,
    examples: Sequence[FewShot] = (),
    allow_none: bool = True,
    context: str = "",
) -> list[dict[str, str]]:
    """Chat messages asking for the type of sentence[start_char:end_char] (after
    `context`, the preceding text); few-shot examples come first as solved user/assistant
    turns. The system message depends only on the labels: servers reuse its prefix."""
    messages = [{"role": "system", "content": system_prompt(labels, allow_none)}]
    options = labels.options(allow_none)
    for example in examples:
        sentence_, start, end, label = example
        if label not in options:
            raise ValueError(f"Few-shot example label '{label}' is not one of {options}.")
        messages.append({"role": "user", "content": user_prompt(sentence_, start, end)})
        messages.append({"role": "assistant", "content": answer_json(label)})
    messages.append(
        {"role": "user", "content": user_prompt(sentence, start_char, end_char, context)}
    )
    return messages


def answer_schema(labels: LabelSet, allow_none: bool = True) -> dict[str, Any]:
    """JSON schema of the answer: {"label": one of the labels (or NONE)}."""
    return {
        "type": "object",
        "properties": {"label": {"type": "string", "enum": list(labels.options(allow_none))}},
        "required": ["label"],
        "additionalProperties": False,
    }


_JSON_OBJECT = re.compile(r"\{[^{}]*\}")
_LABEL_FIELD = re.compile(r"""["']?label["']?\s*[:=]\s*["']([^"'\n]*)""", re.IGNORECASE)
_EDGES = " \t\r\n\"'`.,;:!*"


def parse_answer(text: str | None, labels: LabelSet, allow_none: bool = True) -> str | None:
    """The label an answer names (NONE for 'not an entity'), or None if it is unusable.

    Accepted: a JSON object {"label": ...} (also inside ```json fences or prose, or cut
    off), the bare label, or prose mentioning exactly one option. Matching ignores case.
    """
    if not text or not text.strip():
        return None
    values = []
    for match in _JSON_OBJECT.finditer(text):
        try:
            obj = json.loads(match.group())
        except json.JSONDecodeError:
            continue
        if isinstance(obj, dict):
            values += [v for k, v in obj.items() if k.lower() == "label"]
    if not values:
        values = _LABEL_FIELD.findall(text)
    if values:  # the answer has a label field: it decides
        found = {labels.canonical(v, allow_none) if isinstance(v, str) else None for v in values}
        return found.pop() if len(found) == 1 else None
    bare = labels.canonical(text.strip(_EDGES), allow_none)
    if bare is not None:
        return bare
    mentioned = [o for o in labels.options(allow_none) if _mentions(text, o)]
    return mentioned[0] if len(mentioned) == 1 else None


def _mentions(text: str, option: str) -> bool:
    """Whether prose names the option as a whole word; any case, except that "none" (a
    common word) only counts as the NONE option in capitals."""
    flags = 0 if option == NONE_LABEL else re.IGNORECASE
    return re.search(rf"(?<![\w-]){re.escape(option)}(?![\w-])", text, flags) is not None


def sample_examples(
    examples: Iterable[tuple[str, int, int, str]], k: int, seed: int = 0
) -> list[FewShot]:
    """k few-shot examples drawn deterministically (same input order and seed, same draw).

    Balanced over labels: labels take turns, so k >= number of labels shows every label.
    """
    pool = [FewShot(*example) for example in examples]
    if k <= 0 or not pool:
        return []
    rng = random.Random(seed)
    rng.shuffle(pool)
    by_label: dict[str, list[FewShot]] = {}
    for example in pool:
        by_label.setdefault(example.label, []).append(example)
    queues = [by_label[label] for label in sorted(by_label)]
    chosen: list[FewShot] = []
    while len(chosen) < k and any(queues):
        for queue in queues:
            if queue and len(chosen) < k:
                chosen.append(queue.pop())
    rng.shuffle(chosen)
    return chosen
