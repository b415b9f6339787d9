"""One trained pipeline with its LM in float32 and in bfloat16: extraction speed and F1.

    python benchmarks/dtype.py training/scaling/qwen2.5-coder-1.5b/model-best --dev 500

The probes stay as trained (on float32 features); only the LM's weights and arithmetic
change, as when a user deploys in bfloat16. Each dtype runs in turn on the same dev
sentences with the feature cache off, twice in alternating order (the medians count).
"""

import argparse
import statistics
import time
from pathlib import Path

import spacy
from common import ents_f, git_commit, lm_tokens, machine_info, write_report
from spacy.tokens import DocBin

ROOT = Path(__file__).resolve().parents[1]
DTYPES = ("float32", "bfloat16")


def load(model: Path, dtype: str):
    config = {"components": {"causal_lm": {"model": {"loader": {"dtype": dtype}}}}}
    nlp = spacy.load(model, config=config)
    nlp.get_pipe("causal_lm").model.attrs["extractor"].cache = None
    return nlp


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("--dev", type=int, default=500, help="first N dev sentences")
    parser.add_argument("--corpus", type=Path, default=ROOT / "corpus" / "conll2003-dev.spacy")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--output", type=Path, required=True)
    args = parser.parse_args()
    pipelines = {dtype: load(args.model, dtype) for dtype in DTYPES}
    vocab = pipelines["float32"].vocab
    gold = list(DocBin().from_disk(args.corpus).get_docs(vocab))[: args.dev]
    seconds: dict[str, list[float]] = {dtype: [] for dtype in DTYPES}
    scores = {}
    for round_ in range(args.rounds):
        for dtype in DTYPES if round_ % 2 == 0 else DTYPES[::-1]:
            nlp = pipelines[dtype]
            lm = nlp.get_pipe("causal_lm")
            docs = [nlp.make_doc(g.text) for g in gold]
            list(lm.pipe(docs[: args.batch_size]))  # warm-up (and loads the LM)
            t0 = time.perf_counter()
            docs = list(lm.pipe(docs, batch_size=args.batch_size))
            seconds[dtype].append(time.perf_counter() - t0)
            docs = list(nlp.get_pipe("ember_ner").pipe(docs))
            scores[dtype] = ents_f(docs, gold)["ents_f"]
            print(dtype, f"{seconds[dtype][-1]:.1f}s", f"F1 {scores[dtype]:.4f}", flush=True)
    tokenizer = pipelines["float32"].get_pipe("causal_lm").model.attrs["extractor"].lm.tokenizer
    pieces = lm_tokens(tokenizer, [g.text for g in gold])
    ms = {dtype: 1000 * statistics.median(s) / pieces for dtype, s in seconds.items()}
    report = {
        "model": str(args.model),
        "dev_sentences": len(gold),
        "lm_tokens": pieces,
        "ms_per_token": {dtype: round(v, 3) for dtype, v in ms.items()},
        "dev_f": {dtype: round(v, 4) for dtype, v in scores.items()},
        "bf16_speedup": round(ms["float32"] / ms["bfloat16"], 3),
        "bf16_f_change": round(scores["bfloat16"] - scores["float32"], 4),
        "commit": git_commit(),
        **machine_info(),
    }
    write_report(report, args.output, ["ms_per_token", "dev_f", "bf16_speedup", "bf16_f_change"])


if __name__ == "__main__":
    main()
