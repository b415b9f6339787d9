"""`annotate` on the tiny pipeline: the local engine equals one nlp.pipe, bad rows go to
the errors files, a killed run resumes to identical output, Ray equals local."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import spacy

from spacy_ember.annotate.inputs import BadRow, read_rows
from spacy_ember.annotate.local import AnnotateSettings, annotate_local
from spacy_ember.annotate.outputs import MANIFEST, job_description
from spacy_ember.pipeline.records import doc_records

from ..helpers import TRAIN_DATA, tiny_pipeline

TEXTS = [text for text, _ in TRAIN_DATA] * 3
BAD_LINES = {
    2: "{not json",
    5: json.dumps({"id": "no-text", "title": "x"}),
    7: json.dumps({"id": "number", "text": 42}),
    9: json.dumps({"id": "blank", "text": "   "}),
    11: json.dumps([1, 2]),
}


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("pipeline") / "tiny"
    tiny_pipeline(threshold=0.3, reject_o=False).to_disk(path)
    return path


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """JSONL: ids on some rows, metadata, and bad rows among good ones."""
    lines, good = [], iter(TEXTS)
    for i in range(len(TEXTS) + len(BAD_LINES)):
        if i in BAD_LINES:
            lines.append(BAD_LINES[i])
        else:
            record = {"text": next(good), "source": f"s{i}"}
            if i % 2:
                record["id"] = f"doc-{i}"
            lines.append(json.dumps(record))
    path = tmp_path_factory.mktemp("corpus") / "corpus.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf8")
    return path


def run_local(model: Path, source: Path, out: Path, **settings) -> None:
    s = AnnotateSettings(**settings)
    annotate_local(spacy.load(model), source, out, s, job_description(model, source, s.__dict__))


def read_jsonl(paths) -> list[dict]:
    return [json.loads(line) for p in paths for line in p.read_text(encoding="utf8").splitlines()]


def files(out: Path) -> dict[str, bytes]:
    """Every output file but the manifest, by name."""
    return {p.name: p.read_bytes() for p in sorted(out.iterdir()) if p.name != MANIFEST}


def test_local_engine_equals_one_nlp_pipe(model, corpus, tmp_path):
    run_local(model, corpus, tmp_path, shard_size=4, batch_size=3)
    records = read_jsonl(sorted(tmp_path.glob("shard-*.jsonl")))
    rows = [r for r in read_rows(corpus) if not isinstance(r, BadRow)]
    nlp = spacy.load(model)
    expected = [doc_records(doc) for doc in nlp.pipe([r.text for r in rows], batch_size=3)]
    assert [r["id"] for r in records] == [r.id for r in rows]
    assert [r["entities"] for r in records] == expected and any(expected)
    assert all(r["meta"]["source"].startswith("s") for r in records)
    errors = read_jsonl(sorted(tmp_path.glob("errors-*.jsonl")))
    assert [e["id"] for e in errors] == [2, "no-text", "number", "blank", 11]
    assert all(e["error"] for e in errors)
    manifest = json.loads((tmp_path / MANIFEST).read_text())
    assert sum(s["rows"] for s in manifest["shards"].values()) == len(rows)


@pytest.mark.parametrize("fmt", ["parquet", "spacy"])
def test_other_output_formats_hold_the_same_records(model, corpus, tmp_path, fmt):
    pytest.importorskip("pyarrow")
    run_local(model, corpus, tmp_path / "jsonl", shard_size=6)
    run_local(model, corpus, tmp_path / fmt, shard_size=6, output_format=fmt)
    expected = read_jsonl(sorted((tmp_path / "jsonl").glob("shard-*.jsonl")))
    shards = sorted((tmp_path / fmt).glob(f"shard-*.{fmt}"))
    if fmt == "parquet":
        import pyarrow.parquet as pq

        got = [r for p in shards for r in pq.read_table(p).to_pylist()]
        got = [
            {
                **r,
                "entities": [{k: v for k, v in e.items() if v is not None} for e in r["entities"]],
            }
            for r in got
        ]
        assert [(r["id"], r["entities"]) for r in got] == [
            (str(r["id"]), r["entities"]) for r in expected
        ]
    else:
        from spacy.tokens import DocBin

        nlp = spacy.blank("en")
        docs = [d for p in shards for d in DocBin().from_disk(p).get_docs(nlp.vocab)]
        assert [d.user_data["id"] for d in docs] == [r["id"] for r in expected]
        assert [[(e.start_char, e.end_char, e.label_) for e in d.ents] for d in docs] == [
            [(e["start_char"], e["end_char"], e["label"]) for e in r["entities"]] for r in expected
        ]


def test_txt_and_parquet_inputs(model, tmp_path):
    pytest.importorskip("pyarrow")
    import pyarrow as pa
    import pyarrow.parquet as pq

    (tmp_path / "in.txt").write_text("\n".join([TEXTS[0], "", TEXTS[1]]) + "\n")
    pq.write_table(
        pa.Table.from_pylist([{"text": t, "n": i} for i, t in enumerate(TEXTS[:2])]),
        tmp_path / "in.parquet",
    )
    run_local(model, tmp_path / "in.txt", tmp_path / "txt")
    run_local(model, tmp_path / "in.parquet", tmp_path / "pq")
    txt = read_jsonl((tmp_path / "txt").glob("shard-*.jsonl"))
    parquet = read_jsonl((tmp_path / "pq").glob("shard-*.jsonl"))
    assert [r["id"] for r in txt] == [0, 2] and [r["id"] for r in parquet] == [0, 1]
    assert read_jsonl((tmp_path / "txt").glob("errors-*.jsonl")) == [
        {"id": 1, "error": "empty text"}
    ]
    assert [r["meta"] for r in parquet] == [{"n": 0}, {"n": 1}]
    assert [r["entities"] for r in parquet] == [txt[0]["entities"], txt[1]["entities"]]


def test_another_job_in_the_same_folder_is_refused(model, corpus, tmp_path):
    run_local(model, corpus, tmp_path, shard_size=4)
    with pytest.raises(ValueError, match="shard_size"):
        run_local(model, corpus, tmp_path, shard_size=5)


def test_killed_run_resumes_to_identical_output(model, tmp_path):
    source = tmp_path / "big.jsonl"
    source.write_text("".join(json.dumps({"text": t}) + "\n" for t in TEXTS * 25))
    command = [sys.executable, "-m", "spacy_ember", "annotate", str(model), str(source)]
    settings = ["--shard-size", "5", "--batch-size", "5"]
    whole, resumed = tmp_path / "whole", tmp_path / "resumed"
    subprocess.run([*command, str(whole), *settings], check=True, capture_output=True)
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen([*command, str(resumed), *settings], env=env, stderr=subprocess.DEVNULL)
    manifest = resumed / MANIFEST
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if manifest.is_file() and len(json.loads(manifest.read_text())["shards"]) >= 2:
            break
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = len(json.loads(manifest.read_text())["shards"])
    assert 2 <= done < 15, "the run was not killed mid-way"
    out = subprocess.run(
        [*command, str(resumed), *settings], check=True, capture_output=True, text=True
    )
    assert f"{done} from an earlier run" in out.stdout
    assert files(resumed) == files(whole)
    assert not [p for p in resumed.iterdir() if ".tmp-" in p.name]


def test_ray_engine_equals_local(model, corpus, tmp_path):
    ray = pytest.importorskip("ray", reason="the ray engine needs: pip install 'spacy-ember[ray]'")
    from spacy_ember.annotate.ray_engine import annotate_ray

    settings = AnnotateSettings(shard_size=4, batch_size=3)
    job = job_description(model, corpus, settings.__dict__)
    run_local(model, corpus, tmp_path / "local", shard_size=4, batch_size=3)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        report = annotate_ray(model, corpus, tmp_path / "ray", settings, job, workers=2)
    finally:
        ray.shutdown()
    assert report.errors == len(BAD_LINES) and report.rows == len(TEXTS)
    assert files(tmp_path / "ray") == files(tmp_path / "local")
