"""Choose ember_ner's decoding settings (threshold, type rule, reject_o) on dev data.

The probes run once; every setting is then decoded from the same scores, so the
search costs seconds. Select on dev, report test once.
"""

from collections.abc import Iterable, Sequence
from itertools import product
from typing import cast

from spacy.language import Language
from spacy.scorer import Scorer
from spacy.tokens import Doc
from spacy.training import Example

from ..ner.decoding import TYPE_RULES
from ..pipeline.ember_ner import EmberNER

# The ember_ner settings that decoding reads and tuning chooses.
DECODING_SETTINGS = ("threshold", "type_rule", "reject_o")
THRESHOLDS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


def tune_decoding(
    nlp: Language,
    gold_docs: Sequence[Doc],
    component: str = "ember_ner",
    thresholds: Iterable[float] = THRESHOLDS,
    type_rules: Iterable[str] = TYPE_RULES,
    reject_o: Iterable[bool] = (True, False),
) -> list[dict]:
    """Dev scores of every decoding setting, best first."""
    ner = cast(EmberNER, nlp.get_pipe(component))
    before = {k: ner.cfg[k] for k in DECODING_SETTINGS}
    upstream = nlp.pipe_names[: nlp.pipe_names.index(component)]
    with nlp.select_pipes(enable=upstream):
        docs = list(nlp.pipe(gold.text for gold in gold_docs))
    outputs = ner.predict(docs)
    results = []
    try:
        for threshold, rule, reject in product(thresholds, type_rules, reject_o):
            ner.cfg.update(threshold=threshold, type_rule=rule, reject_o=reject)
            predicted = []
            for doc, output in zip(docs, outputs):
                doc = doc.copy()
                doc.set_ents(ner.entity_spans(doc, ner.decode_doc(output)), default="outside")
                predicted.append(doc)
            scores = Scorer.score_spans(
                [Example(p, g) for p, g in zip(predicted, gold_docs)], "ents"
            )
            results.append(
                {
                    "threshold": threshold,
                    "type_rule": rule,
                    "reject_o": reject,
                    "ents_f": scores["ents_f"],
                    "ents_p": scores["ents_p"],
                    "ents_r": scores["ents_r"],
                }
            )
    finally:
        ner.cfg.update(before)
    return sorted(results, key=lambda r: -r["ents_f"])
