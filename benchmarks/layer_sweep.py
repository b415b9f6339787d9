"""Which LM layer(s) should the typing probe read? Train ember_ner per layer on cached
features of one LM pass and report CoNLL-2003 dev F1.

    python benchmarks/layer_sweep.py --train 2000 --dev 500 --epochs 8 \
        --configs 4 8 12 16 20 24 30 8+16 12+20

The LM runs once, with every layer in the sweep; each configuration then trains the
same `ember_ner` component on a slice of those features (selection on dev only).
"""

import argparse
import json
import random
import time
from pathlib import Path

import spacy
from common import ents_f, load_conll
from spacy.training import Example
from thinc.api import Adam, fix_random_seed

from spacy_ember.lm.features import LMFeatures


def slice_layers(feats: LMFeatures, idx):
    raw = type(feats.raw)(feats.raw.offsets, feats.raw.hidden[:, idx], feats.raw.attn)
    return LMFeatures(raw, feats.align, feats.usable)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--train", type=int, default=2000)
    ap.add_argument("--dev", type=int, default=500)
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument(
        "--configs", nargs="+", default=["4", "8", "12", "16", "20", "24", "30", "8+16"]
    )
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "layer_sweep.json"))
    args = ap.parse_args()
    configs = [[int(x) for x in c.split("+")] for c in args.configs]
    layers = sorted({layer for c in configs for layer in c})

    nlp = spacy.blank("en")
    lm = nlp.add_pipe("causal_lm", config={"model": {"layers": layers, "cache": None}})
    train_gold = load_conll("train", nlp.vocab, args.train)
    dev_gold = load_conll("dev", nlp.vocab, args.dev)
    t0 = time.time()
    train_docs = list(lm.pipe(nlp.make_doc(d.text) for d in train_gold))
    dev_docs = list(lm.pipe(nlp.make_doc(d.text) for d in dev_gold))
    extract_s = time.time() - t0
    print(f"features for {len(train_docs)} + {len(dev_docs)} docs in {extract_s:.0f}s", flush=True)
    full_train = [d._.ember_lm for d in train_docs]
    full_dev = [d._.ember_lm for d in dev_docs]

    results = {}
    for config in configs:
        fix_random_seed(0)
        idx = [layers.index(layer) for layer in config]
        for doc, f in zip(train_docs, full_train):
            doc._.ember_lm = slice_layers(f, idx)
        for doc, f in zip(dev_docs, full_dev):
            doc._.ember_lm = slice_layers(f, idx)
        ner_nlp = spacy.blank("en")
        ner_nlp.add_pipe("causal_lm", config={"model": {"layers": config}})
        ner = ner_nlp.add_pipe("ember_ner")
        examples = [Example(d, g) for d, g in zip(train_docs, train_gold)]
        ner.initialize(lambda examples=examples: examples, nlp=None)
        optimizer = Adam(0.001)
        best = {"ents_f": -1.0}
        t0 = time.time()
        for epoch in range(args.epochs):
            random.Random(epoch).shuffle(examples)
            for b in range(0, len(examples), 64):
                ner.update(examples[b : b + 64], sgd=optimizer, drop=0.1)
            predicted = [d.copy() for d in dev_docs]
            for d, f in zip(predicted, dev_docs):
                d._.ember_lm = f._.ember_lm
            ner.set_annotations(predicted, ner.predict(predicted))
            scores = ents_f(predicted, dev_gold)
            if scores["ents_f"] > best["ents_f"]:
                best = {**scores, "epoch": epoch + 1}
        name = "+".join(map(str, config))
        results[name] = {
            "dev_f": round(best["ents_f"], 4),
            "dev_p": round(best["ents_p"], 4),
            "dev_r": round(best["ents_r"], 4),
            "best_epoch": best["epoch"],
            "train_seconds": round(time.time() - t0, 1),
        }
        print(name, results[name], flush=True)
    report = {
        "train_sentences": len(train_docs),
        "dev_sentences": len(dev_docs),
        "epochs": args.epochs,
        "feature_seconds": round(extract_s, 1),
        "results": results,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2))
    print("| layers | dev F1 | P | R |\n|---|---|---|---|")
    for name, r in results.items():
        print(f"| {name} | {r['dev_f']:.3f} | {r['dev_p']:.3f} | {r['dev_r']:.3f} |")


if __name__ == "__main__":
    main()
