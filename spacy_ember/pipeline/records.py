"""An annotated Doc's entities as plain records (JSON objects, Parquet rows): what
`serve` and `annotate` return. Router fields appear when linkner_router set them."""

from typing import Any

from spacy.tokens import Doc, Span

from ..linkner.routing import SPAN_ATTRS


def entity_record(
    start: int, end: int, text: str, label: str, score: float | None, **extra: Any
) -> dict[str, Any]:
    """One entity: char offsets, text, label, the span probe's score (None: not ember_ner's)."""
    item: dict[str, Any] = {"start_char": start, "end_char": end, "text": text, "label": label}
    item["score"] = None if score is None else round(float(score), 4)
    item.update(extra)
    return item


def span_record(span: Span) -> dict[str, Any]:
    """An entity of a Doc, with the router's fields (uncertainty, routed, ...) if set."""
    extra = {a: getattr(span._, a) for a in SPAN_ATTRS if getattr(span._, a) is not None}
    return entity_record(
        span.start_char, span.end_char, span.text, span.label_, span._.ember_score, **extra
    )


def doc_records(doc: Doc) -> list[dict[str, Any]]:
    return [span_record(ent) for ent in doc.ents]
