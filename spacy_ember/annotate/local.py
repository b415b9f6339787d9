"""The local engine: nlp.pipe over shards of N rows, each shard written atomically and
recorded in the manifest; a re-run skips finished shards, so a job killed at any point
resumes to exactly the output of an uninterrupted run."""

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from itertools import islice
from pathlib import Path

from spacy.language import Language

from .inputs import BadRow, Row, read_rows
from .outputs import Manifest, errors_name, shard_name, write_jsonl, write_shard
from .records import annotate_rows, error_record, output_record


def pipeline_overrides(feature_cache: bool = False, llm_cache: Path | None = None) -> dict:
    """Config overrides for loading the pipeline: no feature cache by default (a
    one-pass job never reads a text's features twice; a disk cache would fill with
    them), and linkner_router's response cache in `llm_cache`, shared by workers."""
    components: dict = {}
    if not feature_cache:
        components["causal_lm"] = {"model": {"cache": None}}
    if llm_cache is not None:
        components["linkner_router"] = {"cache_dir": str(Path(llm_cache).resolve())}
    return {"components": components} if components else {}


@dataclass(frozen=True)
class AnnotateSettings:
    """How a job reads and writes; each default written once (the CLI reads them)."""

    text_field: str = "text"
    id_field: str | None = "id"  # None or absent in a row: the row's index is its id
    shard_size: int = 1000  # rows per output shard
    batch_size: int = 32  # nlp.pipe batch size
    output_format: str = "jsonl"  # jsonl | parquet | spacy


@dataclass
class AnnotateReport:
    shards: int = 0
    skipped_shards: int = 0  # finished by an earlier run
    rows: int = 0
    errors: int = 0


def annotate_shard(
    nlp: Language, index: int, chunk: list[Row | BadRow], out_dir: Path, settings: AnnotateSettings
) -> tuple[int, int]:
    """Annotate one shard's rows and write its files (the same in both engines): the
    shard, and its errors file when some rows failed. Returns (rows written, errors)."""
    good = [r for r in chunk if isinstance(r, Row)]
    bad = [r for r in chunk if isinstance(r, BadRow)]
    done, failed = annotate_rows(nlp, good, settings.batch_size)
    bad += failed
    records = [output_record(row, doc) for row, doc in done]
    fmt = settings.output_format
    write_shard(out_dir / shard_name(index, fmt), fmt, records, [d for _, d in done])
    if bad:
        write_jsonl(out_dir / errors_name(index), [error_record(b) for b in bad])
    return len(records), len(bad)


def _shards(rows: Iterator[Row | BadRow], size: int) -> Iterator[list[Row | BadRow]]:
    while chunk := list(islice(rows, size)):
        yield chunk


def annotate_local(
    nlp: Language,
    source: Path,
    out_dir: Path,
    settings: AnnotateSettings,
    job: dict,
    progress: Callable[[int], object] | None = None,
) -> AnnotateReport:
    """Annotate `source` into out_dir (shards, errors files, manifest.json)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    manifest = Manifest(out_dir, job)
    report = AnnotateReport()
    rows = read_rows(source, settings.text_field, settings.id_field)
    for index, chunk in enumerate(_shards(rows, settings.shard_size)):
        report.shards += 1
        if manifest.done(index):
            report.skipped_shards += 1
        else:
            manifest.finish(index, *annotate_shard(nlp, index, chunk, out_dir, settings))
        shard = manifest.shards[str(index)]
        report.rows += shard["rows"]
        report.errors += shard["errors"]
        if progress is not None:
            progress(len(chunk))
    return report
