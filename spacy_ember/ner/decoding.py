"""Turn probe scores into non-overlapping typed entity spans."""

from dataclasses import dataclass

import numpy as np
from scipy import special

TYPE_RULES = ("first", "last", "mean")


@dataclass
class Entity:
    start: int  # token index
    end: int  # exclusive
    score: float  # span probe probability
    label_probs: np.ndarray  # (n_labels,) type distribution over entity labels


def softmax(x: np.ndarray) -> np.ndarray:
    """Softmax over the last axis, in x's precision (float32 stays float32)."""
    return special.softmax(x, axis=-1)


def sigmoid(x: np.ndarray) -> np.ndarray:
    """The logistic function, in x's precision, without overflow warnings."""
    return special.expit(x)


def span_type_probs(
    type_probs: np.ndarray, align: np.ndarray, start: int, end: int, rule: str
) -> np.ndarray:
    """Type distribution (O first) of a span from its pieces' typing-probe outputs.

    last: the span's last piece, which in a causal LM has seen the whole span;
    first: its first piece; mean: the average over all its pieces.
    """
    first_piece, last_piece = align[start, 0], align[end - 1, 1]
    if rule == "last":
        return type_probs[last_piece]
    if rule == "first":
        return type_probs[first_piece]
    if rule == "mean":
        return type_probs[first_piece : last_piece + 1].mean(axis=0)
    raise ValueError(f"Unknown type rule '{rule}': use one of {TYPE_RULES}.")


def label_probs(with_o: np.ndarray) -> np.ndarray:
    """A span's distribution over entity labels: its type distribution without O, renormalised."""
    probs = with_o[1:]
    total = probs.sum()
    return probs / total if total > 0 else np.full_like(probs, 1.0 / len(probs))


def select_non_overlapping(entities: list[Entity]) -> list[Entity]:
    """Highest score first, skipping any entity that overlaps one already taken;
    returned in document order. Ties keep the given order."""
    taken: list[Entity] = []
    for ent in sorted(entities, key=lambda e: -e.score):
        if all(ent.end <= t.start or t.end <= ent.start for t in taken):
            taken.append(ent)
    return sorted(taken, key=lambda e: e.start)


def decode(
    type_logits: np.ndarray,
    span_logits: np.ndarray,
    candidates: np.ndarray,
    align: np.ndarray,
    threshold: float,
    type_rule: str,
    reject_o: bool = True,
) -> list[Entity]:
    """Greedy decoding: candidate spans above threshold, highest span score first,
    skipping any that overlap a span already taken. Returned in document order.

    reject_o: drop a span whose type distribution puts most mass on O (as STOKE does),
        instead of forcing an entity label on it; a dropped span blocks nothing.
    """
    if len(candidates) == 0:
        return []
    span_probs = sigmoid(span_logits.astype("float64"))
    type_probs = softmax(type_logits.astype("float64"))
    viable = []
    for i in np.nonzero(span_probs >= threshold)[0]:
        start, end = int(candidates[i, 0]), int(candidates[i, 1])
        with_o = span_type_probs(type_probs, align, start, end, type_rule)
        if not (reject_o and with_o.argmax() == 0):
            viable.append(Entity(start, end, float(span_probs[i]), label_probs(with_o)))
    return select_non_overlapping(viable)
