"""What `calibrate` and `evaluate-linkner` compute, apart from their command lines.

Per uncertainty method: the threshold is calibrated on dev (best F1), then test is
scored at it and at a fixed routed fraction; the LLM is asked once per entity any
setting routes. See evaluate.py for the building blocks.
"""

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np
from spacy.language import Language
from spacy.tokens import Doc, DocBin

from .answers import Answer, ClientStats
from .evaluate import (
    Collected,
    Key,
    ask,
    calibrate,
    collect,
    expected_calibration_error,
    final_spans,
    prf,
    risk_coverage,
    routed_keys,
    top_keys,
)
from .labels import NONE_LABEL
from .uncertainty import METHODS

ROUTER = "linkner_router"
OBJECTIVES = ("f1", "fraction")
USAGE = ("calls", "requests", "cache_hits", "prompt_tokens")  # ClientStats fields reported


def gold_docs(nlp: Language, path: str | Path, limit: int | None = None) -> list[Doc]:
    """The first `limit` docs (all with None) of a .spacy file."""
    return list(islice(DocBin().from_disk(path).get_docs(nlp.vocab), limit))


def methods_for(nlp: Language, evidential: bool) -> list[str]:
    """The uncertainty methods to evaluate on `nlp`: "evidential" alone (if its ember_ner
    has a Dirichlet typing head), or all the others."""
    ner: Any = nlp.get_pipe("ember_ner")
    has_dirichlet = ner.cfg.get("typing_loss") == "evidential"
    usable = [m for m in METHODS if m != "evidential" or has_dirichlet]
    return [m for m in usable if (m == "evidential") == evidential]


@dataclass
class Calibration:
    """The threshold chosen on dev, its dev F1 (objective "f1"), how many it routes."""

    threshold: float
    dev_f: float | None
    routed: int
    entities: int


def calibrate_router(
    nlp: Language, dev_docs: Sequence[Doc], method: str, objective: str, max_routed: float
) -> Calibration:
    """The threshold routing at most `max_routed` of the dev entities: the one with the
    best dev F1 (objective "f1"), or the one routing exactly that share ("fraction")."""
    if objective not in OBJECTIVES:
        raise ValueError(f"objective must be one of {OBJECTIVES}, not {objective!r}")
    collected = collect(nlp, dev_docs, [method], ROUTER)
    dev_f: float | None = None
    if objective == "fraction":
        values = [p.uncertainty[method] for p in collected.predicted]
        threshold = float(np.quantile(values, 1 - max_routed)) if values else 1.0
        ask(nlp, ROUTER, collected, routed_keys(collected.predicted, method, threshold))
    else:
        answers, _ = ask(nlp, ROUTER, collected, top_keys(collected, method, max_routed))
        router: Any = nlp.get_pipe(ROUTER)
        labels, remove_none = router.ner.labels, router.remove_none
        threshold, dev_f = calibrate(
            collected, answers, method, labels, remove_none, max_routed=max_routed
        )
    routed = len(routed_keys(collected.predicted, method, threshold))
    return Calibration(threshold, dev_f, routed, len(collected.predicted))


@dataclass
class Evaluation:
    """Per method its scores; risk-coverage curves; what the LLM calls cost."""

    results: dict[str, dict[str, Any]] = field(default_factory=dict)
    curves: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    usage: dict[str, int] = field(default_factory=lambda: dict.fromkeys(USAGE, 0))
    failures: dict[str, int] = field(default_factory=dict)

    def add_usage(self, stats: ClientStats) -> None:
        for key in USAGE:
            self.usage[key] += getattr(stats, key)
        for kind, n in stats.failures.items():
            self.failures[kind] = self.failures.get(kind, 0) + n


def evaluate(
    pipelines: Iterable[tuple[Language, bool]],
    dev_path: str | Path,
    test_path: str | Path,
    *,
    dev_limit: int | None,
    limit: int | None,
    max_routed: float,
    fixed_fraction: float,
    fuse_weight: float,
) -> Evaluation:
    """Every method of each (pipeline, evidential) pair (see `methods_for`), calibrated
    on dev and scored on test, in one `Evaluation`."""
    out = Evaluation()
    for nlp, evidential in pipelines:
        methods = methods_for(nlp, evidential)
        gold = gold_docs(nlp, dev_path, dev_limit), gold_docs(nlp, test_path, limit)
        found, test = _evaluate_methods(
            nlp, methods, *gold, max_routed, fixed_fraction, fuse_weight
        )
        out.results.update(found)
        correct = np.array([float(p.label == p.gold) for p in test.predicted])
        for m in methods:
            u = np.array([p.uncertainty[m] for p in test.predicted])
            out.curves[m] = risk_coverage(u, correct)
        out.add_usage(nlp.get_pipe(ROUTER).client.stats)  # type: ignore[attr-defined]
    return out


