"""Per-token latency of generation with and without EMBER's streaming NER.

Paths, run interleaved (order rotated every repetition) on the same prompts, greedy, so
every path generates the same tokens: each answer runs to its end-of-sequence token or
--new-tokens, whichever comes first (--fixed-length: exactly --new-tokens, EOS
suppressed, so every text is cut by the length limit):
  sdpa         plain `generate`, SDPA attention (the fastest plain path)
  eager        plain `generate`, eager attention (what returns attention weights)
  ember_sdpa   plain `generate` with spacy-ember's attention registered, not recording
               (the path streaming is built on)
  ember        streaming NER: generate_with_entities (hooks, band recording when a span
               may be open, probes, decoding, closing at the end)
  ember_iter   the same through the `stream()` iterator (background thread + queue)
  rerun_ner    the paper's baseline: plain generation, and after every new token the
               whole pipeline (causal_lm + ember_ner) re-run on the text generated so far

Ratios are paired: each prompt runs through every path back to back, and the median
over all (repetition, prompt) pairs of time(a) / time(b) - 1 is reported, so host speed
drifts (large on this VM) cancel. Two overheads are reported for the ember path:
  total           its whole time per generated token, the closing pass included (one
                  more decoder pass after EOS when a span may still be open);
  between tokens  without that closing pass: the latency a reader sees between tokens
                  (the closing pass delays only the final "end" event).
The ember path is also instrumented: the time spent in spacy-ember's own code per token
(`overhead_instrumented` = that time over the rest of the ember path's time), which
host speed drifts cannot blur.

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

from spacy_ember.generate import streaming  # noqa: E402
from spacy_ember.generate.request import prompt_ids  # noqa: E402
from spacy_ember.generate.settings import GenerationSettings  # noqa: E402
from spacy_ember.generate.streaming import generate_with_entities, stream  # noqa: E402
from spacy_ember.lm.attention import ATTN_IMPLEMENTATION  # noqa: E402

PROMPTS = [
    "Write one news sentence about a German chancellor.",
    "In one sentence, what is Paris famous for?",
    "In one sentence: who founded Microsoft and where is it based?",
    "Write one sentence about a football match between Manchester United and Real Madrid.",
    "In one sentence, what does the Secretary-General of the United Nations do?",
]
RATIOS = [
    ("overhead_vs_same_attention", "ember", "ember_sdpa"),
    ("overhead_vs_sdpa", "ember", "sdpa"),
    ("overhead_between_tokens_vs_same_attention", "ember_between_tokens", "ember_sdpa"),
    ("overhead_between_tokens_vs_sdpa", "ember_between_tokens", "sdpa"),
    ("overhead_iterator_vs_sdpa", "ember_iter", "sdpa"),
    ("same_attention_vs_sdpa", "ember_sdpa", "sdpa"),
    ("eager_vs_sdpa", "eager", "sdpa"),
    ("rerun_ner_vs_sdpa", "rerun_ner", "sdpa"),
]
RESULTS = Path(__file__).parent / "results" / "streaming_latency.json"


class EmberClock:
    """Time spent in spacy-ember's own code while streaming (setting up a generation,
    reading each step's features, probes, decoding, events, and the closing pass), as a
    drift-free complement to the wall-clock ratios: the LM's own forward passes are
    excluded."""

    TIMED = (
        (streaming, "prompt_ids"),
        (streaming, "check_request"),
        (streaming._StreamRun, "__init__"),
        (streaming._EntityStreamer, "put"),
        (streaming._StreamRun, "finish"),
    )

    def __init__(self) -> None:
        self.seconds = 0.0
        self.closing = 0.0
        for owner, name in self.TIMED:
            setattr(owner, name, self._timed(getattr(owner, name), name == "finish"))

    def _timed(self, method, closing: bool):
        def timed(*args, **kwargs):
            start = time.perf_counter()
            try:
                return method(*args, **kwargs)
            finally:
                spent = time.perf_counter() - start
                self.seconds += spent
                self.closing += spent if closing else 0.0

        return timed


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
    parser.add_argument(
        "--fixed-length", action="store_true", help="suppress EOS: exactly --new-tokens each"
    )
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument(
        "--rerun-repeats",
        type=int,
        default=3,
        help="repetitions of the (slow) re-run baseline, the first ones",
    )
    parser.add_argument("--output", type=Path, default=None, help=f"default: {RESULTS}")
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
    fixed = {"max_new_tokens": n, "min_new_tokens": n if args.fixed_length else None}
    inputs = [torch.tensor([prompt_ids(nlp, p, None, "ember_ner")]) for p in PROMPTS]
    greedy = {"do_sample": False, "temperature": None, "top_p": None, "top_k": None}
    pad = extractor.pad_token_id

    def plain(impl: str, streamer=None):
        def run(i: int) -> None:
            model.set_attn_implementation(impl)
            try:
                model.generate(
                    inputs[i],
                    attention_mask=torch.ones_like(inputs[i]),
                    pad_token_id=pad,
                    streamer=streamer() if streamer else None,
                    **greedy,
                    **fixed,
                )
            finally:
                model.set_attn_implementation(ATTN_IMPLEMENTATION)

        return run

    settings = GenerationSettings(max_new_tokens=n)
    length = {"min_new_tokens": fixed["min_new_tokens"]}

    clock = EmberClock()

    def ember(i: int) -> None:
        generate_with_entities(nlp, PROMPTS[i], lambda e: None, settings, **length)

    def ember_iter(i: int) -> None:
        for _ in stream(nlp, PROMPTS[i], max_new_tokens=n, **length):
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
    entities, n_tokens = [], 0
    for prompt, ids in zip(PROMPTS, inputs):  # warm-up, and what is generated, for the record
        events: list = []
        doc = generate_with_entities(nlp, prompt, events.append, settings, **length)
        tokens = [e.token_id for e in events if e.kind == "token"]
        entities.append({"text": doc.text, "ents": [(e.text, e.label_) for e in doc.ents]})
        out = model.generate(
            ids, attention_mask=torch.ones_like(ids), pad_token_id=pad, **greedy, **fixed
        )
        plain_tokens = out[0, ids.shape[1] :].tolist()
        if plain_tokens[: len(tokens)] != tokens:
            raise RuntimeError(
                f"Streaming generated other tokens than plain generate for {prompt!r}"
            )
        n_tokens += len(plain_tokens)  # the EOS included: it costs a forward pass too
    for run in paths.values():
        run(0)
    # Interleaved prompt by prompt, the order of the paths rotating, so that the host's
    # speed drifts hit every path alike; ratios are paired per (repetition, prompt).
    n_prompts = len(PROMPTS)
    seconds: dict[str, list[list[float]]] = {name: [] for name in paths}
    code = [[0.0] * n_prompts for _ in range(args.repeats)]  # spacy-ember's code, per run
    closing = [[0.0] * n_prompts for _ in range(args.repeats)]  # of which the closing pass
    names = list(paths)
    for rep in range(args.repeats):
        for name in names:
            if name != "rerun_ner" or rep < args.rerun_repeats:
                seconds[name].append([0.0] * n_prompts)
        for i in range(n_prompts):
            shift = (rep * n_prompts + i) % len(names)
            for name in names[shift:] + names[:shift]:
                if len(seconds[name]) <= rep:
                    continue
                in_code, in_closing = clock.seconds, clock.closing
                start = time.perf_counter()
                paths[name](i)
                seconds[name][rep][i] = time.perf_counter() - start
                if name == "ember":
                    code[rep][i] = clock.seconds - in_code
                    closing[rep][i] = clock.closing - in_closing
        done = ", ".join(
            f"{k} {1000 * sum(v[rep]) / n_tokens:.1f}" for k, v in seconds.items() if len(v) > rep
        )
        print(f"repetition {rep + 1} (ms/token): {done}", flush=True)
    if "ember" in seconds:
        seconds["ember_between_tokens"] = [
            [t - c for t, c in zip(times, closes)]
            for times, closes in zip(seconds["ember"], closing)
        ]
    per_token = {name: [1000 * sum(r) / n_tokens for r in v] for name, v in seconds.items()}
    median = {name: statistics.median(v) for name, v in per_token.items()}

    def paired(a: str, b: str) -> float:
        """Median over (repetition, prompt) pairs of time(a) / time(b) - 1."""
        pairs = [
            x / y - 1 for row_a, row_b in zip(seconds[a], seconds[b]) for x, y in zip(row_a, row_b)
        ]
        return statistics.median(pairs)

    ratios = {key: paired(a, b) for key, a, b in RATIOS if a in seconds and b in seconds}
    flat_code = [c for row in code for c in row]
    flat_closing = [c for row in closing for c in row]
    instrumented = {}
    if "ember" in seconds:
        flat_total = [t for row in seconds["ember"] for t in row]
        # The LM's share of the ember path is its time minus spacy-ember's code.
        instrumented = {
            "overhead_instrumented": sum(flat_code) / (sum(flat_total) - sum(flat_code)),
            "overhead_instrumented_between_tokens": (sum(flat_code) - sum(flat_closing))
            / (sum(flat_total) - sum(flat_code)),
            "ember_code_ms_per_token": 1000 * sum(flat_code) / (n_tokens * args.repeats),
            "closing_pass_ms_per_token": 1000 * sum(flat_closing) / (n_tokens * args.repeats),
            "closing_passes_per_repetition": sum(c > 0.01 for c in flat_closing) / args.repeats,
        }
    result = {
        "command": "python benchmarks/streaming_latency.py "
        + str(args.model)
        + (" --fixed-length" if args.fixed_length else ""),
        "commit": subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True
        ).stdout.strip(),
        "model": lm.name,
        "torch_threads": torch.get_num_threads(),
        "prompts": PROMPTS,
        "max_new_tokens": n,
        "fixed_length": args.fixed_length,
        "generated_tokens": n_tokens,
        "repeats": args.repeats,
        "rerun_repeats": min(args.rerun_repeats, args.repeats),
        "ms_per_token_median": median,
        "ms_per_token_all": per_token,
        **ratios,
        **instrumented,
        "generations": entities,
    }
    print("\n| path | ms/token (median) |\n|---|---|")
    for name, value in median.items():
        print(f"| {name} | {value:.2f} |")
    extra = ["overhead_instrumented", "overhead_instrumented_between_tokens"]
    for key in [k for k, *_ in RATIOS] + extra:
        if result.get(key) is not None:
            print(f"{key} {100 * result[key]:+.2f}%")
    if instrumented:
        print(
            f"spacy-ember code while streaming: {result['ember_code_ms_per_token']:.3f} "
            f"ms/token, of which the closing pass {result['closing_pass_ms_per_token']:.3f} "
            f"({result['closing_passes_per_repetition']:.1f} per {len(PROMPTS)} generations)"
        )
    output = args.output or RESULTS.with_stem(
        RESULTS.stem + ("_fixed_length" if args.fixed_length else "")
    )
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(result, indent=2), encoding="utf8")


if __name__ == "__main__":
    main()
