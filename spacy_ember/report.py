"""Markdown tables of `spacy evaluate` metrics and a throughput benchmark for the project."""

import json
import statistics
import time
from collections.abc import Sequence
from pathlib import Path

from spacy.language import Language


def metrics_table(paths: Sequence[Path]) -> str:
    """One row per `spacy evaluate` JSON file: entity P/R/F and F per type, in percent."""
    rows = [(Path(p).stem, json.loads(Path(p).read_text(encoding="utf8"))) for p in paths]
    labels = sorted({label for _, m in rows for label in m.get("ents_per_type") or {}})
    lines = [
        "| " + " | ".join(["run", "P", "R", "F", *(f"{label} F" for label in labels)]) + " |",
        "|" + "---|" * (4 + len(labels)),
    ]
    for name, m in rows:
        per_type = m.get("ents_per_type") or {}
        cells = [f"{100 * m[k]:.2f}" for k in ("ents_p", "ents_r", "ents_f")]
        cells += [
            f"{100 * per_type[label]['f']:.2f}" if label in per_type else "-" for label in labels
        ]
        lines.append("| " + " | ".join([name, *cells]) + " |")
    return "\n".join(lines) + "\n"


def pipeline_throughput(
    nlp: Language,
    texts: Sequence[str],
    *,
    component: str = "ember_ner",
    repeats: int = 3,
    batch_size: int = 64,
) -> dict:
    """Words/s of the pipeline with and without `component`, interleaved in one run.

    The LM runs every time (its feature cache is switched off), so the ratio is what
    the component costs on top of the LM forward pass. Medians over `repeats` rounds.
    """
    lm = next(pipe for _, pipe in nlp.pipeline if hasattr(pipe, "extractor"))
    lm.extractor.cache = None
    list(nlp.pipe(texts[:batch_size], batch_size=batch_size))  # load the LM, warm up
    n_words = sum(len(nlp.make_doc(text)) for text in texts)
    seconds: dict[str, list[float]] = {"with": [], "without": []}
    for _ in range(repeats):
        for mode in seconds:
            disabled = [component] if mode == "without" else []
            with nlp.select_pipes(disable=disabled):
                start = time.perf_counter()
                for _doc in nlp.pipe(texts, batch_size=batch_size):
                    pass
                seconds[mode].append(time.perf_counter() - start)
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
