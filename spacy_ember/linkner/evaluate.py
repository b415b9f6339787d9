"""Offline evaluation and calibration of LinkNER routing on gold-annotated docs.

The pipeline runs once without the router; every predicted entity gets its uncertainty
under each method and its gold label ("NONE" when the span is not a gold entity). The
LLM is asked once per entity that any setting routes (answers are cached on disk too),
and routing at any threshold is then simulated exactly as `linkner_router` applies it.
"""

import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field, replace
from itertools import product
from typing import Any

import numpy as np
from spacy.language import Language
from spacy.scorer import PRFScore
from spacy.tokens import Doc, Span

from .answers import Answer
from .fusion import decide
from .labels import NONE_LABEL

# doc index, start char, end char: characters, because the pipeline's tokens need not be
# the gold docs' tokens (CoNLL's "New-York" is one token, spaCy's three).
Key = tuple[int, int, int]


@dataclass
class Predicted:
    """One entity the local pipeline predicted, with what routing needs to know."""

    key: Key
    label: str
    gold: str  # the gold label of this exact span, or NONE
    local: np.ndarray  # (K + 1,) [not an entity, labels...]
    uncertainty: dict[str, float] = field(default_factory=dict)


@dataclass
class Collected:
    """The predicted entities of gold docs, the gold entities, and the predicted docs."""

    predicted: list[Predicted]
    gold: set[tuple[int, int, int, str]]
    docs: list[Doc]


def collect(
    nlp: Language, gold_docs: Sequence[Doc], methods: Iterable[str], router_name: str
) -> Collected:
    """Run the pipeline without its router and score every predicted entity."""
    router = nlp.get_pipe(router_name)
    texts = (d.text for d in gold_docs)
    with nlp.select_pipes(disable=[router_name]):
        docs = list(nlp.pipe(texts, batch_size=64))
    gold = {
        (i, e.start_char, e.end_char, e.label_) for i, d in enumerate(gold_docs) for e in d.ents
    }
    gold_label = {(i, s, e): label for i, s, e, label in gold}
    predicted = []
    methods = list(methods)
    for i, doc in enumerate(docs):
        scores = {m: router.uncertainties(doc, m) for m in methods}  # type: ignore[attr-defined]
        local = router.local_distributions(doc)  # type: ignore[attr-defined]
        for j, ent in enumerate(doc.ents):
            key = (i, ent.start_char, ent.end_char)
            predicted.append(
                Predicted(
                    key,
                    ent.label_,
                    gold_label.get(key, NONE_LABEL),
                    local[j],
                    {m: scores[m][j] for m in methods},
                )
            )
    return Collected(predicted, gold, docs)


def ask(
    nlp: Language, router_name: str, collected: Collected, keys: set[Key]
) -> tuple[dict[Key, Answer], float]:
    """The LLM's answers for the entities `keys`, and the wall time it took, behind a
    progress bar (an evaluation makes hundreds of calls)."""
    from tqdm import tqdm

    router = nlp.get_pipe(router_name)
    client = router.client  # type: ignore[attr-defined]
    if client is None:
        raise RuntimeError("linkner_router has no LLM client; see the warning above.")
    order = sorted(keys)
    spans = [span_of(collected, key) for key in order]
    requests = [router.request(span) for span in spans]  # type: ignore[attr-defined]
    start = time.perf_counter()
    with tqdm(total=len(requests), desc="LLM calls", unit="call", mininterval=30) as bar:
        answers = client.classify(requests, progress=bar.update)
    return dict(zip(order, answers)), time.perf_counter() - start


def span_of(collected: Collected, key: Key) -> Span:
    """The predicted entity `key` (an entity of the collected docs, so always a span)."""
    span = collected.docs[key[0]].char_span(key[1], key[2])
    if span is None:
        raise ValueError(f"No entity at {key} in the collected docs.")
    return span


def routed_keys(
    predicted: list[Predicted],
    method: str,
    threshold: float,
    route_labels: Sequence[str] | None = None,
) -> set[Key]:
    """The entities a router with this method, threshold and route_labels sends."""
    return {
        p.key
        for p in predicted
        if p.uncertainty[method] > threshold and (route_labels is None or p.label in route_labels)
    }


def top_keys(collected: Collected, method: str, fraction: float) -> set[Key]:
    """The `fraction` of entities most uncertain under `method` (routing a fixed share)."""
    ranked = sorted(collected.predicted, key=lambda p: -p.uncertainty[method])
    return {p.key for p in ranked[: int(round(fraction * len(ranked)))]}


def final_spans(
    collected: Collected,
    routed: set[Key],
    answers: dict[Key, Answer],
    mode: str,
    labels: Sequence[str],
    remove_none: bool,
    fuse_weight: float = 0.5,
) -> set[tuple[int, int, int, str]]:
    """The entities after routing `routed` in `mode`: "replace" (the LLM's label), "fuse"
    (mixed with the probes' distribution at `fuse_weight`) or "oracle" (each routed span
    gets its gold label, NONE removing it: what a perfect LLM would reach)."""

    out = set()
    for p in collected.predicted:
        label = p.label
        if p.key in routed:
            answer = answers.get(p.key)
            if mode == "oracle":
                label = p.gold
            elif answer is not None and answer.label is not None:
                weight = None if mode == "replace" else fuse_weight
                label = decide(p.local, answer.label, answer.label_scores, weight, labels)
        if label == NONE_LABEL:
            if mode == "oracle" or remove_none:
                continue
            label = p.label
        out.add((*p.key, label))
    return out


