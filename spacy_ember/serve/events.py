"""Entities as JSON, the live set a stream's events build, and what a client is sent.

An entity event is {"type": "entity" | "retract" | "relabel", "start_char", "end_char",
"text", "label", "score", ...}; offsets index the generated text. "relabel" carries the
router's fields (uncertainty, local_label, llm_label, llm_error). Applying a stream's
events in order gives the finished text's entities.
"""

import warnings
from collections import deque

from spacy.tokens import Doc, Span

from ..pipeline.records import entity_record, span_record

REPLACEMENT = "\ufffd"  # what a piece decodes to while its character is incomplete


def entity_json(kind: str, start: int, end: int, text: str, label: str, score, **extra) -> dict:
    """One entity event (score None: not from ember_ner)."""
    return {"type": kind, **entity_record(start, end, text, label, score, **extra)}


def span_json(span: Span, kind: str = "entity") -> dict:
    """An entity of a Doc as an event, with the router's fields when it set them."""
    return {"type": kind, **span_record(span)}


class LiveEntities:
    """The entities a stream has announced and not withdrawn, keyed by char offsets."""

    def __init__(self) -> None:
        self.live: dict[tuple[int, int], dict] = {}

    def apply(self, event: dict) -> bool:
        """Apply an event; False if it refers to an entity no longer live (a relabel
        that arrived after its entity was withdrawn), which is then not sent."""
        key = (event["start_char"], event["end_char"])
        if event["type"] == "entity":
            self.live[key] = event
            return True
        if key not in self.live:
            return False
        if event["type"] == "retract":
            del self.live[key]
        else:
            self.live[key] = {**event, "type": "entity"}
        return True

    def reconcile(self, doc: Doc) -> list[dict]:
        """Events that make the live set equal the finished doc's entities (they differ
        only where the finished text tokenises differently from its prefixes)."""
        final = {(e.start_char, e.end_char): e for e in doc.ents}
        events = [{**v, "type": "retract"} for k, v in self.live.items() if k not in final]
        events += [span_json(e) for k, e in final.items() if k not in self.live]
        for event in events:
            self.apply(event)
        return events

    def entities(self) -> list[dict]:
        return [{**self.live[k], "type": "entity"} for k in sorted(self.live)]


class StreamState:
    """What a client has been sent of one generation. The text goes out as append-only
    deltas (a chat chunk can only add text), a trailing incomplete character (U+FFFD)
    held back until its bytes arrive. Entity events go out in order once the text they
    index has been sent; one whose text changed meanwhile is dropped (the finished doc
    reconciles the entities at the end)."""

    def __init__(self) -> None:
        self.text = ""  # as generated so far
        self.sent = ""
        self.held: deque[dict] = deque()
        self.entities = LiveEntities()

    def piece(self, start_char: int, text: str) -> tuple[str, list[dict]]:
        """A new piece at start_char (earlier text may be re-decoded): delta, events."""
        self.text = self.text[:start_char] + text
        return self._delta(final=False), self._release()

    def event(self, event: dict) -> list[dict]:
        """An entity, retract or relabel event: the events that can be sent now."""
        self.held.append(event)
        return self._release()

    def end(self, text: str, doc: Doc) -> tuple[str, list[dict]]:
        """The finished text and doc: the rest of the text, every held event, and the
        events that make the entities equal doc.ents."""
        self.text = text
        delta = self._delta(final=True)
        return delta, self._release() + self.entities.reconcile(doc)

    def _delta(self, final: bool) -> str:
        stable = self.text if final else self.text.rstrip(REPLACEMENT)
        if not stable.startswith(self.sent):
            warnings.warn(
                "The generated text changed before the part already streamed; the final "
                "chunk's entities index the text as the tokenizer decodes it.",
                stacklevel=3,
            )
            return ""
        delta, self.sent = stable[len(self.sent) :], stable
        return delta

    def _release(self) -> list[dict]:
        out = []
        while self.held and self.held[0]["end_char"] <= len(self.sent):
            event = self.held.popleft()
            current = self.text[event["start_char"] : event["end_char"]]
            if current == event["text"] and self.entities.apply(event):
                out.append(event)
        return out
