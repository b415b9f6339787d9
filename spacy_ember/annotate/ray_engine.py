"""The Ray engine: the same shards as the local engine, annotated by a pool of Ray Data
actors (`map_batches`: each actor loads the pipeline once; `concurrency` actors, each
with `num_gpus`), on a running cluster (`address`) or a local one Ray starts.

The driver plans the shards (one pass over the file: the byte offset where each shard
of N lines starts, or the Parquet row groups holding its rows) and each actor reads,
annotates and writes its shard exactly as the local engine does, so both engines
write the same files. A task whose worker dies is retried by Ray and rewrites the same
shard (written atomically): the output stays complete, with no duplicate. The driver
records finished shards in the manifest as they come back, so a re-run resumes.
"""

from pathlib import Path
from typing import Any

from .inputs import BadRow, Row, input_format, parse_line, parse_record
from .local import AnnotateReport, AnnotateSettings, annotate_shard
from .outputs import Manifest

INSTALL = "pip install 'spacy-ember[ray]'"


def plan_shards(source: Path, shard_size: int) -> list[dict[str, int]]:
    """Each shard's index, first row and row count, and where its rows start: a byte
    offset (txt, jsonl) or nothing (parquet: rows are found by their row groups)."""
    fmt = input_format(source)
    plan: list[dict[str, int]] = []
    if fmt == "parquet":
        import pyarrow.parquet as pq

        total = pq.ParquetFile(source).metadata.num_rows
        for index, first in enumerate(range(0, total, shard_size)):
            plan.append({"shard": index, "first": first, "rows": min(shard_size, total - first)})
        return plan
    with open(source, "rb") as f:
        offset, row = 0, 0
        for line in f:
            if row % shard_size == 0:
                plan.append({"shard": row // shard_size, "first": row, "rows": 0, "offset": offset})
            plan[-1]["rows"] += 1
            offset += len(line)
            row += 1
    return plan


def read_shard(
    source: Path, item: dict[str, int], settings: AnnotateSettings
) -> list[Row | BadRow]:
    """The rows of one planned shard, parsed as the local engine parses them."""
    fmt = input_format(source)
    first, n = item["first"], item["rows"]
    if fmt == "parquet":
        import pyarrow.parquet as pq

        parquet = pq.ParquetFile(source)
        groups, start = [], 0
        for g in range(parquet.num_row_groups):
            size = parquet.metadata.row_group(g).num_rows
            if start < first + n and start + size > first:
                groups.append(g)
            start += size
        table = parquet.read_row_groups(groups)
        skip = first - sum(parquet.metadata.row_group(g).num_rows for g in range(groups[0]))
        records = table.slice(skip, n).to_pylist()
        return [
            parse_record(r, first + k, settings.text_field, settings.id_field)
            for k, r in enumerate(records)
        ]
    rows: list[Row | BadRow] = []
    with open(source, "rb") as f:
        f.seek(item["offset"])
        for k in range(n):
            line = f.readline().decode("utf8", errors="replace").rstrip("\r\n")
            rows.append(parse_line(line, first + k, fmt, settings.text_field, settings.id_field))
    return rows


class ShardAnnotator:
    """A Ray Data actor: loads the pipeline once, then annotates whole shards."""

    def __init__(
        self, model: str, overrides: dict, source: str, out_dir: str, settings: dict[str, Any]
    ):
        import spacy

        self.nlp = spacy.load(model, config=overrides)
        self.source, self.out_dir = Path(source), Path(out_dir)
        self.settings = AnnotateSettings(**settings)

    def __call__(self, batch: dict[str, Any]) -> dict[str, list[int]]:
        out: dict[str, list[int]] = {"shard": [], "written": [], "errors": []}
        for values in zip(*(batch[k] for k in ("shard", "first", "rows", "offset"))):
            item = dict(zip(("shard", "first", "rows", "offset"), (int(v) for v in values)))
            chunk = read_shard(self.source, item, self.settings)
            written, errors = annotate_shard(
                self.nlp, item["shard"], chunk, self.out_dir, self.settings
            )
            out["shard"].append(item["shard"])
            out["written"].append(written)
            out["errors"].append(errors)
        return out


def annotate_ray(
    model: Path,
    source: Path,
    out_dir: Path,
    settings: AnnotateSettings,
    job: dict,
    *,
    overrides: dict | None = None,
    address: str | None = None,
    workers: int = 1,
    gpus_per_worker: float = 0.0,
    cpus_per_worker: float = 1.0,
    progress=None,
) -> AnnotateReport:
    """Annotate `source` with `workers` Ray actors into out_dir (see the module doc)."""
    try:
        import ray
    except ImportError as err:
        raise RuntimeError(f"The ray engine needs Ray: {INSTALL}") from err
    out_dir.mkdir(parents=True, exist_ok=True)
    manifest = Manifest(out_dir, job)
    plan = plan_shards(source, settings.shard_size)
    todo = [{"offset": 0, **item} for item in plan if not manifest.done(item["shard"])]
    report = AnnotateReport(shards=len(plan), skipped_shards=len(plan) - len(todo))
    if todo:
        started = not ray.is_initialized()
        if started:
            ray.init(address=address, log_to_driver=False, include_dashboard=False)
        try:
            ds = ray.data.from_items(todo, override_num_blocks=len(todo))
            results = ds.map_batches(
                ShardAnnotator,
                fn_constructor_kwargs={
                    "model": str(Path(model).resolve()),
                    "overrides": overrides or {},
                    "source": str(source.resolve()),
                    "out_dir": str(out_dir.resolve()),
                    "settings": settings.__dict__,
                },
                batch_size=1,  # one shard per call: each is written as it finishes
                compute=ray.data.ActorPoolStrategy(size=workers),
                num_gpus=gpus_per_worker,
                num_cpus=cpus_per_worker,
                max_restarts=-1,  # a dead worker's actor is restarted ...
                max_task_retries=-1,  # ... and its shard retried
            )
            for row in results.iter_rows():
                manifest.finish(int(row["shard"]), int(row["written"]), int(row["errors"]))
                if progress is not None:
                    progress(plan[int(row["shard"])]["rows"])
        finally:
            if started:
                ray.shutdown()
    for item in plan:
        shard = manifest.shards.get(str(item["shard"]))
        if shard is None:
            raise RuntimeError(f"Shard {item['shard']} was not written; re-run to resume.")
        report.rows += shard["rows"]
        report.errors += shard["errors"]
    return report
