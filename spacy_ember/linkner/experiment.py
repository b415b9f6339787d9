"""What `calibrate` and `evaluate-linkner` compute, apart from their command lines.

Per uncertainty method: the routing setting (threshold, replace or fuse, NONE removal,
labels routed) is chosen on dev (best F1), then test is scored at it; the LLM is asked
once per entity any setting routes. See evaluate.py for the building blocks.
"""

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np
from spacy.language import Language
from spacy.tokens import Doc, DocBin

from .answers import Answer, ClientStats
from .evaluate import (
    FUSE_WEIGHTS,
    Collected,
    Key,
    Predicted,
    Setting,
    ask,
    collect,
    expected_calibration_error,
    prf,
    risk_coverage,
    search,
    span_of,
    top_keys,
)
from .labels import NONE_LABEL
from .prompt import sample_examples
from .retrieval import normal_form, span_vector
from .uncertainty import METHODS

ROUTER = "linkner_router"
USAGE = ("calls", "requests", "cache_hits", "prompt_tokens", "completion_tokens")
PROMPTS = ("zero_shot", "random_k_shot", "retrieved_k_shot", "retrieval_majority")


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
    """The setting chosen on dev, its dev F1 and the probes', how many it routes."""

    setting: Setting
    dev_f: float
    dev_probe_f: float
    routed: int
    entities: int


def calibrate_router(
    nlp: Language, dev_docs: Sequence[Doc], method: str, max_routed: float
) -> Calibration:
    """The dev-best setting (see evaluate.search) for routing by `method`, the LLM asked
    about the `max_routed` most uncertain dev entities."""
    collected = collect(nlp, dev_docs, [method], ROUTER)
    answers, _ = ask(nlp, ROUTER, collected, top_keys(collected, method, max_routed))
    labels = _router(nlp).ner.labels
    setting, dev_f = search(collected, answers, method, labels, max_routed)
    probe_f = prf(Setting().spans(collected, answers, method, labels), collected.gold)[2]
    routed = len(setting.routed(collected, method))
    return Calibration(setting, dev_f, probe_f, routed, len(collected.predicted))


@dataclass
class Evaluation:
    """Per method its scores; the dev-chosen best; prompt comparison; LLM cost."""

    results: dict[str, dict[str, Any]] = field(default_factory=dict)
    best: dict[str, Any] = field(default_factory=dict)
    dev: dict[str, Any] = field(default_factory=dict)
    curves: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    usage: dict[str, int] = field(default_factory=lambda: dict.fromkeys(USAGE, 0))
    failures: dict[str, int] = field(default_factory=dict)
    llm_seconds: float = 0.0

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
    compare: int,
) -> Evaluation:
    """Every method of each (pipeline, evidential) pair (see `methods_for`): its setting
    chosen on dev, scored on test; the best method by dev F1; on `compare` routed dev
    entities, the prompts compared (the first pipeline's)."""
    out = Evaluation()
    for nlp, evidential in pipelines:
        methods = methods_for(nlp, evidential)
        dev = collect(nlp, gold_docs(nlp, dev_path, dev_limit), methods, ROUTER)
        asked = set().union(*(top_keys(dev, m, max_routed) for m in methods))
        dev_answers, seconds = ask(nlp, ROUTER, dev, asked)
        out.llm_seconds += seconds
        if not out.dev:
            out.dev = compare_prompts(nlp, dev, dev_answers, compare)
        chosen = {
            m: _choose(dev, dev_answers, m, _router(nlp).ner.labels, max_routed) for m in methods
        }
        test = collect(nlp, gold_docs(nlp, test_path, limit), methods, ROUTER)
        need = set().union(*(s.routed(test, m) for m in methods for s in chosen[m].values()))
        answers, seconds = ask(nlp, ROUTER, test, need)
        out.llm_seconds += seconds
        labels = _router(nlp).ner.labels
        for m in methods:
            out.results[m] = method_scores(dev, dev_answers, test, answers, m, chosen[m], labels)
            u = np.array([p.uncertainty[m] for p in test.predicted])
            out.curves[m] = risk_coverage(u, _correct(test))
        out.add_usage(_router(nlp).client.stats)
    best = max(out.results, key=lambda m: out.results[m]["dev_final_f"])
    r = out.results[best]
    out.best = {
        "method": best,
        "probe_f": r["probe_f"],
        "final_f": r["final_f"],
        "gain": r["final_f"] - r["probe_f"],
        "dev_probe_f": r["dev_probe_f"],
        "dev_final_f": r["dev_final_f"],
        "setting": r["setting"],
    }
    return out


def _router(nlp: Language) -> Any:
    return nlp.get_pipe(ROUTER)


def _correct(collected: Collected) -> np.ndarray:
    return np.array([float(p.label == p.gold) for p in collected.predicted])


def _choose(
    dev: Collected,
    answers: dict[Key, Answer],
    method: str,
    labels: Sequence[str],
    max_routed: float,
) -> dict[str, Setting]:
    """The dev-best setting replacing labels, fusing, and overall ("final")."""
    replace_, f_replace = search(dev, answers, method, labels, max_routed, weights=(None,))
    fuse, f_fuse = search(dev, answers, method, labels, max_routed, weights=FUSE_WEIGHTS)
    return {"replace": replace_, "fuse": fuse, "final": fuse if f_fuse > f_replace else replace_}


