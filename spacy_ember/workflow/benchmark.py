"""The workflow's throughput benchmark: what `ember_ner` adds to the LM forward pass."""

import statistics
import time
from collections.abc import Sequence

from spacy.language import Language

from ..pipeline.causal_lm import CausalLM


def pipeline_throughput(
    nlp: Language,
    texts: Sequence[str],
    *,
    component: str = "ember_ner",
    repeats: int = 3,
    batch_size: int = 64,
) -> dict:
    """Words/s of the pipeline with and without `component`, interleaved in one run (the
    order alternates per round).

    The LM runs every time (its feature cache is off, and restored after), so the ratio is what
    the component costs on top of the LM forward pass. Medians over `repeats` rounds.
    """
    extractor = next(pipe for _, pipe in nlp.pipeline if isinstance(pipe, CausalLM)).extractor
    cache, extractor.cache = extractor.cache, None
    try:
        list(nlp.pipe(texts[:batch_size], batch_size=batch_size))  # load the LM, warm up
        n_words = sum(len(nlp.make_doc(text)) for text in texts)
        seconds: dict[str, list[float]] = {"with": [], "without": []}
        for round_ in range(repeats):
            # Alternate which goes first: the second run of a round finds the caches and
            # thread pools the first one warmed, which would favour one side every time.
            for mode in sorted(seconds, reverse=bool(round_ % 2)):
                disabled = [component] if mode == "without" else []
                with nlp.select_pipes(disable=disabled):
                    start = time.perf_counter()
                    for _doc in nlp.pipe(texts, batch_size=batch_size):
                        pass
                    seconds[mode].append(time.perf_counter() - start)
    finally:
        extractor.cache = cache
    median = {mode: statistics.median(values) for mode, values in seconds.items()}
    return {
        "n_texts": len(texts),
        "n_words": n_words,
        "batch_size": batch_size,
        "repeats": repeats,
        "seconds": seconds,
        f"words_per_s_with_{component}": n_words / median["with"],
        f"words_per_s_without_{component}": n_words / median["without"],
        "throughput_ratio": median["without"] / median["with"],
        "overhead": median["with"] / median["without"] - 1,
    }
