"""LinkNER during a stream: each entity the stream announces is scored at once and, if
uncertain, typed by the pipeline's `linkner_router` LLM in the background while the LM
goes on writing; its answer comes back as a "relabel" (or "retract") event.

Confidence and entropy read the entity's probe outputs, so they route mid-stream.
mc_dropout and evidential re-run the probes on the LM features of the finished text,
so their entities are routed once the text is complete. A call that fails keeps the
local label (a "relabel" with llm_error), as in batch routing.
"""

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np
from spacy.language import Language
from spacy.tokens import Doc, Span

from ..generate.streaming import StreamEvent
from ..linkner.answers import Answer, Request
from ..linkner.routing import routed_label
from ..ner.decoding import Entity
from ..ner.spans import write_entities
from ..pipeline.causal_lm import CausalLM
from ..pipeline.linkner_router import LinkNERRouter
from .events import entity_json

FEATURE_METHODS = ("mc_dropout", "evidential")  # need the finished text's LM features
STREAM_SPANS_KEY = "ember_stream"  # the span group of the one-entity docs routed mid-stream


def find_router(nlp: Language) -> LinkNERRouter | None:
    """The pipeline's linkner_router component, if it has one."""
    return next((p for _, p in nlp.pipeline if isinstance(p, LinkNERRouter)), None)


class StreamRouting:
    """The routing of one generation. `observe` is called in the generation thread with
    each event and returns the fields the entity event carries (uncertainty, routed);
    answers are passed to `emit` from the pool's threads."""

    def __init__(
        self,
        nlp: Language,
        router: LinkNERRouter,
        pool: ThreadPoolExecutor,
        emit: Callable[[dict], None],
    ) -> None:
        self.nlp, self.router, self.pool, self.emit = nlp, router, pool, emit
        self.text = ""
        self.pending: list[Future] = []
        self.considered: set[tuple[int, int]] = set()  # entities scored so far

    @property
    def mid_stream(self) -> bool:
        return self.router.method not in FEATURE_METHODS

    def observe(self, event: StreamEvent) -> dict:
        """Track the text; score an announced entity and route it if uncertain."""
        if event.kind == "token":
            self.text = self.text[: event.start_char] + event.text
        if event.kind != "entity" or not self.mid_stream or event.label_probs is None:
            return {}
        doc = self.nlp.make_doc(self.text)
        span = doc.char_span(event.start_char, event.end_char, alignment_mode="expand")
        if span is None or not len(span):
            return {}
        entity = Entity(span.start, span.end, float(event.score or 0.0), event.label_probs)
        write_entities(doc, [entity], self.router.ner.labels, STREAM_SPANS_KEY)
        return self._consider(doc.ents[0], event.start_char, event.end_char)

    def finish(self, doc: Doc) -> None:
        """Route the finished text's entities never announced mid-stream (the finished
        text can tokenise differently from its prefixes), or all of them where the
        method needs the LM features of the whole text."""
        if self.mid_stream:
            for ent in doc.ents:
                if (ent.start_char, ent.end_char) not in self.considered:
                    self._consider(ent, ent.start_char, ent.end_char)
            return
        if not doc.ents:
            return
        lm = next(p for _, p in self.nlp.pipeline if isinstance(p, CausalLM))
        doc = lm(doc)
        for ent in doc.ents:
            self._consider(ent, ent.start_char, ent.end_char)
        doc._.ember_lm = None

    def _consider(self, ent: Span, start: int, end: int) -> dict:
        self.considered.add((start, end))
        i = list(ent.doc.ents).index(ent)
        u = self.router.uncertainties(ent.doc)[i]
        routed = self.router.is_routed(ent.label_, u)
        info = {"uncertainty": round(float(u), 4), "routed": routed}
        if routed:
            local = self.router.local_distributions(ent.doc)[i]
            event = entity_json("relabel", start, end, ent.text, ent.label_, ent._.ember_score)
            event.update(info, local_label=ent.label_)
            future = self.pool.submit(self._ask, self.router.request(ent), local, event)
            self.pending.append(future)
        return info

    def _ask(self, request: Request, local: np.ndarray, event: dict) -> None:
        """Ask the LLM (in a pool thread) and emit exactly one answer event."""
        try:
            client = self.router.client
            answer = client.classify([request])[0] if client else Answer(None, error="no client")
        except Exception as err:  # never lose the entity to a failed call
            answer = Answer(None, error=f"error {type(err).__name__}")
        router = self.router
        label = routed_label(
            answer,
            local,
            event["local_label"],
            router.ner.labels,
            router.fuse_weight,
            router.remove_none,
        )
        event.update(llm_label=answer.label, llm_error=answer.error)
        if label is None:
            event["type"] = "retract"
        else:
            event["label"] = label
        self.emit(event)
