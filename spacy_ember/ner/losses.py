"""EMBER's training objective: what each probe learns, and the weighted losses.

The typing probe learns each piece's gold type (O for pieces outside entities); the span
probe learns whether each candidate span is a gold entity. Both losses are averaged over
their rows with class weights, since O pieces and non-entity candidates dominate.
"""

import logging
from collections.abc import Sequence
from typing import cast

import numpy as np
from spacy.training import Example
from thinc.api import Ops
from thinc.types import Floats1d, Floats2d

from .decoding import sigmoid, softmax
from .evidential import evidential_loss
from .probes import ProbeGradient, ProbeOutput

logger = logging.getLogger("spacy_ember")


def probe_targets(
    example: Example, output: ProbeOutput, labels: Sequence[str]
) -> tuple[np.ndarray, np.ndarray, int]:
    """Gold type per piece, gold flag per candidate, and gold spans not among candidates."""
    index = {label: i + 1 for i, label in enumerate(labels)}
    piece_types = np.zeros(len(output.type_logits), dtype=np.int64)
    gold = set()
    for span in example.get_aligned_spans_y2x(example.reference.ents):
        if span.label_ not in index:
            continue
        first, last = output.align[span.start, 0], output.align[span.end - 1, 1]
        piece_types[first : last + 1] = index[span.label_]
        gold.add((span.start, span.end))
    cands = output.candidates
    is_gold = np.array([(int(s), int(e)) in gold for s, e in cands[:, :2]], dtype=np.float32)
    return piece_types, is_gold, len(gold) - int(is_gold.sum())


def probe_loss(
    examples: Sequence[Example],
    outputs: Sequence[ProbeOutput],
    labels: Sequence[str],
    ops: Ops,
    *,
    o_weight: float,
    span_pos_weight: float,
    typing_loss: str,
    anneal: float,
) -> tuple[float, list[ProbeGradient]]:
    """Weighted cross-entropy (or the evidential loss, its KL term scaled by `anneal`)
    for the typing probe plus weighted binary cross-entropy for the span probe, each
    averaged over its rows of the whole batch."""
    per_doc = []
    t_total = s_total = 0.0
    unreachable = 0
    for eg, out in zip(examples, outputs):
        piece_types, is_gold, missed = probe_targets(eg, out, labels)
        unreachable += missed
        t_w = np.where(piece_types == 0, o_weight, 1.0)
        s_w = np.where(is_gold > 0, span_pos_weight, 1.0)
        per_doc.append((piece_types, t_w, is_gold, s_w))
        t_total += t_w.sum()
        s_total += s_w.sum()
    if unreachable:
        logger.debug("ember_ner: %d gold entities are not candidate spans", unreachable)
    loss = 0.0
    gradients: list[ProbeGradient] = []
    for (piece_types, t_w, is_gold, s_w), out in zip(per_doc, outputs):
        logits = ops.to_numpy(out.type_logits).astype("float64")
        if typing_loss == "evidential":
            row_loss, d_type = evidential_loss(logits, piece_types, anneal)
        else:
            probs = softmax(logits)
            rows = np.arange(len(piece_types))
            row_loss = -np.log(probs[rows, piece_types] + 1e-12)
            d_type = probs.copy()
            d_type[rows, piece_types] -= 1.0
        loss += float((t_w * row_loss).sum() / max(t_total, 1))
        d_type *= (t_w / max(t_total, 1))[:, None]
        p_span = sigmoid(ops.to_numpy(out.span_logits).astype("float64"))
        bce = -(is_gold * np.log(p_span + 1e-12) + (1 - is_gold) * np.log(1 - p_span + 1e-12))
        loss += float((s_w * bce).sum() / max(s_total, 1))
        d_span = (p_span - is_gold) * s_w / max(s_total, 1)
        gradients.append(
            (
                ops.asarray2f(cast(Floats2d, d_type.astype("float32"))),
                ops.asarray1f(cast(Floats1d, d_span.astype("float32"))),
            )
        )
    return loss, gradients
