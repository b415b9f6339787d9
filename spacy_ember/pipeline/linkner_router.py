"""The `linkner_router` component: send doubtful entities to an LLM (LinkNER).

After `ember_ner`, each entity gets an uncertainty score (see linkner/uncertainty.py);
those above `threshold` are typed by an LLM over the OpenAI API, with their sentence,
the span marked in it, the label definitions and an explicit "not an entity" option.
The LLM's label replaces the local one, or is fused with it (`fuse_weight`). A failed
call keeps the local label: no entity is ever lost to the LLM.
"""

import os
import warnings
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np
from spacy.language import Language
from spacy.tokens import Doc, Span
from spacy.util import minibatch

from ..linkner import (
    NONE_LABEL,
    FewShot,
    LabelSet,
    LLMClient,
    Request,
    build_messages,
    labels_for,
    sample_examples,
)
from ..linkner.fusion import decide
from ..linkner.scoring import UncertaintyScorer
from ..linkner.uncertainty import METHODS

SPAN_ATTRS = ("uncertainty", "routed", "local_label", "llm_label", "llm_error")
for _attr in SPAN_ATTRS:
    if not Span.has_extension(_attr):
        Span.set_extension(_attr, default=None)


@Language.factory(
    "linkner_router",
    assigns=["doc.ents", "span._.uncertainty", "span._.routed", "span._.local_label"],
    requires=["doc.ents"],
    default_config={
        "model": "gpt-4o-mini",
        "base_url": None,
        "api_key_env": "OPENAI_API_KEY",
        "uncertainty": "entropy",
        "threshold": 0.4,
        "mc_samples": 20,
        "mc_dropout_rate": 0.1,
        "mc_statistic": "predictive_entropy",
        "label_set": None,
        "few_shot": 0,
        "examples": None,
        "remove_none": False,
        "fuse_weight": None,
        "constrain": "json_schema_llamacpp",
        "logprobs": False,
        "timeout": 30.0,
        "max_retries": 3,
        "max_concurrency": 4,
        "cache_dir": None,
        "ner_component": "ember_ner",
        "seed": 0,
    },
)
def make_linkner_router(
    nlp: Language,
    name: str,
    model: str,
    base_url: str | None,
    api_key_env: str,
    uncertainty: str,
    threshold: float,
    mc_samples: int,
    mc_dropout_rate: float,
    mc_statistic: str,
    label_set: LabelSet | None,
    few_shot: int,
    examples: list[FewShot] | None,
    remove_none: bool,
    fuse_weight: float | None,
    constrain: str,
    logprobs: bool,
    timeout: float,
    max_retries: int,
    max_concurrency: int,
    cache_dir: str | None,
    ner_component: str,
    seed: int,
) -> "LinkNERRouter":
    """LinkNER routing of uncertain `ember_ner` entities to an OpenAI-compatible LLM.

    api_key_env: the environment variable holding the API key; the key itself never
        goes into the config, so a saved pipeline never contains it. base_url None reads
        OPENAI_BASE_URL (a local llama.cpp server: "http://127.0.0.1:8080/v1").
    uncertainty: confidence | entropy | mc_dropout | evidential (the last needs
        `ember_ner` trained with typing_loss = "evidential"). mc_dropout runs the probes
        `mc_samples` times with dropout `mc_dropout_rate` and reports `mc_statistic`
        (predictive_entropy or mutual_information), normalised to 0..1.
    fuse_weight: None replaces the local label by the LLM's; w in 0..1 mixes the
        LLM's label distribution (from logprobs, else its answer) with the probes'.
    remove_none: drop an entity the LLM calls "not an entity" (kept by default).
    examples: few-shot pool (sentence, start_char, end_char, label); `few_shot` of
        them go into every prompt.
    """
    return LinkNERRouter(
        nlp,
        name,
        client_settings={
            "model": model,
            "base_url": base_url,
            "timeout": timeout,
            "max_retries": max_retries,
            "max_concurrency": max_concurrency,
            "constrain": constrain,
            "logprobs": logprobs,
            "cache_dir": cache_dir,
        },
        api_key_env=api_key_env,
        uncertainty=uncertainty,
        threshold=threshold,
        mc_samples=mc_samples,
        mc_dropout_rate=mc_dropout_rate,
        mc_statistic=mc_statistic,
        label_set=label_set,
        examples=sample_examples(examples or [], few_shot, seed) if few_shot else [],
        remove_none=remove_none,
        fuse_weight=fuse_weight,
        ner_component=ner_component,
    )


