"""What an annotation job writes: shards of records (JSONL, Parquet) or Docs (.spacy),
each written to a temporary file and renamed into place, so a shard on disk is always
whole; and the manifest that says which shards are done, for resuming."""

import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from spacy.tokens import Doc, DocBin

OUTPUT_FORMATS = ("jsonl", "parquet", "spacy")
MANIFEST = "manifest.json"
FINGERPRINT_BYTES = 1 << 20  # the input's first and last MiB are hashed (with its size)


def shard_name(index: int, fmt: str) -> str:
    return f"shard-{index:05d}.{fmt}"


def errors_name(index: int) -> str:
    return f"errors-{index:05d}.jsonl"


def _replace_atomically(path: Path, write) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        write(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_jsonl(path: Path, records: Sequence[dict[str, Any]]) -> None:
    def write(tmp: Path) -> None:
        with open(tmp, "w", encoding="utf8") as f:
            for record in records:
                f.write(json.dumps(record, ensure_ascii=False) + "\n")

    _replace_atomically(path, write)


def write_shard(path: Path, fmt: str, records: list[dict[str, Any]], docs: list[Doc]) -> None:
    """One shard: the records (jsonl; parquet, with ids as strings) or the Docs with
    their ids and metadata in user_data (spacy)."""
    if fmt == "jsonl":
        write_jsonl(path, records)
    elif fmt == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        # One column type for ids that are strings on some rows, row indexes on others.
        rows = [{**r, "id": str(r["id"])} for r in records]
        _replace_atomically(path, lambda tmp: pq.write_table(pa.Table.from_pylist(rows), tmp))
    else:
        docbin = DocBin(store_user_data=True)
        for doc, record in zip(docs, records):
            doc.user_data["id"] = record["id"]
            doc.user_data["meta"] = record.get("meta", {})
            docbin.add(doc)
        _replace_atomically(path, docbin.to_disk)


def fingerprint(path: Path) -> dict[str, Any]:
    """Size and a hash of the first and last MiB: a changed input is noticed on resume."""
    size = path.stat().st_size
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        digest.update(f.read(FINGERPRINT_BYTES))
        f.seek(max(size - FINGERPRINT_BYTES, 0))
        digest.update(f.read(FINGERPRINT_BYTES))
    return {"size": size, "sha256_ends": digest.hexdigest()}


class Manifest:
    """out_dir/manifest.json: the job (input, settings) and its finished shards."""

    def __init__(self, out_dir: Path, job: dict[str, Any]) -> None:
        self.path = out_dir / MANIFEST
        self.job = job
        self.shards: dict[str, dict[str, int]] = {}
        if self.path.is_file():
            saved = json.loads(self.path.read_text(encoding="utf8"))
            if saved.get("job") != job:
                raise ValueError(
                    f"{out_dir} holds the output of another job ({self._diff(saved.get('job'))}); "
                    "resume with the same input and settings, or write to a new folder."
                )
            self.shards = saved.get("shards", {})

    def _diff(self, saved: Any) -> str:
        if not isinstance(saved, dict):
            return "no job recorded"
        keys = sorted(k for k in set(saved) | set(self.job) if saved.get(k) != self.job.get(k))
        return ", ".join(f"{k}: {saved.get(k)!r} then, {self.job.get(k)!r} now" for k in keys)

    def done(self, index: int) -> bool:
        return str(index) in self.shards

    def finish(self, index: int, rows: int, errors: int) -> None:
        self.shards[str(index)] = {"rows": rows, "errors": errors}
        body = {"job": self.job, "shards": self.shards}
        text = json.dumps(body, indent=1)
        _replace_atomically(self.path, lambda tmp: tmp.write_text(text, encoding="utf8"))


def job_description(model: Path, source: Path, settings: dict[str, Any]) -> dict[str, Any]:
    """What makes two runs the same job (checked on resume): the input and its
    fingerprint, the pipeline, and the settings (not the engine: both write the same)."""
    job = {"input": str(source.resolve()), "fingerprint": fingerprint(source)}
    job.update(model=str(Path(model).resolve()), **settings)
    return json.loads(json.dumps(job))
