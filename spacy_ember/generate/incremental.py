"""EMBER's decoding one LM piece at a time, as a text is generated.

The batch path scores every candidate span of a finished doc and decodes greedily. Here
the same probes run as each piece is read: the typing probe on its hidden state, and
when the piece is the lookahead of candidate spans (the piece right after them), the
span probe on its attention row. The greedy selection is recomputed over the scored
spans, so an entity can be announced as soon as its lookahead arrives and withdrawn
if a later, higher-scoring overlapping span wins, exactly as batch decoding would.
"""

import warnings
from dataclasses import dataclass

import numpy as np
from spacy.language import Language
from spacy.tokens import Doc

from ..lm.alignment import align_pieces, token_char_spans
from ..lm.features import LMFeatures, RawFeatures
from ..ner.candidates import candidate_spans
from ..ner.decoding import (
    Entity,
    label_probs,
    select_non_overlapping,
    sigmoid,
    softmax,
    span_type_probs,
)
from ..ner.inference import probe_predictor
from ..ner.probes import boundary_rows, boundary_type_probs, span_features
from .request import extractor_of


class Rows:
    """Rows appended one at a time into one growing array, read without re-stacking."""

    def __init__(self, width: int, dtype) -> None:
        self.data = np.empty((64, width), dtype=dtype)
        self.n = 0

    def append(self, row: np.ndarray) -> None:
        if self.n == len(self.data):
            self.data = np.concatenate([self.data, np.empty_like(self.data)])
        self.data[self.n] = row
        self.n += 1

    def __len__(self) -> int:
        return self.n

    @property
    def array(self) -> np.ndarray:
        return self.data[: self.n]


@dataclass
class EntityChange:
    """An entity found (added=True) or withdrawn in favour of a better overlapping one."""

    start_char: int
    end_char: int
    label: str
    score: float
    added: bool
    label_probs: np.ndarray  # (n_labels,) the typing distribution the label is the argmax of


