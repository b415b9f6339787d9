"""Decoded entities on the Doc: `doc.ents`, a span group with their scores, and getters.

`Span._.ember_score` and `Span._.ember_label_probs` read the group `ember_ner` wrote
(named by `doc._.ember_spans_key`), found by binary search on the entities' starts:
no scan over every span group, so reading all entities of a doc stays linear.
"""

from collections.abc import Sequence
from typing import Any

import numpy as np
from spacy.tokens import Doc, Span, SpanGroup

from .decoding import Entity


def write_entities(
    doc: Doc, entities: Sequence[Entity], labels: Sequence[str], spans_key: str
) -> None:
    """Set doc.ents and doc.spans[spans_key] (with scores and label distributions)."""
    spans = [
        Span(doc, e.start, e.end, label=labels[int(np.argmax(e.label_probs))]) for e in entities
    ]
    doc.set_ents(spans, default="outside")
    group = SpanGroup(doc, name=spans_key, spans=spans)
    group.attrs["starts"] = np.array([e.start for e in entities], dtype="int64")
    group.attrs["scores"] = np.array([e.score for e in entities], dtype="float32")
    group.attrs["labels"] = list(labels)
    group.attrs["label_probs"] = np.array(
        [e.label_probs for e in entities], dtype="float32"
    ).reshape(len(entities), len(labels))
    doc.spans[spans_key] = group
    doc._.ember_spans_key = spans_key


def _group_row(span: Span) -> tuple[SpanGroup, int] | None:
    """The ember span group of span's doc and the row of the entity with span's offsets."""
    key = span.doc._.ember_spans_key
    group = span.doc.spans.get(key) if key is not None else None
    if group is None or "starts" not in group.attrs:
        return None
    starts = group.attrs["starts"]
    i = int(np.searchsorted(starts, span.start))
    if i < len(starts) and starts[i] == span.start and group[i].end == span.end:
        return group, i
    return None


def ember_score(span: Span) -> float | None:
    """The span probe's probability for this entity; None if ember_ner did not predict it."""
    found = _group_row(span)
    return None if found is None else float(found[0].attrs["scores"][found[1]])


def ember_label_probs(span: Span) -> dict[str, float] | None:
    """The typing probe's distribution over labels for this entity, or None."""
    found = _group_row(span)
    if found is None:
        return None
    group, i = found
    return dict(zip(group.attrs["labels"], (float(p) for p in group.attrs["label_probs"][i])))


_EXTENSIONS: dict[type, dict[str, dict[str, Any]]] = {
    Doc: {"ember_spans_key": {"default": None}},
    Span: {
        "ember_score": {"getter": ember_score},
        "ember_label_probs": {"getter": ember_label_probs},
    },
}
for _cls, _extensions in _EXTENSIONS.items():
    for _name, _kwargs in _extensions.items():
        if not _cls.has_extension(_name):  # type: ignore[attr-defined]
            _cls.set_extension(_name, **_kwargs)  # type: ignore[attr-defined]
