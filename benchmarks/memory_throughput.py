"""Peak resident memory and `nlp.pipe` throughput of a trained pipeline.

    python benchmarks/memory_throughput.py training/conll2003/model-tuned

What is measured (every measurement in its own fresh subprocess):
  memory vs doc length  one doc of ~1,250, 2,500, 5,000 and 10,000 words (--doc-words),
                        built by joining whole news sentences, through `nlp(text)`: peak
                        RSS increment over the process's RSS after loading, per 1,000
                        words and per 1,000 LM pieces (pieces per word vary along the
                        corpus), and increment(longest) / increment(half as long): ~2 if
                        memory is linear in doc length, ~4 if quadratic (log-log slope ~1
                        vs ~2). The LM runs a long doc in windows of max_length pieces,
                        model.batch_size windows per forward pass, so the activations grow
                        with the doc until one LM batch is full (16 windows, ~7,000
                        pieces) and then stay flat: below 2 is still linear (or better).
  memory vs batch size  `nlp.pipe` over 1,000 sentences (--sentences) with batch_size 1,
                        8 and 32 (--batch-sizes): peak RSS increment and words/s; the
                        increment should grow at most linearly with the batch size.
  n_process             the same with n_process=2 (--n-process, batch size
                        --n-process-batch-size): words/s, and memory of all processes.

Texts are the CoNLL-2003 English test sentences (Reuters news), where benchmarks/common.py
finds the corpora (../shared/data, or $SPACY_EMBER_DATA), or --texts FILE (a BIO file,
else one text per line). Corpus text is never written out.

Memory: each subprocess loads the pipeline with the feature cache disabled
(`components.causal_lm.model.cache = null`, so cached features can't mask work), runs one
short warm-up sentence (the LM loads lazily), then records its RSS as the baseline and
resets the kernel's peak-RSS mark (`/proc/self/clear_refs`, Linux; so the load's own peak
cannot hide the run's). Peak RSS is `getrusage(RUSAGE_SELF).ru_maxrss` after the run.
With n_process > 1 that is the parent's; all processes together are sampled with psutil
(if installed) every 0.1 s as parent RSS + workers' USS (the memory a forked worker does
not share with the parent), and `RUSAGE_CHILDREN` gives the largest worker's own peak RSS.
Docs from `nlp.pipe` are consumed, not kept (each doc carries its LM features in
`doc._.ember_lm`, so keeping them all would grow memory with the corpus).

Threads: single-process rows use torch's default thread count (or --threads); with
n_process > 1 every worker runs torch with 1 thread (spacy_ember sets it after fork; the
parent is set to 1 too). Each row reports the (pid, torch threads) of the processes that
ran the pipeline, read by a last component added to it.

Quick runs: --sentences 100 --doc-words 1000,2000. --tiny runs the tiny random pipeline of
tests/helpers.py (defaults: 200 sentences, docs of 312-2,500 words; results to
results/memory_throughput_tiny.json unless --out is given). The words/s of a run are only
meaningful on an otherwise idle machine (the load average is recorded).
"""

import argparse
import contextlib
import json
import math
import os
import shlex
import subprocess
import sys
import threading
import time
from pathlib import Path

from common import CONLL, git_commit, machine_info  # shared by the benchmarks

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results"
PROBE = "memory_throughput_probe"
NO_CACHE = {"components": {"causal_lm": {"model": {"cache": None}}}}


# -- memory probes (run inside the measuring subprocess) ----------------------------
def _ru_maxrss_mb(who: int) -> float:
    import resource

    peak = resource.getrusage(who).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024  # bytes vs KiB


def peak_mb() -> float:
    import resource

    return _ru_maxrss_mb(resource.RUSAGE_SELF)


def children_peak_mb() -> float:
    import resource

    return _ru_maxrss_mb(resource.RUSAGE_CHILDREN)


def rss_mb() -> float:
    """Current resident set size of this process."""
    try:
        with open("/proc/self/statm") as handle:
            return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        return peak_mb()


def reset_peak() -> bool:
    """Reset the kernel's peak-RSS mark to the current RSS (Linux >= 4.0)."""
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
    except OSError:
        return False
    return True


