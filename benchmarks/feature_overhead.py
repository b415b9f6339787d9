"""Forward time per token of the frozen LM, with and without EMBER's feature extraction.

    python benchmarks/feature_overhead.py --sentences 256 --batch-size 16 --repeats 5

Interleaves, in one run, (a) a plain SDPA forward of the base model, (b) the same with
hidden states returned, and (c) `causal_lm`'s full feature extraction (attention band
recording, hidden-state selection, conversion to numpy), and prints medians in ms per
LM token and the overhead of (c) over (a).
"""

import argparse
import json
import statistics
import time
from pathlib import Path

import spacy
import torch
from common import load_conll

from spacy_ember.lm.attention import ATTN_IMPLEMENTATION


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sentences", type=int, default=256)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--layers", default="16")
    ap.add_argument(
        "--out", default=str(Path(__file__).parent / "results" / "feature_overhead.json")
    )
    args = ap.parse_args()
    nlp = spacy.blank("en")
    lm = nlp.add_pipe(
        "causal_lm",
        config={
            "model": {
                "layers": [int(x) for x in args.layers.split(",")],
                "batch_size": args.batch_size,
                "cache": None,
            }
        },
    )
    extractor = lm.extractor
    model = extractor.lm.model
    texts = [d.text for d in load_conll("dev", nlp.vocab, args.sentences)]
    ids, _ = extractor.tokenize(texts)
    n_tokens = sum(len(x) + 2 for x in ids)  # start and lookahead tokens included
    # Same batching as the extractor: sequences sorted by length, then padded per batch.
    ids = sorted(ids, key=len)
    batches = []
    for b in range(0, len(ids), args.batch_size):
        seqs = [
            [extractor.start_token_id] + x + [extractor.lookahead_token_id]
            for x in ids[b : b + args.batch_size]
        ]
        T = max(map(len, seqs))
        inp = torch.full((len(seqs), T), extractor.lookahead_token_id)
        mask = torch.zeros((len(seqs), T), dtype=torch.long)
        for j, s in enumerate(seqs):
            inp[j, : len(s)] = torch.tensor(s)
            mask[j, : len(s)] = 1
        batches.append((inp, mask))

    @torch.no_grad()
    def plain(hidden: bool) -> None:
        model.set_attn_implementation("sdpa")
        for inp, mask in batches:
            model.base_model(
                input_ids=inp, attention_mask=mask, output_hidden_states=hidden, use_cache=False
            )
        model.set_attn_implementation(ATTN_IMPLEMENTATION)

    runs = {
        "plain_sdpa_forward": lambda: plain(False),
        "forward_with_hidden_states": lambda: plain(True),
        "ember_feature_extraction": lambda: extractor._compute(texts),
    }
    times = {name: [] for name in runs}
    runs["ember_feature_extraction"]()  # warm up
    for _ in range(args.repeats):
        for name, fn in runs.items():
            t0 = time.perf_counter()
            fn()
            times[name].append((time.perf_counter() - t0) * 1000 / n_tokens)
    med = {name: statistics.median(v) for name, v in times.items()}
    report = {
        "model": extractor.lm.name,
        "sentences": len(texts),
        "lm_tokens": n_tokens,
        "batch_size": args.batch_size,
        "repeats": args.repeats,
        "torch_threads": torch.get_num_threads(),
        "ms_per_token": {k: round(v, 3) for k, v in med.items()},
        "extraction_overhead": round(
            med["ember_feature_extraction"] / med["plain_sdpa_forward"] - 1, 4
        ),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2))
    print("| path | ms / token (median) |\n|---|---|")
    for name, v in med.items():
        print(f"| {name} | {v:.3f} |")
    overhead = 100 * report["extraction_overhead"]
    print(f"feature extraction overhead vs plain SDPA forward: {overhead:.1f}%")


if __name__ == "__main__":
    main()
