"""One input row's output record, and the annotation of a batch of rows that survives
a text the pipeline cannot process (that row becomes a BadRow; the rest go on)."""

from collections.abc import Sequence
from typing import Any

from spacy.language import Language
from spacy.tokens import Doc

from ..pipeline.records import doc_records
from .inputs import BadRow, Row


def output_record(row: Row, doc: Doc) -> dict[str, Any]:
    """{"id", "meta" (when the input had other fields), "entities"}."""
    record: dict[str, Any] = {"id": row.id}
    if row.meta:
        record["meta"] = row.meta
    record["entities"] = doc_records(doc)
    return record


def annotate_rows(
    nlp: Language, rows: Sequence[Row], batch_size: int
) -> tuple[list[tuple[Row, Doc]], list[BadRow]]:
    """The rows' Docs (nlp.pipe); if a batch fails, its rows one at a time, and a row
    that still fails is reported with the error."""
    try:
        docs = list(nlp.pipe((r.text for r in rows), batch_size=batch_size))
        return list(zip(rows, docs)), []
    except Exception:
        if len(rows) == 1:
            raise
    done: list[tuple[Row, Doc]] = []
    bad: list[BadRow] = []
    for row in rows:
        try:
            done.append((row, nlp(row.text)))
        except Exception as err:  # reported per row, never stops the job
            bad.append(BadRow(row.id, f"pipeline error: {type(err).__name__}: {err}"))
    return done, bad


def error_record(bad: BadRow) -> dict[str, Any]:
    return {"id": bad.id, "error": bad.error}
