"""The `ember_ner` component: EMBER's probes decoded into typed entity spans."""

import logging
from collections.abc import Callable, Iterable, Sequence
from itertools import islice
from typing import Any

import numpy as np
from spacy.language import Language
from spacy.pipeline import TrainablePipe
from spacy.tokens import Doc, Span
from spacy.training import Example, validate_examples, validate_get_examples
from spacy.vocab import Vocab
from thinc.api import Config, Model, Optimizer, set_dropout_rate

from ..lm.listener import LMListener
from ..ner.decoding import TYPE_RULES, Entity, decode
from ..ner.evidential import TYPING_LOSSES
from ..ner.losses import probe_loss
from ..ner.probes import DEFAULT_EMBER_MODEL, ProbeGradient, ProbeOutput, set_output_width
from ..ner.spans import write_entities
from .causal_lm import CausalLM

logger = logging.getLogger("spacy_ember")


# ember_ner's settings: the factory's default config and EmberNER's keyword defaults.
DEFAULT_SETTINGS: dict[str, Any] = {
    "threshold": 0.5,
    "type_rule": "last",
    "reject_o": True,
    "spans_key": "ember",
    "o_weight": 1.0,
    "span_pos_weight": 15.0,
    "typing_loss": "softmax",
    "kl_anneal_steps": 1000,
}


@Language.factory(
    "ember_ner",
    assigns=["doc.ents", "token.ent_iob", "token.ent_type"],
    default_config={
        "model": Config().from_str(DEFAULT_EMBER_MODEL)["model"],
        **DEFAULT_SETTINGS,
        "scorer": {"@scorers": "spacy.ner_scorer.v1"},
    },
    default_score_weights={"ents_f": 1.0, "ents_p": 0.0, "ents_r": 0.0, "ents_per_type": None},
)
def make_ember_ner(
    nlp: Language,
    name: str,
    model: Model[list[Doc], list[ProbeOutput]],
    threshold: float,
    type_rule: str,
    reject_o: bool,
    spans_key: str,
    o_weight: float,
    span_pos_weight: float,
    typing_loss: str,
    kl_anneal_steps: int,
    scorer: Callable | None,
) -> "EmberNER":
    """EMBER NER reading a frozen causal LM through a listener.

    If the pipeline has no `causal_lm` component yet, one with the embedded default
    backbone is added in front of this one.
    """
    if not any(isinstance(proc, CausalLM) for _, proc in nlp.pipeline):
        upstreams = [n.upstream_name for n in model.walk() if isinstance(n, LMListener)]
        if (
            upstreams
            and upstreams[0] in ("*", "causal_lm")
            and "causal_lm" not in nlp.component_names
        ):
            logger.info("ember_ner: adding a 'causal_lm' component with the default backbone")
            nlp.add_pipe("causal_lm")
    return EmberNER(
        nlp.vocab,
        model,
        name,
        threshold=threshold,
        type_rule=type_rule,
        reject_o=reject_o,
        spans_key=spans_key,
        o_weight=o_weight,
        span_pos_weight=span_pos_weight,
        typing_loss=typing_loss,
        kl_anneal_steps=kl_anneal_steps,
        scorer=scorer,
    )