class TreeSampler:
    """Samples this process and its children with psutil: peak of parent RSS + children
    USS (memory the workers do not share with the parent) and peak of the summed PSS."""

    def __init__(self, interval: float = 0.1) -> None:
        import psutil

        self.psutil = psutil
        self.me = psutil.Process()
        self.interval = interval
        self.peak_rss_uss = 0.0
        self.peak_pss = 0.0
        self.max_children = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def pss_mb(self) -> float:
        return self.me.memory_full_info().pss / 2**20

    def _sample(self) -> None:
        psutil = self.psutil
        try:
            mine = self.me.memory_full_info()
            children = self.me.children(recursive=True)
        except psutil.Error:
            return
        rss_uss, pss = mine.rss, mine.pss
        for child in children:
            try:
                info = child.memory_full_info()
            except psutil.Error:
                continue
            rss_uss += info.uss
            pss += info.pss
        self.peak_rss_uss = max(self.peak_rss_uss, rss_uss / 2**20)
        self.peak_pss = max(self.peak_pss, pss / 2**20)
        self.max_children = max(self.max_children, len(children))

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    def __enter__(self) -> "TreeSampler":
        self._sample()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()


# -- corpus --------------------------------------------------------------------------
def read_sentences(path: str | None, tiny: bool) -> tuple[list[list[str]], str]:
    """Sentences (lists of words) from a BIO file, else one per non-empty line."""
    from spacy_ember.workflow.corpora import CorpusFormatError, read_bio

    source = Path(path) if path else CONLL / "test.txt"  # CoNLL-2003 English test
    if not source.is_file():
        if tiny and not path:
            sys.path.insert(0, str(ROOT))
            from tests.helpers import TRAIN_DATA

            return [text.split() for text, _ in TRAIN_DATA], "tests/helpers.py TRAIN_DATA"
        raise SystemExit(f"No texts at {source}: give --texts FILE (BIO or one text a line).")
    try:
        sentences = [words for words, _ in read_bio(source)]
    except CorpusFormatError:
        lines = source.read_text(encoding="utf8").splitlines()
        sentences = [line.split() for line in lines if line.strip()]
    return sentences, str(source)


def take_sentences(sentences: list[list[str]], n: int) -> list[str]:
    """The first n sentences as texts (cycled if the source has fewer)."""
    return [" ".join(sentences[i % len(sentences)]) for i in range(n)]


def join_to_words(sentences: list[list[str]], n_words: int) -> str:
    """Whole sentences from the start (cycled if needed) until n_words words are reached."""
    words: list[str] = []
    i = 0
    while len(words) < n_words:
        words.extend(sentences[i % len(sentences)])
        i += 1
    return " ".join(words)


# -- worker --------------------------------------------------------------------------
def load_pipeline(job: dict):
    """The pipeline with its feature cache disabled, plus the probe component."""
    import spacy
    from spacy.language import Language

    from spacy_ember.pipeline.causal_lm import CausalLM

    if job["tiny"]:
        sys.path.insert(0, str(ROOT))
        from tests.helpers import tiny_pipeline

        nlp = tiny_pipeline()
        for _, proc in nlp.pipeline:
            if isinstance(proc, CausalLM):
                proc.extractor.cache = None
    else:
        nlp = spacy.load(job["model"], config=NO_CACHE)
    lms = [proc for _, proc in nlp.pipeline if isinstance(proc, CausalLM)]
    if not lms or any(lm.extractor.cache is not None for lm in lms):
        raise SystemExit("Expected causal_lm components with the feature cache disabled.")
    if PROBE not in Language.factories:

        def probe(doc):
            import torch

            doc.user_data[PROBE] = [os.getpid(), torch.get_num_threads()]
            return doc

        Language.component(PROBE, func=probe)
    nlp.add_pipe(PROBE, last=True)
    return nlp, lms[0]


