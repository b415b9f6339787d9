"""Throughput of `annotate` on N CoNLL-2003 training sentences: the local engine, and the
Ray engine with 1 and 2 workers (a local Ray cluster of the machine's CPUs), run one
after another on the same input; then the engines' outputs compared record by record,
and a local run killed mid-way and resumed, compared with the uninterrupted one.

Each engine's time includes loading the pipeline (Ray: in each actor) and excludes
starting Ray itself. The feature cache is off (as `annotate` runs by default), so every
text runs through the LM.

    python benchmarks/annotate_scale.py training/conll2003/model-tuned --sentences 10000
"""

import argparse
import json
import os
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import spacy  # noqa: E402
from common import git_commit, load_conll, machine_info, write_report  # noqa: E402

from spacy_ember.annotate.local import (  # noqa: E402
    AnnotateSettings,
    annotate_local,
    pipeline_overrides,
)
from spacy_ember.annotate.outputs import MANIFEST, job_description  # noqa: E402

RESULTS = Path(__file__).parent / "results" / "annotate.json"


def records(out: Path) -> dict:
    """Every output record by id."""
    rows = [json.loads(line) for p in sorted(out.glob("shard-*.jsonl")) for line in open(p)]
    return {r["id"]: r for r in rows}


def mismatches(a: dict, b: dict) -> int:
    return sum(a.get(k) != b.get(k) for k in set(a) | set(b))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("--sentences", type=int, default=10000)
    parser.add_argument("--shard-size", type=int, default=500)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()

    import ray

    work = Path(tempfile.mkdtemp(prefix="annotate-scale-"))  # the corpus is not copied here
    source = work / "conll-train.jsonl"
    docs = load_conll("train", spacy.blank("en").vocab, args.sentences)
    with open(source, "w", encoding="utf8") as f:
        for i, doc in enumerate(docs):
            f.write(json.dumps({"id": f"train-{i}", "text": doc.text}) + "\n")
    words = sum(len(d) for d in docs)
    settings = AnnotateSettings(shard_size=args.shard_size, batch_size=args.batch_size)
    job = job_description(args.model, source, settings.__dict__)
    runs, outputs = {}, {}

    started = time.perf_counter()
    nlp = spacy.load(args.model, config=pipeline_overrides())
    annotate_local(nlp, source, work / "local", settings, job)
    runs["local"] = time.perf_counter() - started
    outputs["local"] = records(work / "local")
    del nlp

    from spacy_ember.annotate.ray_engine import annotate_ray

    cpus = os.cpu_count() or 2
    ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False)
    try:
        for workers in (1, 2):
            name = f"ray_{workers}"
            started = time.perf_counter()
            annotate_ray(
                args.model,
                source,
                work / name,
                settings,
                job,
                overrides=pipeline_overrides(),
                workers=workers,
                cpus_per_worker=cpus / workers,
            )
            runs[name] = time.perf_counter() - started
            outputs[name] = records(work / name)
    finally:
        ray.shutdown()

    # Kill a local run once a third of its shards are done, then resume it.
    command = [sys.executable, "-m", "spacy_ember", "annotate", str(args.model), str(source)]
    command += [str(work / "resumed"), "--shard-size", str(args.shard_size)]
    command += ["--batch-size", str(args.batch_size)]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    manifest = work / "resumed" / MANIFEST
    n_shards = -(-len(docs) // args.shard_size)
    while proc.poll() is None:
        if manifest.is_file() and len(json.loads(manifest.read_text())["shards"]) >= n_shards // 3:
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.05)
    proc.wait()
    killed_after = len(json.loads(manifest.read_text())["shards"])
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    resumed = records(work / "resumed")

    local = outputs["local"]
    report = {
        "command": "python " + shlex.join(["benchmarks/annotate_scale.py", *sys.argv[1:]]),
        "commit": git_commit(),
        "pipeline": str(args.model),
        "sentences": len(docs),
        "words": words,
        "shard_size": args.shard_size,
        "batch_size": args.batch_size,
        "seconds": {k: round(v, 1) for k, v in runs.items()},
        "words_per_s": {k: round(words / v, 1) for k, v in runs.items()},
        "ray_speedup_2_vs_1": round(runs["ray_1"] / runs["ray_2"], 3),
        "records": {k: len(v) for k, v in outputs.items()},
        "entities": sum(len(r["entities"]) for r in local.values()),
        "mismatches": sum(mismatches(local, out) for k, out in outputs.items() if k != "local"),
        "resume_killed_after_shards": killed_after,
        "resume_ok": killed_after < n_shards and resumed == local,
        "machine": machine_info(
            torch_threads_local="torch default (all cores)",
            ray_cpus_per_worker={"ray_1": cpus, "ray_2": cpus / 2},
        ),
    }
    write_report(
        report,
        args.output,
        ("seconds", "words_per_s", "ray_speedup_2_vs_1", "records", "mismatches", "resume_ok"),
    )
    print(f"work files in {work}")


if __name__ == "__main__":
    main()