def method_scores(
    dev: Collected,
    dev_answers: dict[Key, Answer],
    test: Collected,
    answers: dict[Key, Answer],
    method: str,
    chosen: dict[str, Setting],
    labels: Sequence[str],
) -> dict[str, Any]:
    """One method's scores, dev and test, at its dev-chosen settings."""

    def f1(collected: Collected, got: dict[Key, Answer], setting: Setting, mode=None) -> float:
        return prf(setting.spans(collected, got, method, labels, mode), collected.gold)[2]

    final = chosen["final"]
    routed = sorted(final.routed(test, method))
    n = max(len(test.predicted), 1)
    accuracy = routed_accuracy(test, answers, routed)
    return {
        "threshold": final.threshold,
        "setting": final.config(),
        "probe_f": f1(test, answers, Setting()),
        "final_f": f1(test, answers, final),
        "replace_f": f1(test, answers, chosen["replace"]),
        "fuse_f": f1(test, answers, chosen["fuse"]),
        "oracle_f": f1(test, answers, final, "oracle"),
        "routed": len(routed),
        "routed_fraction": len(routed) / n,
        "routed_llm_accuracy": accuracy["llm"],
        "routed_probe_accuracy": accuracy["probe"],
        "replace_setting": chosen["replace"].config(),
        "fuse_setting": chosen["fuse"].config(),
        "dev_probe_f": f1(dev, dev_answers, Setting()),
        "dev_replace_f": f1(dev, dev_answers, chosen["replace"]),
        "dev_fuse_f": f1(dev, dev_answers, chosen["fuse"]),
        "dev_final_f": f1(dev, dev_answers, final),
        "ece": expected_calibration_error(
            1 - np.array([p.uncertainty[method] for p in test.predicted]), _correct(test)
        ),
        "non_entities_among_predicted": _share_not_entities(test),
    }


def routed_accuracy(
    collected: Collected, answers: dict[Key, Answer], keys: Iterable[Key]
) -> dict[str, Any]:
    """On these entities: how often the LLM's answer and the probes' label are the gold
    label (NONE for a span that is no entity), over those the LLM answered."""
    by_key = {p.key: p for p in collected.predicted}
    pairs = [(answers[k].label, by_key[k]) for k in keys if k in answers and answers[k].label]
    if not pairs:
        return {"n": 0, "llm": None, "probe": None}
    return {
        "n": len(pairs),
        "llm": sum(label == p.gold for label, p in pairs) / len(pairs),
        "probe": sum(p.label == p.gold for _, p in pairs) / len(pairs),
    }


def compare_prompts(
    nlp: Language, dev: Collected, retrieved: dict[Key, Answer], n: int, seed: int = 0
) -> dict[str, Any]:
    """On `n` of the routed dev entities (evenly spread), the accuracy of: the probes,
    the LLM zero-shot, with k random label-balanced demonstrations, with k retrieved
    ones (`retrieved`, the router's own prompt), and the retrieval-only baseline (the
    majority label of what retrieval finds, no LLM); each also for entities whose
    surface form is / is not a training entity (seen / unseen)."""
    router = _router(nlp)
    index = router.index
    keys = sorted(retrieved)
    split = _seen_split(dev, index, keys)
    report: dict[str, Any] = {
        "routed_split": {
            part: routed_accuracy(dev, retrieved, [k for k in keys if split[k] == part])
            for part in ("seen", "unseen")
        }
    }
    if index is None or n <= 0 or not keys:
        return report
    sample = [keys[int(i)] for i in np.linspace(0, len(keys) - 1, min(n, len(keys)))]
    sample = sorted(set(sample))
    k = max(router.demonstrations, 1)
    pool = index.demonstrations(range(len(index.entries)), router.demo_words)
    demos = {"zero_shot": [], "random_k_shot": sample_examples(pool, k, seed)}
    spans = {key: span_of(dev, key) for key in sample}
    answers: dict[str, dict[Key, Answer]] = {"retrieved_k_shot": retrieved}
    for mode, examples in demos.items():
        requests = [router.request(spans[key], examples) for key in sample]
        answers[mode] = dict(zip(sample, router.client.classify(requests)))
    answers["retrieval_majority"] = {
        key: Answer(index.majority(span.text, span_vector(span), k)) for key, span in spans.items()
    }
    by_key = {p.key: p for p in dev.predicted}
    table: dict[str, Any] = {"n": len(sample), "k": k}
    for part in ("all", "seen", "unseen"):
        keys_ = [key for key in sample if part == "all" or split[key] == part]
        probes = {key: by_key[key].label for key in keys_}
        row = {"n": len(keys_), "probes": _share(keys_, probes, by_key)}
        for mode in PROMPTS:
            row[mode] = _share(keys_, {key: answers[mode][key].label for key in keys_}, by_key)
        table[part] = row
    report["prompts"] = table
    return report


def _share(
    keys: Sequence[Key], labels: Mapping[Key, str | None], by_key: dict[Key, Predicted]
) -> float | None:
    """The share of `keys` whose label in `labels` (None: no answer, wrong) is gold."""
    if not keys:
        return None
    return sum(labels[key] == by_key[key].gold for key in keys) / len(keys)


def _seen_split(collected: Collected, index: Any, keys: Iterable[Key]) -> dict[Key, str]:
    """Whether each entity's surface form is a training entity's ("seen") or not."""
    forms = index.surface_forms() if index is not None else set()
    return {
        key: "seen"
        if normal_form(collected.docs[key[0]].text[key[1] : key[2]]) in forms
        else "unseen"
        for key in keys
    }


def _share_not_entities(collected: Collected) -> float:
    """The share of predicted entities that are no gold entity."""
    if not collected.predicted:
        return 0.0
    return float(np.mean([p.gold == NONE_LABEL for p in collected.predicted]))