def worker(job: dict) -> dict:
    import gc

    start_rss = rss_mb()
    import torch

    from spacy_ember.lm.extractor import plan_windows

    default_threads = torch.get_num_threads()
    if job.get("threads"):
        torch.set_num_threads(job["threads"])
    sentences, source = read_sentences(job["texts"], job["tiny"])
    if job["kind"] == "prepare":
        n_words = [len(s) for s in sentences]
        return {
            "texts": source,
            "sentences_available": len(sentences),
            "words_available": sum(n_words),
            "torch_default_threads": default_threads,
            "torch": torch.__version__,
            "python_rss_mb_at_start": round(start_rss, 1),
        }
    t0 = time.perf_counter()
    nlp, lm = load_pipeline(job)
    warm = nlp(" ".join(sentences[0]))  # loads the LM (lazily, on first use)
    load_s = time.perf_counter() - t0
    del warm
    gc.collect()
    if job["n_process"] > 1:
        torch.set_num_threads(1)
    out = {
        "lm": lm.extractor.lm.name,
        "max_length": lm.extractor.max_length,
        "lm_batch_size": lm.extractor.batch_size,
        "load_seconds": round(load_s, 2),
        "peak_rss_load_mb": round(peak_mb(), 1),
    }
    base = rss_mb()
    out["baseline_rss_mb"] = round(base, 1)
    out["peak_reset"] = reset_peak()
    children_before = children_peak_mb()
    sampler = None
    if job["kind"] == "doc":
        text = join_to_words(sentences, job["words"])
        t0 = time.perf_counter()
        doc = nlp(text)
        seconds = time.perf_counter() - t0
        raw = doc._.ember_lm.raw
        seen = {tuple(doc.user_data[PROBE])}
        ex = lm.extractor
        out.update(
            words=len(text.split()),
            chars=len(text),
            spacy_tokens=len(doc),
            lm_pieces=raw.n_pieces,
            lm_windows=len(plan_windows(raw.n_pieces, ex.max_length, ex.context)),
            feature_mb=round(raw.nbytes / 2**20, 1),
            entities=len(doc.ents),
        )
    else:
        texts = take_sentences(sentences, job["sentences"])
        n_tokens = n_ents = 0
        seen = set()
        try:
            import psutil  # noqa: F401

            sampler = TreeSampler() if job["n_process"] > 1 else None
        except ImportError:
            sampler = None
        base_pss = sampler.pss_mb() if sampler is not None else None
        t0 = time.perf_counter()
        with sampler if sampler is not None else contextlib.nullcontext():
            docs = nlp.pipe(texts, batch_size=job["batch_size"], n_process=job["n_process"])
            for doc in docs:  # consumed, not kept
                n_tokens += len(doc)
                n_ents += len(doc.ents)
                seen.add(tuple(doc.user_data[PROBE]))
        seconds = time.perf_counter() - t0
        out.update(
            sentences=len(texts),
            words=sum(len(t.split()) for t in texts),
            spacy_tokens=n_tokens,
            entities=n_ents,
            batch_size=job["batch_size"],
        )
        if sampler is not None:
            out.update(
                all_processes_peak_mb=round(sampler.peak_rss_uss, 1),
                all_processes_increment_mb=round(sampler.peak_rss_uss - base, 1),
                baseline_pss_mb=round(base_pss, 1),
                sampled_peak_total_pss_mb=round(sampler.peak_pss, 1),
                pss_increment_mb=round(sampler.peak_pss - base_pss, 1),
                sampled_max_workers=sampler.max_children,
            )
    peak = peak_mb()
    out.update(
        n_process=job["n_process"],
        seconds=round(seconds, 3),
        words_per_s=round(out["words"] / seconds, 1),
        peak_rss_mb=round(peak, 1),
        increment_mb=round(peak - base, 1),
        parent_torch_threads=torch.get_num_threads(),
        processing_pids_threads=sorted(list(x) for x in seen),
    )
    if job["n_process"] > 1:
        # Largest ru_maxrss of the finished workers. A forked worker's RSS counts the
        # anonymous pages it shares with the parent but not yet the shared libraries it
        # has not touched, so it is no increment: all_processes_* (psutil) is.
        out.update(
            children_peak_rss_before_mb=round(children_before, 1),
            worker_peak_rss_mb=round(children_peak_mb(), 1),
        )
    else:
        out.update(all_processes_peak_mb=out["peak_rss_mb"])
        out.update(all_processes_increment_mb=out["increment_mb"])
    return out