def _evaluate_methods(
    nlp: Language,
    methods: Sequence[str],
    dev_docs: Sequence[Doc],
    test_docs: Sequence[Doc],
    max_routed: float,
    fixed_fraction: float,
    fuse_weight: float,
) -> tuple[dict[str, dict[str, Any]], Collected]:
    """Calibrate each method on dev, then score it on test; the LLM sees each entity once."""
    router: Any = nlp.get_pipe(ROUTER)
    labels, remove_none = router.ner.labels, router.remove_none
    dev = collect(nlp, dev_docs, methods, ROUTER)
    dev_answers, _ = ask(
        nlp, ROUTER, dev, set().union(*(top_keys(dev, m, max_routed) for m in methods))
    )
    chosen = {
        m: calibrate(dev, dev_answers, m, labels, remove_none, max_routed=max_routed)[0]
        for m in methods
    }
    test = collect(nlp, test_docs, methods, ROUTER)
    need = set().union(
        *(routed_keys(test.predicted, m, chosen[m]) for m in methods),
        *(top_keys(test, m, fixed_fraction) for m in methods),
    )
    answers, _ = ask(nlp, ROUTER, test, need)
    settings = (fixed_fraction, labels, remove_none, fuse_weight)
    found = {m: method_scores(test, answers, m, chosen[m], *settings) for m in methods}
    for m in methods:  # replace vs fuse, compared on dev too
        routed = routed_keys(dev.predicted, m, chosen[m])
        for mode in ("replace", "fuse"):
            spans = final_spans(dev, routed, dev_answers, mode, labels, remove_none, fuse_weight)
            found[m][f"dev_{mode}_f"] = prf(spans, dev.gold)[2]
        found[m]["dev_probe_f"] = prf(
            final_spans(dev, set(), {}, "replace", labels, remove_none), dev.gold
        )[2]
    return found, test


def method_scores(
    test: Collected,
    answers: dict[Key, Answer],
    method: str,
    threshold: float,
    fixed: float,
    labels: Sequence[str],
    remove_none: bool,
    fuse_weight: float,
) -> dict[str, Any]:
    """One method's test scores at its threshold and at the fixed routed fraction."""

    def f1(routed: Iterable[Key], mode: str) -> float:
        spans = final_spans(test, set(routed), answers, mode, labels, remove_none, fuse_weight)
        return prf(spans, test.gold)[2]

    def accuracy(routed: list[Key]) -> float | None:
        got = [answers[k].label for k in routed if answers.get(k) and answers[k].label]
        gold = {p.key: p.gold for p in test.predicted}
        right = [label == gold[k] for k, label in zip(routed, got)]
        return sum(right) / len(right) if right else None

    routed = sorted(routed_keys(test.predicted, method, threshold))
    top = sorted(top_keys(test, method, fixed))
    u = np.array([p.uncertainty[method] for p in test.predicted])
    correct = np.array([float(p.label == p.gold) for p in test.predicted])
    n = max(len(test.predicted), 1)
    return {
        "threshold": threshold,
        "probe_f": f1([], "replace"),
        "routed_fraction": len(routed) / n,
        "routed_llm_accuracy": accuracy(routed),
        "replace_f": f1(routed, "replace"),
        "fuse_f": f1(routed, "fuse"),
        "oracle_f": f1(routed, "oracle"),
        "ece": expected_calibration_error(1 - u, correct),
        "at_fixed_fraction": {
            "fraction": len(top) / n,
            "llm_accuracy": accuracy(top),
            "replace_f": f1(top, "replace"),
            "fuse_f": f1(top, "fuse"),
            "oracle_f": f1(top, "oracle"),
        },
        "non_entities_among_predicted": _share_not_entities(test),
    }


def _share_not_entities(collected: Collected) -> float:
    """The share of predicted entities that are no gold entity."""
    if not collected.predicted:
        return 0.0
    return float(np.mean([p.gold == NONE_LABEL for p in collected.predicted]))
