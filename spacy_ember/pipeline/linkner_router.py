"""The `linkner_router` component: send doubtful entities to an LLM (LinkNER).

After `ember_ner`, each entity gets an uncertainty score (see linkner/uncertainty.py);
those above `threshold` are typed by an LLM over the OpenAI API, with their sentence,
the span marked in it, the label definitions and an explicit "not an entity" option.
The LLM's label replaces the local one, or is fused with it (`fuse_weight`). A failed
call keeps the local label: no entity is ever lost to the LLM.
"""

import os
import shutil
import warnings
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from spacy.language import Language
from spacy.tokens import Doc, Span
from spacy.util import minibatch

from ..linkner.answers import Answer, Request
from ..linkner.client import LLMClient
from ..linkner.labels import LabelSet, labels_for
from ..linkner.prompt import FewShot, sample_examples
from ..linkner.retrieval import DemoIndex, span_vector
from ..linkner.routing import apply_answers, span_request
from ..linkner.scoring import UncertaintyScorer
from ..linkner.uncertainty import METHODS
from .causal_lm import CausalLM

INDEX_DIR = "demonstrations"  # the index's folder inside the component's directory

# The one place the router's defaults are written: the factory's default_config, and
# the defaults of LinkNERRouter's keyword arguments (read from here).
DEFAULTS: dict[str, Any] = {
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
    "demonstrations": 0,
    "demo_words": 8,
    "context_chars": 300,
    "route_labels": None,
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
}