# -- orchestration -------------------------------------------------------------------
def run_job(job: dict) -> dict:
    """One measurement in a fresh interpreter; its result is the last stdout line."""
    env = dict(os.environ)
    env.setdefault("HF_HUB_OFFLINE", "1")
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", json.dumps(job)]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr[-4000:])
        raise SystemExit(f"measurement failed ({proc.returncode}): {json.dumps(job)}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["subprocess_seconds"] = round(time.perf_counter() - t0, 1)
    return result


def loglog_slope(xs: list[float], ys: list[float]) -> float | None:
    pts = [(math.log(x), math.log(y)) for x, y in zip(xs, ys) if x > 0 and y > 0]
    if len(pts) < 2:
        return None
    mx = sum(p[0] for p in pts) / len(pts)
    my = sum(p[1] for p in pts) / len(pts)
    den = sum((p[0] - mx) ** 2 for p in pts)
    return round(sum((p[0] - mx) * (p[1] - my) for p in pts) / den, 3) if den else None


def linear_fit(xs: list[float], ys: list[float]) -> dict | None:
    """Least squares y = a + b x."""
    if len(xs) < 2:
        return None
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    den = sum((x - mx) ** 2 for x in xs)
    if not den:
        return None
    b = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / den
    a = my - b * mx
    residual = max(abs(y - (a + b * x)) for x, y in zip(xs, ys))
    return {
        "intercept_mb": round(a, 1),
        "mb_per_1k_words": round(1000 * b, 2),
        "max_residual_mb": round(residual, 1),
    }


def analyse_docs(rows: list[dict]) -> dict:
    rows = sorted(rows, key=lambda r: r["words"])
    if not rows:
        return {}
    words = [r["words"] for r in rows]
    pieces = [r["lm_pieces"] for r in rows]
    inc = [r["increment_mb"] for r in rows]
    longest = rows[-1]
    half = min(rows[:-1], key=lambda r: abs(r["words"] - longest["words"] / 2), default=None)
    out: dict = {
        "increment_mb_per_1k_words": {
            str(r["words"]): round(1000 * r["increment_mb"] / r["words"], 2) for r in rows
        },
        "increment_mb_per_1k_lm_pieces": {
            str(r["words"]): round(1000 * r["increment_mb"] / r["lm_pieces"], 2) for r in rows
        },
        "loglog_slope_increment_vs_words": loglog_slope(words, inc),
        "loglog_slope_increment_vs_lm_pieces": loglog_slope(pieces, inc),
        "loglog_slope_seconds_vs_words": loglog_slope(words, [r["seconds"] for r in rows]),
        "linear_fit": linear_fit(words, inc),
    }
    if half is not None and half["increment_mb"] > 0:
        k = longest["words"] / half["words"]
        kp = longest["lm_pieces"] / half["lm_pieces"]
        out["increment_ratio"] = {
            "longer_words": longest["words"],
            "shorter_words": half["words"],
            "ratio": round(longest["increment_mb"] / half["increment_mb"], 2),
            "if_linear": round(k, 2),
            "if_quadratic": round(k * k, 2),
            "lm_pieces_ratio": round(kp, 2),
            "if_linear_in_pieces": round(kp, 2),
            "if_quadratic_in_pieces": round(kp * kp, 2),
        }
    return out


def analyse_batches(rows: list[dict]) -> dict:
    rows = sorted((r for r in rows if r["n_process"] == 1), key=lambda r: r["batch_size"])
    if len(rows) < 2:
        return {}
    first, last = rows[0], rows[-1]
    return {
        "increment_ratio_largest_vs_smallest_batch": round(
            last["increment_mb"] / first["increment_mb"], 2
        )
        if first["increment_mb"] > 0
        else None,
        "batch_size_ratio": last["batch_size"] / first["batch_size"],
        "loglog_slope_increment_vs_batch_size": loglog_slope(
            [r["batch_size"] for r in rows], [r["increment_mb"] for r in rows]
        ),
    }


def threads_label(row: dict) -> str:
    threads = sorted({t for _, t in row["processing_pids_threads"]})
    procs = len(row["processing_pids_threads"])
    return f"{procs} proc × {'/'.join(map(str, threads))} thr"


def print_tables(report: dict) -> None:
    docs, pipes = report["doc_length"], report["batch_size"]
    if docs:
        print("\n### Memory vs doc length (one doc through nlp(text))\n")
        print(
            "| words | spaCy tokens | LM pieces | LM windows | features MB | baseline RSS MB "
            "| peak RSS MB | increment MB | MB / 1k words | MB / 1k pieces | s | words/s "
            "| threads |"
        )
        print("|" + "---|" * 13)
        for r in docs:
            print(
                f"| {r['words']} | {r['spacy_tokens']} | {r['lm_pieces']} | {r['lm_windows']} "
                f"| {r['feature_mb']} | {r['baseline_rss_mb']} | {r['peak_rss_mb']} "
                f"| {r['increment_mb']} | {1000 * r['increment_mb'] / r['words']:.1f} "
                f"| {1000 * r['increment_mb'] / r['lm_pieces']:.1f} | {r['seconds']:.1f} "
                f"| {r['words_per_s']} | {threads_label(r)} |"
            )
        a = report["doc_length_analysis"]
        ratio = a.get("increment_ratio")
        if ratio:
            print(
                f"\nincrement({ratio['longer_words']} words) / increment({ratio['shorter_words']}"
                f") = {ratio['ratio']}: linear {ratio['if_linear']}, quadratic "
                f"{ratio['if_quadratic']} in words; {ratio['if_linear_in_pieces']} and "
                f"{ratio['if_quadratic_in_pieces']} in LM pieces"
            )
        print(
            f"log-log slope (linear 1, quadratic 2): increment vs words "
            f"{a.get('loglog_slope_increment_vs_words')}, vs LM pieces "
            f"{a.get('loglog_slope_increment_vs_lm_pieces')}; time vs words "
            f"{a.get('loglog_slope_seconds_vs_words')}. Linear fit: {a.get('linear_fit')}"
        )
    if pipes:
        print(
            f"\n### nlp.pipe over {pipes[0]['sentences']} sentences ({pipes[0]['words']} words)\n"
        )
        print(
            "| batch_size | n_process | threads | s | words/s | baseline RSS MB | peak RSS MB "
            "| increment MB | all processes: peak MB (increment) | largest worker peak RSS MB |"
        )
        print("|" + "---|" * 10)
        for r in pipes:
            total = (
                f"{r['all_processes_peak_mb']} ({r['all_processes_increment_mb']:+})"
                if "all_processes_peak_mb" in r
                else "– (no psutil)"
            )
            print(
                f"| {r['batch_size']} | {r['n_process']} | {threads_label(r)} | "
                f"{r['seconds']:.1f} | {r['words_per_s']} | {r['baseline_rss_mb']} | "
                f"{r['peak_rss_mb']} | {r['increment_mb']} | {total} | "
                f"{r.get('worker_peak_rss_mb', '–')} |"
            )
        if any(r["n_process"] > 1 for r in pipes):
            print(
                "\nn_process > 1: 'peak RSS' and 'increment' are the parent's; 'all processes' "
                "is the sampled peak of parent RSS + workers' USS (memory not shared with "
                "the parent)."
            )
        b = report["batch_size_analysis"]
        if b:
            print(
                f"\nincrement ratio batch {b['batch_size_ratio']:.0f}x: "
                f"{b['increment_ratio_largest_vs_smallest_batch']} (at most linear: ≤ "
                f"{b['batch_size_ratio']:.0f}); log-log slope "
                f"{b['loglog_slope_increment_vs_batch_size']}"
            )


def ints(value: str) -> list[int]:
    return [int(x) for x in value.split(",") if x.strip()]


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--worker":
        print(json.dumps(worker(json.loads(sys.argv[2]))))
        return
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model", nargs="?", help="trained pipeline directory")
    ap.add_argument("--tiny", action="store_true", help="tiny random pipeline (smoke run)")
    ap.add_argument("--texts", help="BIO file or one text a line (default CoNLL-2003 test)")
    ap.add_argument("--sentences", type=int, help="default 1000 (--tiny: 200)")
    ap.add_argument("--doc-words", type=ints, help="default 1250,2500,5000,10000 (--tiny: /4)")
    ap.add_argument("--batch-sizes", type=ints, default=[1, 8, 32])
    ap.add_argument("--n-process", type=int, default=2, help="0 or 1: skip this row")
    ap.add_argument("--n-process-batch-size", type=int, default=32)
    ap.add_argument("--threads", type=int, help="torch threads of single-process rows")
    ap.add_argument("--out", help="JSON (default results/memory_throughput[_tiny].json)")
    args = ap.parse_args()
    if bool(args.model) == args.tiny:
        ap.error("give a pipeline directory or --tiny (not both)")
    if args.sentences is None:
        args.sentences = 200 if args.tiny else 1000
    if args.doc_words is None:
        args.doc_words = [w // 4 if args.tiny else w for w in (1250, 2500, 5000, 10000)]
    model = str(Path(args.model).resolve()) if args.model else None
    if model and not Path(model).is_dir():
        ap.error(f"no pipeline directory at {model}")
    default_out = "memory_throughput_tiny.json" if args.tiny else "memory_throughput.json"
    out_path = Path(args.out) if args.out else RESULTS / default_out
    base = {"model": model, "tiny": args.tiny, "texts": args.texts, "threads": args.threads}
    base.update(n_process=1, sentences=args.sentences, batch_size=1, words=0)
    jobs = [{**base, "kind": "doc", "words": w} for w in args.doc_words]
    jobs += [{**base, "kind": "pipe", "batch_size": b} for b in args.batch_sizes]
    if args.n_process > 1:
        jobs.append(
            {
                **base,
                "kind": "pipe",
                "batch_size": args.n_process_batch_size,
                "n_process": args.n_process,
                "threads": None,
            }
        )
    t_start = time.perf_counter()
    load_average = [round(x, 2) for x in os.getloadavg()]
    if load_average[0] > 0.5 * (os.cpu_count() or 1):
        print(
            f"warning: load average {load_average[0]} on {os.cpu_count()} CPUs: other work "
            "is running, so words/s (and torch's thread scaling) will be off.",
            file=sys.stderr,
        )
    info = run_job({**base, "kind": "prepare"})
    print(
        f"texts: {info['texts']} ({info['sentences_available']} sentences, "
        f"{info['words_available']} words)",
        file=sys.stderr,
    )
    doc_rows, pipe_rows = [], []
    for i, job in enumerate(jobs, 1):
        what = (
            f"doc of {job['words']} words"
            if job["kind"] == "doc"
            else f"pipe batch_size={job['batch_size']} n_process={job['n_process']}"
        )
        print(f"[{i}/{len(jobs)}] {what} ...", file=sys.stderr, end=" ", flush=True)
        row = run_job(job)
        print(
            f"{row['seconds']:.1f} s, {row['words_per_s']} words/s, +{row['increment_mb']} MB",
            file=sys.stderr,
        )
        (doc_rows if job["kind"] == "doc" else pipe_rows).append(row)
    try:
        import psutil

        total_ram = round(psutil.virtual_memory().total / 2**30, 1)
    except ImportError:
        total_ram = None
    commit = git_commit()
    report = {
        "command": "python " + shlex.join(["benchmarks/memory_throughput.py", *sys.argv[1:]]),
        "commit": commit,
        "pipeline": model or "tests/helpers.py tiny_pipeline()",
        "lm": (doc_rows or pipe_rows or [{}])[0].get("lm"),
        "texts": info["texts"],
        "feature_cache": "disabled (components.causal_lm.model.cache = null)",
        "machine": machine_info(
            cpus_usable=len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
            torch_default_threads=info["torch_default_threads"],
            threads_option=args.threads,
            total_ram_gb=total_ram,
            load_average_at_start=load_average,
            load_average_at_end=[round(x, 2) for x in os.getloadavg()],
            torch=info["torch"],
        ),
        "doc_length": doc_rows,
        "doc_length_analysis": analyse_docs(doc_rows),
        "batch_size": pipe_rows,
        "batch_size_analysis": analyse_batches(pipe_rows),
        "total_seconds": round(time.perf_counter() - t_start, 1),
    }
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(report, indent=2) + "\n")
    print_tables(report)
    print(f"\nwrote {out_path} ({report['total_seconds']} s)")


if __name__ == "__main__":
    main()