class LinkNERRouter:
    """Scores each entity's uncertainty and re-types the uncertain ones with an LLM."""

    def __init__(
        self,
        nlp: Language,
        name: str,
        *,
        client_settings: dict[str, Any],
        api_key_env: str = "OPENAI_API_KEY",
        uncertainty: str = "entropy",
        threshold: float = 0.4,
        mc_samples: int = 20,
        mc_dropout_rate: float = 0.1,
        mc_statistic: str = "predictive_entropy",
        label_set: LabelSet | None = None,
        examples: list[FewShot] | None = None,
        remove_none: bool = False,
        fuse_weight: float | None = None,
        ner_component: str = "ember_ner",
    ) -> None:
        if uncertainty not in METHODS:
            raise ValueError(f"uncertainty must be one of {METHODS}, got '{uncertainty}'.")
        if fuse_weight is not None and not 0.0 <= fuse_weight <= 1.0:
            raise ValueError(f"fuse_weight must lie in 0..1 (or be null), got {fuse_weight}.")
        self.nlp, self.name = nlp, name
        self.client_settings = client_settings
        self.api_key_env = api_key_env
        self.method, self.threshold = uncertainty, threshold
        self.scorer = UncertaintyScorer(
            nlp,
            ner_component,
            mc_samples=mc_samples,
            mc_dropout_rate=mc_dropout_rate,
            mc_statistic=mc_statistic,
        )
        self.label_set = label_set
        self.examples = examples or []
        self.remove_none, self.fuse_weight = remove_none, fuse_weight
        self._client: LLMClient | None = None
        self._client_error: str | None = None

    # -- the LLM client, made on first use (a missing key must not stop loading) --
    @property
    def client(self) -> LLMClient | None:
        if self._client is None and self._client_error is None:
            try:
                key = os.environ.get(self.api_key_env) if self.api_key_env else None
                self._client = LLMClient(api_key=key, **self.client_settings)
            except ValueError as e:
                self._client_error = str(e)
        if self._client is None:
            warnings.warn(
                f"linkner_router: no LLM client ({self._client_error}); entities keep "
                "their local labels.",
                stacklevel=3,
            )
        return self._client

    @property
    def ner(self) -> Any:
        return self.scorer.get_ner()

    @property
    def prompt_labels(self) -> LabelSet:
        if self.label_set is None or tuple(self.label_set.labels) != tuple(self.ner.labels):
            self.label_set = labels_for(self.ner.labels, self.label_set)
        return self.label_set

    # -- uncertainty (see linkner/scoring.py) ---------------------------------
    def local_distributions(self, doc: Doc) -> list[np.ndarray]:
        """(K + 1,) [not an entity, labels...] per entity, from the probes' outputs."""
        return self.scorer.distributions(doc)

    def uncertainties(self, doc: Doc, method: str | None = None) -> list[float]:
        """The uncertainty of each of doc.ents under `method` (default: the configured one)."""
        return self.scorer(doc, method or self.method)

    # -- routing ----------------------------------------------------------------
    def request(self, ent: Span) -> Request:
        doc = ent.doc
        if doc.has_annotation("SENT_START"):
            # ember_ner does not read sentences, so an entity may cross a boundary;
            # Span.sent is then only its first sentence: take every sentence it touches.
            sent = doc[ent[0].sent.start : ent[-1].sent.end]
        else:
            sent = doc[:]
        start = ent.start_char - sent.start_char
        messages = build_messages(
            sent.text,
            start,
            start + len(ent.text),
            self.prompt_labels,
            self.examples,
            allow_none=True,
        )
        return Request(messages, self.prompt_labels, allow_none=True)

    def __call__(self, doc: Doc) -> Doc:
        return next(self.pipe([doc]))

    def pipe(self, stream: Iterable[Doc], *, batch_size: int = 32) -> Iterator[Doc]:
        for docs in minibatch(stream, size=batch_size):
            self.route(docs)
            yield from docs

    def route(self, docs: list[Doc]) -> None:
        """Score every entity, and re-type the uncertain ones of all `docs` in one batch
        of concurrent LLM calls."""
        todo: list[tuple[Doc, int]] = []
        for doc in docs:
            scores = self.uncertainties(doc)
            for i, (ent, u) in enumerate(zip(doc.ents, scores)):
                ent._.uncertainty = float(u)
                ent._.local_label = ent.label_
                ent._.routed = bool(u > self.threshold)
                if ent._.routed:
                    todo.append((doc, i))
        if not todo:
            return
        client = self.client
        if client is None:
            for doc, i in todo:
                doc.ents[i]._.llm_error = "no client"
            return
        answers = client.classify([self.request(doc.ents[i]) for doc, i in todo])
        by_doc: dict[int, list[tuple[int, Any]]] = {}
        for (doc, i), answer in zip(todo, answers):
            by_doc.setdefault(id(doc), []).append((i, answer))
        for doc in docs:
            if id(doc) in by_doc:
                self._apply(doc, by_doc[id(doc)])

    def _apply(self, doc: Doc, answers: list[tuple[int, Any]]) -> None:
        ents = list(doc.ents)
        local = self.local_distributions(doc)
        drop = set()
        for i, answer in answers:
            ent = ents[i]
            ent._.llm_label, ent._.llm_error = answer.label, answer.error
            if answer.label is None:  # the call failed: keep the local label
                continue
            label = decide(
                local[i], answer.label, answer.label_scores, self.fuse_weight, self.ner.labels
            )
            if label == NONE_LABEL:
                if self.remove_none:
                    drop.add(i)
                continue
            if label != ent.label_:
                ents[i] = Span(doc, ent.start, ent.end, label=label)
        kept = [e for i, e in enumerate(ents) if i not in drop]
        meta = [
            (e._.uncertainty, e._.routed, e._.local_label, e._.llm_label, e._.llm_error)
            for e in kept
        ]
        doc.set_ents(kept, default="outside")
        for ent, values in zip(doc.ents, meta):
            for attr, value in zip(SPAN_ATTRS, values):
                setattr(ent._, attr, value)

    # -- serialisation: nothing learned is stored (the key never is) -------------
    def to_disk(self, path, *, exclude=tuple()) -> None:
        pass

    def from_disk(self, path, *, exclude=tuple()) -> "LinkNERRouter":
        return self

    def to_bytes(self, *, exclude=tuple()) -> bytes:
        return b""

    def from_bytes(self, data: bytes, *, exclude=tuple()) -> "LinkNERRouter":
        return self