def prf(predicted: set, gold: set) -> tuple[float, float, float]:
    """Precision, recall and F1 of exact matches (spaCy's PRFScore)."""
    tp = len(predicted & gold)
    score = PRFScore(tp=tp, fp=len(predicted) - tp, fn=len(gold) - tp)
    return score.precision, score.recall, score.fscore


FUSE_WEIGHTS = (0.25, 0.5, 0.75)  # LLM weights tried when fusing (None: replace)


@dataclass(frozen=True)
class Setting:
    """How a router routes and combines: what `search` picks on dev and `calibrate`
    writes into the saved linkner_router config."""

    threshold: float = 1.0  # 1.0 routes nothing
    fuse_weight: float | None = None  # None: the LLM's label replaces the probes'
    remove_none: bool = False
    route_labels: tuple[str, ...] | None = None  # None: every label

    def config(self) -> dict[str, Any]:
        labels = None if self.route_labels is None else list(self.route_labels)
        return {**asdict(self), "route_labels": labels}

    def routed(self, collected: Collected, method: str) -> set[Key]:
        return routed_keys(collected.predicted, method, self.threshold, self.route_labels)

    def spans(
        self,
        collected: Collected,
        answers: dict[Key, Answer],
        method: str,
        labels: Sequence[str],
        mode: str | None = None,
    ) -> set[tuple[int, int, int, str]]:
        """The entities after routing with this setting (`mode` "oracle": a perfect LLM)."""
        mode = mode or ("replace" if self.fuse_weight is None else "fuse")
        weight = 0.5 if self.fuse_weight is None else self.fuse_weight
        routed = self.routed(collected, method)
        return final_spans(collected, routed, answers, mode, labels, self.remove_none, weight)


def candidate_thresholds(predicted: list[Predicted], method: str, max_routed: float, steps: int):
    """Thresholds routing 0, 1/steps, ... up to `max_routed` of the entities (1.0 first)."""
    values = np.sort([p.uncertainty[method] for p in predicted])[::-1]
    found = [1.0]
    for fraction in np.linspace(0, max_routed, steps + 1)[1:]:
        n = int(round(fraction * len(values)))
        if 0 < n < len(values):
            found.append(float(values[n]))
        elif n >= len(values) and len(values):
            found.append(float(values[-1]) - 1e-9)
    return sorted(set(found), reverse=True)


def search(
    collected: Collected,
    answers: dict[Key, Answer],
    method: str,
    labels: Sequence[str],
    max_routed: float,
    weights: Sequence[float | None] = (None, *FUSE_WEIGHTS),
    steps: int = 15,
) -> tuple[Setting, float]:
    """The setting with the best F1 on `collected` (dev) and that F1: threshold (at most
    `max_routed` routed), replace or fuse weight, NONE removal, and which predicted
    labels to route (those whose routing alone raises F1). Not routing at all is a
    candidate, so the chosen setting is never worse than the probes on these docs; ties
    go to routing fewer entities."""

    def f1(setting: Setting) -> float:
        return prf(setting.spans(collected, answers, method, labels), collected.gold)[2]

    probe_f = f1(Setting())
    best = (probe_f, 0, Setting())
    for threshold in candidate_thresholds(collected.predicted, method, max_routed, steps):
        for weight, remove_none in product(weights, (False, True)):
            base = Setting(threshold, weight, remove_none)
            keep = tuple(x for x in labels if f1(replace(base, route_labels=(x,))) > probe_f)
            if not keep or threshold >= 1.0:
                continue
            setting = replace(base, route_labels=None if keep == tuple(labels) else keep)
            f, n = f1(setting), len(setting.routed(collected, method))
            if f > best[0] + 1e-12 or (abs(f - best[0]) <= 1e-12 and n < best[1]):
                best = (f, n, setting)
    return best[2], best[0]


def expected_calibration_error(
    confidence: np.ndarray, correct: np.ndarray, bins: int = 10
) -> float:
    """ECE of the confidence (1 - uncertainty) against whether the local entity is right."""
    edges = np.linspace(0, 1, bins + 1)
    ece = 0.0
    for lo, hi in zip(edges[:-1], edges[1:]):
        inside = (confidence > lo) & (confidence <= hi) if lo > 0 else confidence <= hi
        if inside.any():
            ece += inside.mean() * abs(confidence[inside].mean() - correct[inside].mean())
    return float(ece)


def risk_coverage(uncertainty: np.ndarray, correct: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Keeping the most certain entities first: coverage and error rate among those kept."""
    order = np.argsort(uncertainty, kind="stable")
    errors = np.cumsum(1 - correct[order])
    kept = np.arange(1, len(order) + 1)
    return kept / len(order), errors / kept
