"""Probe variants on one backbone, on one subset protocol, chosen on dev: concatenated
layers against a scalar mix of two or of six layers, wider probes, longer training, a
span-probe input transform, and case-variant rates (0, 0.15, 0.3 each of lower/upper).

    python benchmarks/probe_variants.py gemma3-270m --corpus corpus --train 300 --dev 60

Each variant is `spacy train` of configs/ember.cfg with a few overrides, on the same
first N train and dev documents, steps and seed; its dev F1 is the best checkpoint's
(dev only: test is never read here), and for the case variants also its dev F1 with
the dev subset lower- and upper-cased. The feature cache's cost is measured on real
features: bytes per LM token of what `causal_lm` stores, times LM tokens per sentence.
"""

import argparse
import json
import os
import time
from pathlib import Path

import spacy
from common import git_commit, lm_tokens, machine_info, spacy_train, write_report
from spacy.language import Language
from spacy.tokens import DocBin

from spacy_ember.workflow.case import case_scores

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "metrics" / "probe-variants.json"
SIX = [3, 5, 7, 9, 11, 13]  # the config reads Gemma-3-270M's layers 5 and 10 (of 18)

VARIANTS: dict[str, dict[str, object]] = {
    "concat-2": {},  # configs/ember.cfg as shipped
    "mix-2": {
        "components.ember_ner.model.typing_probe.scalar_mix": True,
    },
    "mix-6": {
        "components.causal_lm.model.layers": SIX,
        "components.ember_ner.model.typing_probe.scalar_mix": True,
    },
    "concat-2-wide": {
        "components.ember_ner.model.typing_probe.width": 512,
        "components.ember_ner.model.span_probe.width": 512,
    },
    "concat-2-longer": {"@steps": 2},
    "case-0": {"@case": 0.0},
    "case-0.3": {"@case": 0.3},
    "concat-2-sqrt-attn": {
        "components.ember_ner.model.attn_transform": "sqrt",
    },
}
CASE_VARIANTS = ("concat-2", "case-0", "case-0.3")  # also scored lower- and upper-cased


def train(name: str, overrides: dict[str, object], args: argparse.Namespace) -> Path:
    """`spacy train` of the shared config with this variant's overrides; returns model-best."""
    case = overrides.get("@case", args.case)
    steps = args.max_steps * int(overrides.get("@steps", 1))  # type: ignore[call-overload]
    settings = {
        "corpora.train.limit": args.train,
        "corpora.dev.limit": args.dev,
        "corpora.train.augmenter.lower": case,
        "corpora.train.augmenter.upper": case,
        "training.max_steps": steps,
        "training.eval_frequency": args.eval_frequency,
        **{key: value for key, value in overrides.items() if not key.startswith("@")},
    }
    return spacy_train(args.training / name, args.corpus, args.model, args.feature_cache, settings)


def dev_case_scores(nlp: Language, corpus: Path, limit: int) -> dict:
    """Dev F1 of the best checkpoint on the dev subset as written, lower- and upper-cased."""
    dev = list(DocBin().from_disk(corpus / "conll2003-dev.spacy").get_docs(nlp.vocab))[:limit]
    scores = case_scores(nlp, dev)
    return {k: round(v, 4) for k, v in scores.items() if k.endswith("_f")}


def cache_cost(nlp: Language, corpus: Path, limit: int) -> dict:
    """Bytes of stored features per LM token (measured on 5 dev docs, the feature cache
    bypassed) and per 1,000 sentences of the train subset."""
    lm = nlp.get_pipe("causal_lm")
    extractor = lm.model.attrs["extractor"]
    tokenizer = extractor.lm.tokenizer
    dev = list(DocBin().from_disk(corpus / "conll2003-dev.spacy").get_docs(nlp.vocab))[:5]
    cache, extractor.cache = extractor.cache, None
    try:
        features = lm.model.predict([nlp.make_doc(d.text) for d in dev])
    finally:
        extractor.cache = cache
    stored = sum(f.hidden.nbytes + f.attn.nbytes for f in features)
    per_token = stored / lm_tokens(tokenizer, [d.text for d in dev])
    train = list(DocBin().from_disk(corpus / "conll2003-train.spacy").get_docs(nlp.vocab))
    train = train[:limit]
    sentences = sum(len(list(d.sents)) for d in train)
    per_sentence = lm_tokens(tokenizer, [d.text for d in train]) / sentences
    return {
        "feature_bytes_per_lm_token": round(per_token),
        "cache_mb_per_1000_sentences": round(per_token * per_sentence * 1000 / 2**20, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", help="the backbone (download-llm name, .gguf file, ...)")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    parser.add_argument("--train", type=int, default=300, help="first N train documents")
    parser.add_argument("--dev", type=int, default=60, help="first N dev documents")
    parser.add_argument("--case", type=float, default=0.15, help="lower and upper variant rate")
    parser.add_argument("--max-steps", type=int, default=1500)
    parser.add_argument("--eval-frequency", type=int, default=250)
    parser.add_argument("--corpus", type=Path, default=ROOT / "corpus", help="--unit documents")
    parser.add_argument("--training", type=Path, default=ROOT / "training" / "probe-variants")
    parser.add_argument("--feature-cache", type=Path, default=ROOT / "cache" / "features")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    args.model = os.path.expanduser(args.model)
    report = json.loads(args.output.read_text()) if args.output.exists() else {}
    rows = {row["variant"]: row for row in report.get("rows", [])}
    for name in args.variants:
        started = time.time()
        best = train(name, VARIANTS[name], args)
        meta = json.loads((best / "meta.json").read_text())
        nlp = spacy.load(best)
        rows[name] = {
            "variant": name,
            "overrides": VARIANTS[name],
            "dev_f": round(meta["performance"]["ents_f"], 4),
            "train_seconds": round(time.time() - started),
            **cache_cost(nlp, args.corpus, args.train),
            **(dev_case_scores(nlp, args.corpus, args.dev) if name in CASE_VARIANTS else {}),
            "commit": git_commit(),
        }
        print(json.dumps(rows[name]), flush=True)
        report = {
            "protocol": {
                "model": Path(args.model).name,
                "train_docs": args.train,
                "dev_docs": args.dev,
                "case_variant_rate": args.case,
                "max_steps": args.max_steps,
                "eval_frequency": args.eval_frequency,
                "config": "configs/ember.cfg",
            },
            "rows": list(rows.values()),
            "commit": git_commit(),
            **machine_info(),
        }
        write_report(report, args.output, ["commit"])
    print("| variant | dev F1 | train s | cache MB / 1,000 sentences |")
    print("|---|---|---|---|")
    for r in rows.values():
        print(
            f"| {r['variant']} | {r['dev_f']:.4f} | {r['train_seconds']} "
            f"| {r['cache_mb_per_1000_sentences']} |"
        )


if __name__ == "__main__":
    main()