class EmberNER(TrainablePipe):
    """Entities from a span-detection probe on attention and a typing probe on hidden
    states of a frozen causal LM (Popovič & Färber, EMBER, arXiv 2403.11747)."""

    def __init__(
        self,
        vocab: Vocab,
        model: Model,
        name: str = "ember_ner",
        *,
        threshold: float = DEFAULT_SETTINGS["threshold"],
        type_rule: str = DEFAULT_SETTINGS["type_rule"],
        reject_o: bool = DEFAULT_SETTINGS["reject_o"],
        spans_key: str = DEFAULT_SETTINGS["spans_key"],
        o_weight: float = DEFAULT_SETTINGS["o_weight"],
        span_pos_weight: float = DEFAULT_SETTINGS["span_pos_weight"],
        typing_loss: str = DEFAULT_SETTINGS["typing_loss"],
        kl_anneal_steps: int = DEFAULT_SETTINGS["kl_anneal_steps"],
        scorer: Callable | None = None,
    ) -> None:
        """typing_loss: "softmax" (cross-entropy) or "evidential" (a Dirichlet head,
        Sensoy et al. 2018, whose uncertainty `linkner_router` can route on), with its
        KL term annealed in over `kl_anneal_steps` updates."""
        if typing_loss not in TYPING_LOSSES:
            raise ValueError(f"typing_loss must be one of {TYPING_LOSSES}, got '{typing_loss}'.")
        if type_rule not in TYPE_RULES:
            raise ValueError(f"type_rule must be one of {TYPE_RULES}, got '{type_rule}'.")
        if not 0.0 < threshold < 1.0:
            raise ValueError(f"threshold must lie strictly between 0 and 1, got {threshold}.")
        self.vocab = vocab
        self.model = model
        self.name = name
        self.scorer = scorer
        self.cfg: dict[str, Any] = {
            "labels": [],
            "threshold": threshold,
            "type_rule": type_rule,
            "reject_o": reject_o,
            "spans_key": spans_key,
            "o_weight": o_weight,
            "span_pos_weight": span_pos_weight,
            "typing_loss": typing_loss,
            "kl_anneal_steps": kl_anneal_steps,
        }
        self._updates = 0  # for the KL annealing of the evidential loss

    @property
    def labels(self) -> tuple[str, ...]:
        return tuple(self.cfg["labels"])

    @property
    def label_data(self) -> list[str]:
        return list(self.labels)

    def add_label(self, label: str) -> int:
        if not isinstance(label, str):
            raise ValueError(f"Labels must be strings, got {label!r}.")
        if label in self.labels:
            return 0
        self._allow_extra_label()
        self.cfg["labels"].append(label)
        self.vocab.strings.add(label)
        return 1

    # -- prediction -------------------------------------------------------------
    def predict(self, docs: Iterable[Doc]) -> list[ProbeOutput]:
        docs = list(docs)
        if not docs:
            return []
        return self.model.predict(docs)

    def decode_doc(self, output: ProbeOutput, threshold: float | None = None) -> list[Entity]:
        ops = self.model.ops
        return decode(
            ops.to_numpy(output.type_logits),
            ops.to_numpy(output.span_logits),
            output.candidates,
            output.align,
            self.cfg["threshold"] if threshold is None else threshold,
            self.cfg["type_rule"],
            self.cfg["reject_o"],
        )

    def entity_spans(self, doc: Doc, entities: Sequence[Entity]) -> list[Span]:
        """Decoded entities as spans of `doc`, each with its most probable label."""
        labels = self.labels
        return [
            Span(doc, e.start, e.end, label=labels[int(np.argmax(e.label_probs))]) for e in entities
        ]

    def set_annotations(self, docs: Iterable[Doc], outputs: Sequence[ProbeOutput]) -> None:
        for doc, output in zip(docs, outputs):
            self.annotate(doc, self.decode_doc(output))

    def annotate(self, doc: Doc, entities: Sequence[Entity]) -> None:
        """Write decoded entities to doc.ents and to doc.spans[spans_key] with their scores."""
        write_entities(doc, entities, self.labels, self.cfg["spans_key"])

    # -- training ---------------------------------------------------------------
    def update(
        self,
        examples: Iterable[Example],
        *,
        drop: float = 0.0,
        sgd: Optimizer | None = None,
        losses: dict[str, float] | None = None,
    ) -> dict[str, float]:
        losses = {} if losses is None else losses
        losses.setdefault(self.name, 0.0)
        examples = list(examples)
        validate_examples(examples, "EmberNER.update")
        if not any(len(eg.predicted) for eg in examples):
            return losses
        set_dropout_rate(self.model, drop)
        outputs, backprop = self.model.begin_update([eg.predicted for eg in examples])
        loss, gradients = self.get_loss(examples, outputs)
        backprop(gradients)
        if sgd is not None:
            self.finish_update(sgd)
        self._updates += 1
        losses[self.name] += loss
        return losses

    def get_loss(
        self, examples: Iterable[Example], outputs: list[ProbeOutput]
    ) -> tuple[float, list[ProbeGradient]]:
        """The probes' weighted losses and their gradients (see losses.probe_loss)."""
        anneal = min(1.0, self._updates / max(self.cfg["kl_anneal_steps"], 1))
        return probe_loss(
            list(examples),
            outputs,
            self.labels,
            self.model.ops,
            o_weight=self.cfg["o_weight"],
            span_pos_weight=self.cfg["span_pos_weight"],
            typing_loss=self.cfg["typing_loss"],
            anneal=anneal,
        )

    def initialize(
        self,
        get_examples: Callable[[], Iterable[Example]],
        *,
        nlp: Language | None = None,
        labels: list[str] | None = None,
    ) -> None:
        """Collect labels from the data (or `labels`), and size the probes on a sample
        of docs run through the upstream LM."""
        validate_get_examples(get_examples, "EmberNER.initialize")
        if labels is None:
            found = sorted({ent.label_ for eg in get_examples() for ent in eg.reference.ents})
            labels = found
        for label in labels:
            self.add_label(label)
        if not self.labels:
            raise ValueError(
                f"'{self.name}' found no entity labels in the training data; give `labels` "
                "in [initialize.components] or train on examples with entities."
            )
        set_output_width(self.model.get_ref("typing_probe"), len(self.labels) + 1)
        docs = [eg.predicted for eg in islice(get_examples(), 10) if len(eg.predicted)]
        docs = [d.copy() for d in docs]
        upstream = self.upstream(nlp)
        if upstream is not None:
            docs = list(upstream.pipe(docs))
        self.model.initialize(X=docs)

    def upstream(self, nlp: Language | None) -> CausalLM | None:
        if nlp is None:
            return None
        for _, proc in nlp.pipeline:
            if isinstance(proc, CausalLM) and self.name in proc.listening_components:
                return proc
        raise ValueError(
            f"'{self.name}' listens to no causal_lm component. Add one before it: "
            f"nlp.add_pipe('causal_lm', before='{self.name}')."
        )
