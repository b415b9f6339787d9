"""Per-token latency of generation with and without EMBER's streaming NER.

Paths, run interleaved (order rotated every repetition) on the same prompts, greedy,
with exactly --new-tokens tokens each:
  sdpa         plain `generate`, SDPA attention (the fastest plain path)
  eager        plain `generate`, eager attention (what returns attention weights)
  ember_sdpa   plain `generate` with spacy-ember's attention registered, not recording
               (the path streaming is built on)
  ember        streaming NER: generate_with_entities (hooks, band recording when a span
               may be open, probes, decoding, closing at the end)
  ember_iter   the same through the `stream()` iterator (background thread + queue)
  rerun_ner    the paper's baseline: plain generation, and after every new token the
               whole pipeline (causal_lm + ember_ner) re-run on the text generated so far

    python benchmarks/streaming_latency.py training/conll2003/model-tuned
"""

import argparse
import json
import os
import statistics
import subprocess
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import spacy  # noqa: E402
import torch  # noqa: E402
from transformers.generation.streamers import BaseStreamer  # noqa: E402

from spacy_ember.attention import ATTN_IMPLEMENTATION  # noqa: E402
from spacy_ember.streaming import (  # noqa: E402
    GenerationSettings,
    generate_with_entities,
    prompt_ids,
    stream,
)

PROMPTS = [
    "Write a news sentence about a German chancellor.",
    "Tell me about Paris.",
    "Who founded Microsoft and where is it based?",
    "Describe a football match between Manchester United and Real Madrid.",
    "Write about the United Nations and its Secretary-General.",
]
RATIOS = [
    ("overhead_vs_same_attention", "ember", "ember_sdpa"),
    ("overhead_vs_sdpa", "ember", "sdpa"),
    ("overhead_iterator_vs_sdpa", "ember_iter", "sdpa"),
    ("eager_vs_sdpa", "eager", "sdpa"),
    ("rerun_ner_vs_sdpa", "rerun_ner", "sdpa"),
]
RESULTS = Path(__file__).parent / "results" / "streaming_latency.json"


class RerunNER(BaseStreamer):
    """After each new token, run the whole pipeline on the text generated so far."""

    def __init__(self, nlp, tokenizer) -> None:
        self.nlp, self.tokenizer = nlp, tokenizer
        self.ids: list[int] = []
        self.prompt_seen = False

    def put(self, value) -> None:
        if not self.prompt_seen:
            self.prompt_seen = True
            return
        self.ids.extend(int(i) for i in value.reshape(-1))
        self.nlp(self.tokenizer.decode(self.ids, skip_special_tokens=True))

    def end(self) -> None:
        pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("model", type=Path, help="trained pipeline (causal_lm + ember_ner)")
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--output", type=Path, default=RESULTS)
    parser.add_argument(
        "--paths", nargs="+", default=None, help="a subset of the paths, for quick checks"
    )
    args = parser.parse_args()

    nlp = spacy.load(args.model)
    extractor = nlp.get_pipe("causal_lm").extractor
    extractor.cache = None  # the re-run baseline must run the LM, not read a cache
    lm = extractor.lm
    model = lm.model
    n = args.new_tokens
    fixed = {"max_new_tokens": n, "min_new_tokens": n}
    inputs = [torch.tensor([prompt_ids(nlp, p, None, "ember_ner")]) for p in PROMPTS]
    greedy = {"do_sample": False, "temperature": None, "top_p": None, "top_k": None}
    pad = extractor.pad_token_id

    def plain(impl: str, streamer=None):
        def run() -> None:
            model.set_attn_implementation(impl)
            try:
                for ids in inputs:
                    model.generate(
                        ids,
                        attention_mask=torch.ones_like(ids),
                        pad_token_id=pad,
                        streamer=streamer() if streamer else None,
                        **greedy,
                        **fixed,
                    )
            finally:
                model.set_attn_implementation(ATTN_IMPLEMENTATION)

        return run

    settings = GenerationSettings(max_new_tokens=n)

    def ember() -> None:
        for prompt in PROMPTS:
            generate_with_entities(nlp, prompt, lambda e: None, settings, min_new_tokens=n)

    def ember_iter() -> None:
        for prompt in PROMPTS:
            for _ in stream(nlp, prompt, max_new_tokens=n, min_new_tokens=n):
                pass

    paths = {
        "sdpa": plain("sdpa"),
        "eager": plain("eager"),
        "ember_sdpa": plain(ATTN_IMPLEMENTATION),
        "ember": ember,
        "ember_iter": ember_iter,
        # Generation through spacy-ember's attention (SDPA when not recording), because the
        # pipeline re-run inside needs it to record the attention band.
        "rerun_ner": plain(ATTN_IMPLEMENTATION, lambda: RerunNER(nlp, lm.tokenizer)),
    }
    if args.paths:
        paths = {name: paths[name] for name in args.paths}
    entities = []
    for prompt in PROMPTS:  # warm-up, and the entities found, for the record
        doc = generate_with_entities(nlp, prompt, lambda e: None, settings, min_new_tokens=n)
        entities.append([(e.text, e.label_) for e in doc.ents])
    for run in paths.values():
        run()
    per_token: dict[str, list[float]] = {name: [] for name in paths}
    names = list(paths)
    for rep in range(args.repeats):
        order = names[rep % len(names) :] + names[: rep % len(names)]
        for name in order:
            start = time.perf_counter()
            paths[name]()
            per_token[name].append(1000 * (time.perf_counter() - start) / (n * len(PROMPTS)))
        done = ", ".join(f"{k} {v[-1]:.1f}" for k, v in per_token.items())
        print(f"repetition {rep + 1}: {done}", flush=True)
    median = {name: statistics.median(v) for name, v in per_token.items()}
    result = {
        "command": "python benchmarks/streaming_latency.py " + str(args.model),
        "commit": subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True
        ).stdout.strip(),
        "model": lm.name,
        "torch_threads": torch.get_num_threads(),
        "prompts": PROMPTS,
        "new_tokens_per_prompt": n,
        "repeats": args.repeats,
        "ms_per_token_median": median,
        "ms_per_token_all": per_token,
        **{key: median[a] / median[b] - 1 for key, a, b in RATIOS if a in median and b in median},
        "entities_found": entities,
    }
    print("\n| path | ms/token (median) | vs sdpa |\n|---|---|---|")
    for name, value in median.items():
        print(f"| {name} | {value:.2f} | {100 * (value / median['sdpa'] - 1):+.1f}% |")
    for key, *_ in RATIOS:
        if key in result:
            print(f"{key} {100 * result[key]:+.2f}%")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2), encoding="utf8")


if __name__ == "__main__":
    main()
