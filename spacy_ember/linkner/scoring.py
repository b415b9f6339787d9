"""Each entity's local label distribution and uncertainty, read from `ember_ner`'s probes.

The distribution over [not an entity, labels...] combines the span probe's score with
the typing probe's label probabilities. Confidence and entropy read it once; MC dropout
re-runs the probes with dropout on; the evidential score reads a Dirichlet typing head.
"""

from typing import Any

import numpy as np
from spacy.language import Language
from spacy.tokens import Doc
from thinc.api import set_dropout_rate

from ..ner.decoding import sigmoid, softmax, span_type_probs
from ..ner.evidential import dirichlet_alpha
from .uncertainty import (
    MC_STATISTICS,
    METHODS,
    confidence,
    entity_distribution,
    entropy,
    evidential,
    mc_dropout,
)

# Typing-probe rows per batch of MC dropout passes (copies of one doc run as one batch).
MC_BATCH_ROWS = 4096


class UncertaintyScorer:
    """Scores doc.ents with the probes of the pipeline's component `ner_component`."""

    def __init__(
        self,
        nlp: Language,
        ner_component: str = "ember_ner",
        *,
        mc_samples: int = 20,
        mc_dropout_rate: float = 0.1,
        mc_statistic: str = "predictive_entropy",
    ) -> None:
        if mc_statistic not in MC_STATISTICS:
            raise ValueError(f"mc_statistic must be one of {MC_STATISTICS}.")
        if mc_samples < 2 or not 0.0 < mc_dropout_rate < 1.0:
            raise ValueError("mc_samples must be at least 2 and mc_dropout_rate in (0, 1).")
        self.nlp, self.ner_component = nlp, ner_component
        self.mc_samples, self.mc_dropout_rate = mc_samples, mc_dropout_rate
        self.mc_statistic = mc_statistic

    def get_ner(self) -> Any:
        return self.nlp.get_pipe(self.ner_component)

    def distributions(self, doc: Doc) -> list[np.ndarray]:
        """(K + 1,) [not an entity, labels...] per entity, from the probes' outputs."""
        ner = self.get_ner()
        labels = list(ner.labels)
        dists = []
        for ent in doc.ents:
            score = ent._.ember_score
            probs = ent._.ember_label_probs
            if score is None or probs is None:  # not from ember_ner: taken as certain
                dist = np.zeros(len(labels) + 1)
                dist[1 + labels.index(ent.label_) if ent.label_ in labels else 0] = 1.0
            else:
                dist = entity_distribution(score, np.array([probs[k] for k in labels]))
            dists.append(dist)
        return dists

    def __call__(self, doc: Doc, method: str) -> list[float]:
        """The uncertainty of each of doc.ents under `method`."""
        if method not in METHODS:
            raise ValueError(f"Unknown uncertainty method '{method}': use one of {METHODS}.")
        if not doc.ents:
            return []
        if method == "confidence":
            return [confidence(d) for d in self.distributions(doc)]
        if method == "entropy":
            return [entropy(d) for d in self.distributions(doc)]
        if method == "mc_dropout":
            samples = self._mc_samples(doc)
            return [mc_dropout(samples[:, i], self.mc_statistic) for i in range(len(doc.ents))]
        return self._evidential(doc)

    def _outputs(self, doc: Doc, is_train: bool, copies: int = 1) -> list:
        """The probes' outputs on `doc` (`copies` times in one batch: with is_train,
        each copy draws its own dropout masks). Nothing is updated."""
        ner = self.get_ner()
        if doc._.ember_lm is None:
            raise ValueError(
                f"Scoring entities by the probes of '{ner.name}' needs its LM features on "
                "the doc (doc._.ember_lm) for this uncertainty method; run the whole pipeline."
            )
        outputs, _ = ner.model([doc] * copies, is_train=is_train)
        return outputs

    def _mc_samples(self, doc: Doc) -> np.ndarray:
        """(T, n_ents, K + 1): the entity distributions under T dropout masks."""
        ner = self.get_ner()
        ops = ner.model.ops
        set_dropout_rate(ner.model, self.mc_dropout_rate)
        # Passes batched, bounded to about MC_BATCH_ROWS typing rows per batch.
        per_batch = max(
            1, min(self.mc_samples, MC_BATCH_ROWS // max(len(doc._.ember_lm.hidden), 1))
        )
        outputs: list = []
        while len(outputs) < self.mc_samples:
            copies = min(per_batch, self.mc_samples - len(outputs))
            outputs += self._outputs(doc, is_train=True, copies=copies)
        # Every pass reads the same doc: the same candidates, so each entity's row once.
        index = {(int(s), int(e)): i for i, (s, e) in enumerate(outputs[0].candidates[:, :2])}
        rows = [index.get((ent.start, ent.end)) for ent in doc.ents]
        samples = []
        for out in outputs:
            type_probs = softmax(ops.to_numpy(out.type_logits).astype("float64"))
            span_probs = sigmoid(ops.to_numpy(out.span_logits).astype("float64"))
            dists = []
            for ent, row in zip(doc.ents, rows):
                with_o = span_type_probs(
                    type_probs, out.align, ent.start, ent.end, ner.cfg["type_rule"]
                )
                label = with_o[1:] / max(with_o[1:].sum(), 1e-12)
                score = span_probs[row] if row is not None else 1.0
                dists.append(entity_distribution(float(score), label))
            samples.append(dists)
        return np.array(samples)

    def _evidential(self, doc: Doc) -> list[float]:
        ner = self.get_ner()
        if ner.cfg.get("typing_loss") != "evidential":
            raise ValueError(
                "uncertainty = 'evidential' needs an ember_ner trained with "
                "typing_loss = 'evidential' (its typing probe is a Dirichlet head)."
            )
        out = self._outputs(doc, is_train=False)[0]
        alpha = dirichlet_alpha(ner.model.ops.to_numpy(out.type_logits))
        return [
            evidential(span_type_probs(alpha, out.align, e.start, e.end, ner.cfg["type_rule"]))
            for e in doc.ents
        ]
