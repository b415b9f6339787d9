"""The rows of a corpus file: .txt (one text per line), .jsonl (a text field; the other
fields are carried through as metadata), .parquet. A row that cannot be annotated
(invalid JSON, missing field, not a string, empty) becomes a BadRow, never an exception,
so one bad row never stops a job. Both engines parse rows with these functions."""

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

INPUT_FORMATS = {".txt": "txt", ".jsonl": "jsonl", ".parquet": "parquet"}


@dataclass
class Row:
    id: Any  # the id field's value, else the row's index in the file (0-based)
    text: str
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class BadRow:
    id: Any
    error: str


def input_format(path: str | Path) -> str:
    """txt | jsonl | parquet, from the file's suffix."""
    suffix = Path(path).suffix.lower()
    if suffix not in INPUT_FORMATS:
        raise ValueError(
            f"Cannot read '{path}': use a .txt (a text per line), .jsonl or .parquet file."
        )
    return INPUT_FORMATS[suffix]


def parse_record(
    record: Mapping[str, Any], index: int, text_field: str, id_field: str | None
) -> Row | BadRow:
    """A JSON object or Parquet row: the text, the id (id_field, else the index), and
    every other field as metadata."""
    row_id = record.get(id_field, index) if id_field else index
    if row_id is None:
        row_id = index
    if text_field not in record:
        return BadRow(row_id, f"no '{text_field}' field (--text-field)")
    text = record[text_field]
    if not isinstance(text, str):
        return BadRow(row_id, f"'{text_field}' is {type(text).__name__}, not a string")
    if not text.strip():
        return BadRow(row_id, "empty text")
    meta = {k: v for k, v in record.items() if k not in (text_field, id_field)}
    return Row(row_id, text, meta)


def parse_line(
    line: str, index: int, fmt: str, text_field: str, id_field: str | None
) -> Row | BadRow:
    """One line of a .txt or .jsonl file (without its newline)."""
    if fmt == "txt":
        return Row(index, line) if line.strip() else BadRow(index, "empty text")
    try:
        record = json.loads(line)
    except json.JSONDecodeError as err:
        return BadRow(index, f"invalid JSON: {err}")
    if not isinstance(record, dict):
        return BadRow(index, f"a JSON {type(record).__name__}, not an object")
    return parse_record(record, index, text_field, id_field)


def read_rows(path: str | Path, text_field: str = "text", id_field: str | None = "id"):
    """Every row of the file, in order, as Row or BadRow."""
    fmt = input_format(path)
    if fmt == "parquet":
        yield from _parquet_rows(Path(path), text_field, id_field)
        return
    with open(path, encoding="utf8", errors="replace", newline="") as f:
        for index, line in enumerate(f):
            yield parse_line(line.rstrip("\r\n"), index, fmt, text_field, id_field)


def _parquet_rows(path: Path, text_field: str, id_field: str | None) -> Iterator[Row | BadRow]:
    import pyarrow.parquet as pq

    index = 0
    for batch in pq.ParquetFile(path).iter_batches(batch_size=4096):
        for record in batch.to_pylist():
            yield parse_record(record, index, text_field, id_field)
            index += 1