class IncrementalNER:
    """The `ember_ner` component of a pipeline, fed one piece at a time.

    Call `read` for each text piece once the LM has read it (its character range in the
    text, its hidden states, its attention band or None when `needs_band` was False),
    then `read_lookahead` for the end-of-text token. Batch size 1.
    """

    def __init__(self, nlp: Language, component: str = "ember_ner") -> None:
        ner = nlp.get_pipe(component)
        self.extractor = extractor = extractor_of(nlp, component)
        self.ner = ner
        self.make_doc = nlp.make_doc
        self.model = ner.model  # type: ignore[attr-defined]
        self.typing = probe_predictor(self.model.get_ref("typing_probe"))
        self.span = probe_predictor(self.model.get_ref("span_probe"))
        cfg = ner.cfg  # type: ignore[attr-defined]
        self.threshold, self.type_rule, self.reject_o = (
            cfg["threshold"],
            cfg["type_rule"],
            cfg["reject_o"],
        )
        self.labels: tuple[str, ...] = ner.labels  # type: ignore[attr-defined]
        self.max_span = self.model.attrs["max_span_tokens"]
        self.window = extractor.attn_window
        self.feature_dtype = extractor.feature_dtype
        self.text = ""
        self.offsets: list[tuple[int, int]] = []
        n_types = len(self.labels) + 1
        self.type_logits = Rows(n_types, np.float32)
        self.type_probs = Rows(n_types, np.float64)  # softmax of each row, float64 as in batch
        self.entity_typed: list[bool] = []  # typing-probe argmax is not O, per piece read
        self.scored: list[Entity] = []  # spans above threshold; start/end are char offsets
        self.selected: list[Entity] = []

    @property
    def n_read(self) -> int:
        """Pieces the LM has read so far (the lookahead included once read)."""
        return len(self.type_logits)

    def needs_band(self) -> bool:
        """Whether the next piece's attention band can matter to any span.

        Spans closed by the next piece end at the last piece read and start at most W
        pieces back. With reject_o, a span typed O is dropped, so the band is needed only
        if such a span can be typed as an entity: for type_rule "last" the last piece
        is; for "first" some piece in reach is; for "mean" the mean over some suffix
        of the pieces read is. Otherwise the band is not computed at all.
        """
        if not self.reject_o:
            return self.n_read > 0
        if self.type_rule == "last":
            return any(self.entity_typed[-1:])
        if not any(self.entity_typed[-self.window :]):
            return False
        if self.type_rule == "first":
            return True
        # The mean of a suffix is typed as an entity where its sum's largest entity
        # type exceeds O; the margin keeps near-ties (summation order) on the safe side.
        sums = np.cumsum(self.type_probs.array[-self.window :][::-1], axis=0)
        return bool((sums[:, 1:].max(axis=1) >= sums[:, 0] - 1e-9).any())

    def read(
        self,
        text: str,
        start_char: int,
        end_char: int,
        hidden: np.ndarray,
        band: np.ndarray | None,
    ) -> list[EntityChange]:
        """Read the next text piece, text[start_char:end_char] of the text so far.

        hidden: (n_layers, width) its hidden states; band: (W + 1, layers * heads) its
        attention to the W + 1 positions ending at it, or None if `needs_band()` was False.
        """
        if len(self.offsets) != self.n_read:
            raise RuntimeError("read() after read_lookahead(): the text has ended.")
        self.text = text
        self.offsets.append((start_char, end_char))
        return self._read(hidden, band)

    def read_lookahead(self, hidden: np.ndarray, band: np.ndarray | None) -> list[EntityChange]:
        """Read the end-of-text token appended after the last piece (batch mode's lookahead)."""
        return self._read(hidden, band)

    def _read(self, hidden: np.ndarray, band: np.ndarray | None) -> list[EntityChange]:
        query = self.n_read
        x = hidden.astype(self.feature_dtype).astype("float32").reshape(1, -1)
        logits = self.typing(x)[0]
        self.type_logits.append(logits)
        self.type_probs.append(softmax(logits.astype("float64")))
        self.entity_typed.append(int(np.argmax(logits)) != 0)
        if band is None or query == 0:
            return []
        band = band.astype(self.feature_dtype).astype("float32")
        if self._score_spans_closed_by(query, band):
            return self._reselect()
        return []

    def lookahead_can_close(self) -> bool:
        """Whether the end-of-text lookahead closes any span that could become an entity
        (what `needs_band` bounds, decided exactly on the finished text's tokens)."""
        return self.needs_band() and self._open_candidates(self.n_read) is not None

    def _open_candidates(self, query: int):
        """The candidate spans whose lookahead is `query` and that reject_o keeps, with
        their type distributions and the text's token character spans; None if none."""
        n_text = min(query + 1, len(self.offsets))
        text = self.text[: self.offsets[n_text - 1][1]] if query < len(self.offsets) else self.text
        doc = self.make_doc(text)
        tokens = token_char_spans(doc)
        offsets = np.asarray(self.offsets[:n_text], dtype=np.int64).reshape(-1, 2)
        align = align_pieces(tokens, offsets)
        usable = np.array([not t.is_space for t in doc], dtype=bool)
        window_only = RawFeatures(offsets, np.zeros((0,)), np.zeros((0, self.window + 1, 0)))
        cands = candidate_spans(LMFeatures(window_only, align, usable), self.max_span)
        cands = cands[cands[:, 2] == query]
        type_probs = self.type_probs.array
        types = [span_type_probs(type_probs, align, s, e, self.type_rule) for s, e in cands[:, :2]]
        keep = [i for i, t in enumerate(types) if not (self.reject_o and t.argmax() == 0)]
        if not keep:
            return None
        return cands[keep], [types[i] for i in keep], tokens

    def _score_spans_closed_by(self, query: int, band: np.ndarray) -> bool:
        """Score the candidate spans whose lookahead is `query`; True if any passed."""
        found = self._open_candidates(query)
        if found is None:
            return False
        cands, types, tokens = found
        boundary = None
        if self.model.attrs["boundary_types"]:
            rows = boundary_rows(cands[:, 2], cands[:, 3])
            boundary = boundary_type_probs(self.type_logits.array, rows)
        X = span_features(self.model, band[cands[:, 3]], boundary)
        scores = sigmoid(self.span(np.asarray(X))[:, 0].astype("float64"))
        passed = False
        for k, (s, e) in enumerate(cands[:, :2]):
            if scores[k] >= self.threshold:
                start, end = int(tokens[s, 0]), int(tokens[e - 1, 1])
                self.scored.append(Entity(start, end, float(scores[k]), label_probs(types[k])))
                passed = True
        return passed

    def _reselect(self) -> list[EntityChange]:
        before = {(e.start, e.end): e for e in self.selected}
        self.selected = select_non_overlapping(self.scored)
        after = {(e.start, e.end): e for e in self.selected}
        changes = [self._change(e, False) for k, e in before.items() if k not in after]
        changes += [self._change(e, True) for k, e in after.items() if k not in before]
        return changes

    def _change(self, ent: Entity, added: bool) -> EntityChange:
        label = self.labels[int(np.argmax(ent.label_probs))]
        return EntityChange(ent.start, ent.end, label, ent.score, added, ent.label_probs)

    def to_doc(self) -> Doc:
        """The text as a Doc with the selected entities, annotated as `ember_ner` would."""
        doc = self.make_doc(self.text)
        entities = []
        for ent in self.selected:
            span = doc.char_span(ent.start, ent.end, alignment_mode="expand")
            if span is not None and len(span):
                entities.append(Entity(span.start, span.end, ent.score, ent.label_probs))
        kept = select_non_overlapping(entities)
        if len(kept) < len(self.selected):
            warnings.warn(
                f"{len(self.selected) - len(kept)} streamed entities fall inside one token of "
                "the finished text (its tokenisation differs from the text's prefixes); the "
                "higher-scoring one is kept.",
                stacklevel=2,
            )
        self.ner.annotate(doc, kept)  # type: ignore[attr-defined]
        return doc