@Language.factory(
    "linkner_router",
    assigns=["doc.ents", "span._.uncertainty", "span._.routed", "span._.local_label"],
    requires=["doc.ents"],
    default_config=DEFAULTS,
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
    demonstrations: int,
    demo_words: int,
    context_chars: int,
    route_labels: list[str] | None,
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
        them, drawn with `seed`, go into every prompt.
    demonstrations: instead, retrieve this many per routed entity from the training
        corpus's index (same / similar name, LM neighbours; see linkner/retrieval.py,
        built by `index-demos`), each at most `demo_words` words either side.
    context_chars: how much of the doc before the entity's sentence the prompt shows.
    route_labels: route only entities predicted with these labels (None: all);
        `calibrate` keeps those where the LLM beat the probes on dev.
    """
    return LinkNERRouter(
        nlp,
        name,
        model=model,
        base_url=base_url,
        api_key_env=api_key_env,
        uncertainty=uncertainty,
        threshold=threshold,
        mc_samples=mc_samples,
        mc_dropout_rate=mc_dropout_rate,
        mc_statistic=mc_statistic,
        label_set=label_set,
        few_shot=few_shot,
        examples=examples,
        demonstrations=demonstrations,
        demo_words=demo_words,
        context_chars=context_chars,
        route_labels=route_labels,
        remove_none=remove_none,
        fuse_weight=fuse_weight,
        constrain=constrain,
        logprobs=logprobs,
        timeout=timeout,
        max_retries=max_retries,
        max_concurrency=max_concurrency,
        cache_dir=cache_dir,
        ner_component=ner_component,
        seed=seed,
    )


class LinkNERRouter:
    """Scores each entity's uncertainty and re-types the uncertain ones with an LLM
    (settings: see `make_linkner_router`)."""

    def __init__(
        self,
        nlp: Language,
        name: str,
        *,
        model: str = DEFAULTS["model"],
        base_url: str | None = DEFAULTS["base_url"],
        api_key_env: str = DEFAULTS["api_key_env"],
        uncertainty: str = DEFAULTS["uncertainty"],
        threshold: float = DEFAULTS["threshold"],
        mc_samples: int = DEFAULTS["mc_samples"],
        mc_dropout_rate: float = DEFAULTS["mc_dropout_rate"],
        mc_statistic: str = DEFAULTS["mc_statistic"],
        label_set: LabelSet | None = DEFAULTS["label_set"],
        few_shot: int = DEFAULTS["few_shot"],
        examples: list[FewShot] | None = DEFAULTS["examples"],
        demonstrations: int = DEFAULTS["demonstrations"],
        demo_words: int = DEFAULTS["demo_words"],
        context_chars: int = DEFAULTS["context_chars"],
        route_labels: list[str] | None = DEFAULTS["route_labels"],
        remove_none: bool = DEFAULTS["remove_none"],
        fuse_weight: float | None = DEFAULTS["fuse_weight"],
        constrain: str = DEFAULTS["constrain"],
        logprobs: bool = DEFAULTS["logprobs"],
        timeout: float = DEFAULTS["timeout"],
        max_retries: int = DEFAULTS["max_retries"],
        max_concurrency: int = DEFAULTS["max_concurrency"],
        cache_dir: str | None = DEFAULTS["cache_dir"],
        ner_component: str = DEFAULTS["ner_component"],
        seed: int = DEFAULTS["seed"],
    ) -> None:
        if uncertainty not in METHODS:
            raise ValueError(f"uncertainty must be one of {METHODS}, got '{uncertainty}'.")
        if fuse_weight is not None and not 0.0 <= fuse_weight <= 1.0:
            raise ValueError(f"fuse_weight must lie in 0..1 (or be null), got {fuse_weight}.")
        if min(demonstrations, demo_words, context_chars) < 0:
            raise ValueError("demonstrations, demo_words and context_chars must be >= 0.")
        self.nlp, self.name = nlp, name
        self.client_settings: dict[str, Any] = {
            "model": model,
            "base_url": base_url,
            "timeout": timeout,
            "max_retries": max_retries,
            "max_concurrency": max_concurrency,
            "constrain": constrain,
            "logprobs": logprobs,
            "cache_dir": cache_dir,
        }  # for LLMClient, made on first use
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
        self.examples = sample_examples(examples or [], few_shot, seed) if few_shot else []
        self.demonstrations, self.demo_words = demonstrations, demo_words
        self.context_chars = context_chars
        self.route_labels = None if route_labels is None else tuple(route_labels)
        self.remove_none, self.fuse_weight = remove_none, fuse_weight
        self._index: DemoIndex | None = None
        self._index_path: Path | None = None  # saved index, read on first use
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

    # -- demonstrations (see linkner/retrieval.py) ----------------------------------
    @property
    def index(self) -> DemoIndex | None:
        """The demonstration index: built, or read from the saved pipeline on first use."""
        if self._index is None and self._index_path is not None:
            self._index = DemoIndex.from_disk(self._index_path)
        return self._index

    def use_index(self, source: "str | Path | LinkNERRouter") -> None:
        """Read the index from this folder (on first use), or share another router's."""
        if isinstance(source, LinkNERRouter):
            self._index, self._index_path = source._index, source._index_path
        else:
            self._index, self._index_path = None, Path(source)

    def index_demonstrations(self, docs: Iterable[Doc], batch_size: int = 64) -> DemoIndex:
        """Build the index from gold-annotated training docs, with the LM vectors of
        their entities from this pipeline's `causal_lm` (the query's own features)."""
        self._index = DemoIndex.build(docs, self._gold_vectors, batch_size)
        self._index_path = None
        return self._index

    def _gold_vectors(self, golds: Sequence[Doc]) -> list[list[np.ndarray | None]]:
        """Each gold entity's span vector, from the LM run on its doc's text."""
        lm = next((p for _, p in self.nlp.pipeline if isinstance(p, CausalLM)), None)
        if lm is None:
            raise ValueError(f"{self.name}: indexing demonstrations needs a causal_lm component.")
        docs = list(lm.pipe(self.nlp.make_doc(g.text) for g in golds))
        out = []
        for gold, doc in zip(golds, docs):
            spans = [
                doc.char_span(e.start_char, e.end_char, alignment_mode="expand") for e in gold.ents
            ]
            out.append([span_vector(s) if s is not None else None for s in spans])
            doc._.ember_lm = None  # free the features: only the vectors are kept
        return out

    def demonstrations_for(self, ent: Span) -> list[FewShot]:
        """The retrieved demonstrations for `ent`, or the fixed few-shot examples."""
        if not self.demonstrations:
            return self.examples
        index = self.index
        if index is None:
            raise ValueError(
                f"{self.name}: demonstrations = {self.demonstrations} needs the training "
                "corpus's index: python -m spacy_ember calibrate ... --train <train.spacy>"
            )
        sentence = ent.sent.text if ent.doc.has_annotation("SENT_START") else ent.doc.text
        ids = index.retrieve(ent.text, sentence, span_vector(ent), self.demonstrations)
        return index.demonstrations(ids, self.demo_words)

    # -- routing ----------------------------------------------------------------
    def request(self, ent: Span, examples: Sequence[FewShot] | None = None) -> Request:
        """The LLM request typing `ent` (see linkner/routing.py), with these examples
        (default: `demonstrations_for(ent)`)."""
        if examples is None:
            examples = self.demonstrations_for(ent)
        return span_request(ent, self.prompt_labels, examples, self.context_chars)

    def is_routed(self, label: str, uncertainty: float) -> bool:
        """Whether an entity with this predicted label and uncertainty goes to the LLM."""
        allowed = self.route_labels is None or label in self.route_labels
        return bool(allowed and uncertainty > self.threshold)

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
                ent._.routed = self.is_routed(ent.label_, u)
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
        by_doc: dict[int, list[tuple[int, Answer]]] = {}
        for (doc, i), answer in zip(todo, answers):
            by_doc.setdefault(id(doc), []).append((i, answer))
        for doc in docs:
            if id(doc) in by_doc:
                local, labels = self.local_distributions(doc), self.ner.labels
                apply_answers(
                    doc, by_doc[id(doc)], local, labels, self.fuse_weight, self.remove_none
                )

    # -- serialisation: the demonstration index only (the key never is) ------------
    def to_disk(self, path, *, exclude=tuple()) -> None:
        path = Path(path)
        target = path / INDEX_DIR
        if self._index is not None:
            self._index.to_disk(target)
        elif self._index_path is not None and self._index_path.resolve() != target.resolve():
            shutil.copytree(self._index_path, target, dirs_exist_ok=True)
        else:
            path.mkdir(parents=True, exist_ok=True)

    def from_disk(self, path, *, exclude=tuple()) -> "LinkNERRouter":
        saved = Path(path) / INDEX_DIR
        self._index, self._index_path = None, saved if saved.is_dir() else None
        return self

    def to_bytes(self, *, exclude=tuple()) -> bytes:
        return b""

    def from_bytes(self, data: bytes, *, exclude=tuple()) -> "LinkNERRouter":
        return self
