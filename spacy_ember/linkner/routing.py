"""What `linkner_router` does to one doc: the LLM request for an entity, and the
entities after its answers (a failed answer keeps the local label)."""

from collections.abc import Sequence

import numpy as np
from spacy.tokens import Doc, Span

from .answers import Answer, Request
from .fusion import decide
from .labels import NONE_LABEL, LabelSet
from .prompt import FewShot, build_messages

# A doc without sentence boundaries is shown whole up to this many tokens; a longer one
# (an article, nlp(text) without a sentencizer) as a window of WINDOW_TOKENS either side
# of the entity, so a prompt never grows with the document.
MAX_UNSPLIT_TOKENS = 200
WINDOW_TOKENS = 40

SPAN_ATTRS = ("uncertainty", "routed", "local_label", "llm_label", "llm_error")
for _attr in SPAN_ATTRS:
    if not Span.has_extension(_attr):
        Span.set_extension(_attr, default=None)


def span_request(
    ent: Span, labels: LabelSet, examples: Sequence[FewShot], context_chars: int = 0
) -> Request:
    """The request typing `ent`, marked in the sentences it touches (without sentence
    boundaries: the doc, or a window around the entity in a long one), after up to
    `context_chars` characters of the text before them, with "not an entity" allowed."""
    doc = ent.doc
    if doc.has_annotation("SENT_START"):
        # ember_ner does not read sentences, so an entity may cross a boundary;
        # Span.sent is then only its first sentence: take every sentence it touches.
        sent = doc[ent[0].sent.start : ent[-1].sent.end]
    elif len(doc) > MAX_UNSPLIT_TOKENS:
        sent = doc[max(ent.start - WINDOW_TOKENS, 0) : ent.end + WINDOW_TOKENS]
    else:
        sent = doc[:]
    context = doc.text[: sent.start_char].strip()
    if context_chars <= 0:
        context = ""
    elif len(context) > context_chars:  # whole words from the end
        context = context[-context_chars:].split(" ", 1)[-1]
    start = ent.start_char - sent.start_char
    messages = build_messages(
        sent.text, start, start + len(ent.text), labels, list(examples), True, context
    )
    return Request(messages, labels, allow_none=True)


def routed_label(
    answer: Answer,
    local: np.ndarray,
    local_label: str,
    labels: Sequence[str],
    fuse_weight: float | None,
    remove_none: bool,
) -> str | None:
    """A routed entity's label after the LLM's answer (see fusion.py); None: drop it
    (NONE with `remove_none`). A failed call, or NONE without it, keeps the local label."""
    if answer.label is None:
        return local_label
    label = decide(local, answer.label, answer.label_scores, fuse_weight, labels)
    if label == NONE_LABEL:
        return None if remove_none else local_label
    return label


def apply_answers(
    doc: Doc,
    answers: Sequence[tuple[int, Answer]],
    local: Sequence[np.ndarray],
    labels: Sequence[str],
    fuse_weight: float | None,
    remove_none: bool,
) -> None:
    """Set doc.ents from the answers to its routed entities (index, answer): the decided
    label (see fusion.py), NONE dropping the entity with `remove_none`, else keeping it."""
    ents = list(doc.ents)
    drop = set()
    for i, answer in answers:
        ent = ents[i]
        ent._.llm_label, ent._.llm_error = answer.label, answer.error
        label = routed_label(answer, local[i], ent.label_, labels, fuse_weight, remove_none)
        if label is None:
            drop.add(i)
        elif label != ent.label_:
            ents[i] = Span(doc, ent.start, ent.end, label=label)
    kept = [e for i, e in enumerate(ents) if i not in drop]
    meta = [tuple(getattr(e._, attr) for attr in SPAN_ATTRS) for e in kept]
    doc.set_ents(kept, default="outside")
    for ent, values in zip(doc.ents, meta):
        for attr, value in zip(SPAN_ATTRS, values):
            setattr(ent._, attr, value)
