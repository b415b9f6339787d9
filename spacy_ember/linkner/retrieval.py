"""Demonstrations for a routed entity, retrieved from the annotated training corpus.

A small LLM types an entity far better when shown how the same or a similar name is
annotated in training sentences, and how entities the LM represents alike are (the
mean hidden state over the span, the features `ember_ner` already reads). The index
holds every training entity once: its sentence, offsets, label, lower-cased surface
form and (optionally) that vector. It is built once and saved beside the pipeline.
"""

import json
import re
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from spacy.tokens import Doc, Span

from .prompt import FewShot

ENTRIES = "entries.jsonl"
VECTORS = "vectors.npy"
_WORD = re.compile(r"\w+")
MIN_WORD = 3  # shorter words ("of", "FC") do not make two names similar


def span_vector(span: Span) -> np.ndarray | None:
    """The unit-length mean over the span's LM pieces of the hidden states `causal_lm`
    put on the doc (layers concatenated), or None when the doc has no features."""
    feats = span.doc._.ember_lm
    if feats is None or len(span) == 0:
        return None
    first, last = int(feats.align[span.start, 0]), int(feats.align[span.end - 1, 1])
    if last < first:
        return None
    vector = np.asarray(feats.hidden[first : last + 1], dtype="float32").mean(axis=0).ravel()
    norm = float(np.linalg.norm(vector))
    return vector / norm if norm > 0 else None


def window(sentence: str, start: int, end: int, words: int) -> FewShot:
    """The span with at most `words` whitespace-separated words of context on each side
    (the demonstration stays short; the label is filled in by the caller)."""
    before = sentence[:start].split(" ")
    after = sentence[end:].split(" ")
    left = " ".join(before[-(words + 1) :]) if len(before) > words + 1 else sentence[:start]
    right = " ".join(after[: words + 1]) if len(after) > words + 1 else sentence[end:]
    text = left + sentence[start:end] + right
    return FewShot(text, len(left), len(left) + end - start, "")


def normal_form(text: str) -> str:
    """A surface form as the index compares it: lower case, single spaces."""
    return " ".join(text.lower().split())


def _words(text: str) -> set[str]:
    return {w for w in _WORD.findall(text.lower()) if len(w) >= MIN_WORD}


@dataclass
class Entry:
    """One training entity."""

    sentence: int  # index into DemoIndex.sentences
    start: int
    end: int
    label: str


@dataclass
class DemoIndex:
    """Training entities, findable by surface form, by shared words and by LM vector."""

    sentences: list[str]
    entries: list[Entry]
    vectors: np.ndarray | None = None  # (n_entries, dim) float16, unit rows
    _forms: dict[str, list[int]] = field(default_factory=dict, repr=False)
    _words: dict[str, list[int]] = field(default_factory=dict, repr=False)
    _matrix: np.ndarray | None = field(default=None, repr=False)  # float32 for search

    def __post_init__(self) -> None:
        if self.vectors is not None and len(self.vectors) != len(self.entries):
            raise ValueError(
                f"The index has {len(self.entries)} entries but {len(self.vectors)} vectors; "
                "build it again."
            )
        if self.vectors is not None:
            self._matrix = self.vectors.astype("float32")
        for i, entry in enumerate(self.entries):
            text = self.sentences[entry.sentence][entry.start : entry.end]
            self._forms.setdefault(normal_form(text), []).append(i)
            for word in _words(text):
                self._words.setdefault(word, []).append(i)

    @classmethod
    def build(
        cls,
        docs: Iterable[Doc],
        vectors: Callable[[Sequence[Doc]], list[list[np.ndarray | None]]] | None = None,
        batch_size: int = 256,
    ) -> "DemoIndex":
        """The index of every entity of `docs` (gold annotated); `vectors` maps a batch
        of them to each entity's span vector (see `span_vector`), or is None."""
        sentences: list[str] = []
        entries: list[Entry] = []
        rows: list[np.ndarray | None] = []
        batch: list[Doc] = []

        def flush() -> None:
            found: list[list[np.ndarray | None]] = (
                vectors(batch) if vectors is not None else [[None] * len(d.ents) for d in batch]
            )
            for doc, doc_vectors in zip(batch, found):
                sentences.append(doc.text)
                for ent, vector in zip(doc.ents, doc_vectors):
                    entries.append(
                        Entry(len(sentences) - 1, ent.start_char, ent.end_char, ent.label_)
                    )
                    rows.append(vector)
            batch.clear()

        for doc in docs:
            if doc.ents:
                batch.append(doc)
            if len(batch) >= batch_size:
                flush()
        if batch:
            flush()
        matrix = None
        if vectors is not None and rows:
            dim = next((len(r) for r in rows if r is not None), 0)
            matrix = np.stack([r if r is not None else np.zeros(dim) for r in rows]).astype(
                "float16"
            )
        return cls(sentences, entries, matrix)

    # -- retrieval ----------------------------------------------------------------
    def same_form(self, text: str) -> list[int]:
        """Entries whose surface form is `text` (any case, any spacing)."""
        return self._forms.get(normal_form(text), [])

    def similar_form(self, text: str) -> list[int]:
        """Entries sharing a word of at least MIN_WORD characters with `text`, most
        shared words first."""
        counts: Counter[int] = Counter()
        for word in _words(text):
            counts.update(self._words.get(word, []))
        return [i for i, _ in counts.most_common()]

    def nearest(self, vector: np.ndarray | None, n: int) -> list[int]:
        """The `n` entries with the most similar LM vectors (cosine)."""
        if vector is None or self._matrix is None or n <= 0 or not len(self._matrix):
            return []
        if len(vector) != self._matrix.shape[1]:
            raise ValueError(
                f"The demonstration index holds {self._matrix.shape[1]}-dim vectors but the "
                f"pipeline gives {len(vector)}: build the index with this pipeline's causal_lm."
            )
        sims = self._matrix @ vector.astype("float32")
        n = min(n, len(sims))
        top = np.argpartition(-sims, n - 1)[:n]
        return [int(i) for i in top[np.argsort(-sims[top], kind="stable")]]

    def retrieve(
        self,
        text: str,
        sentence: str,
        vector: np.ndarray | None,
        k: int,
        same_form: int | None = None,
    ) -> list[int]:
        """Up to `k` entries to show for the entity `text` in `sentence`: first the same
        surface form (at most `same_form`, default k - k // 3, all labels it has shown),
        then similar forms, then LM neighbours. Never one from `sentence` itself."""
        if k <= 0:
            return []
        limit = k - k // 3 if same_form is None else same_form
        query = normal_form(sentence)
        chosen: list[int] = []
        seen_sentences: set[int] = set()

        def add(candidates: Iterable[int], upto: int) -> None:
            for i in candidates:
                if len(chosen) >= upto:
                    return
                entry = self.entries[i]
                if entry.sentence in seen_sentences:
                    continue
                if normal_form(self.sentences[entry.sentence]) == query:
                    continue  # the query sentence itself (duplicates across splits)
                chosen.append(i)
                seen_sentences.add(entry.sentence)

        add(self._label_spread(self.same_form(text)), limit)
        add(self.similar_form(text), min(k, len(chosen) + max(1, k // 3)))
        add(self.nearest(vector, 8 * k), k)
        add(self.similar_form(text), k)
        return chosen

    def _label_spread(self, ids: list[int]) -> list[int]:
        """`ids` reordered so that each label they have comes early (labels take turns,
        the most frequent first): the LLM sees that a name is, say, LOC and ORG."""
        by_label: dict[str, list[int]] = {}
        for i in ids:
            by_label.setdefault(self.entries[i].label, []).append(i)
        queues = sorted(by_label.values(), key=len, reverse=True)
        out: list[int] = []
        while any(queues):
            for queue in queues:
                if queue:
                    out.append(queue.pop(0))
        return out

    def demonstrations(self, ids: Sequence[int], words: int) -> list[FewShot]:
        """The entries as short solved examples, most similar last (next to the query)."""
        out = []
        for i in reversed(ids):
            entry = self.entries[i]
            shot = window(self.sentences[entry.sentence], entry.start, entry.end, words)
            out.append(shot._replace(label=entry.label))
        return out

    def majority(self, text: str, vector: np.ndarray | None, k: int) -> str | None:
        """The retrieval-only baseline: the most common label among the same surface
        form's entries, else among the k nearest; None when there is nothing."""
        ids = self.same_form(text) or self.nearest(vector, k)
        if not ids:
            return None
        return Counter(self.entries[i].label for i in ids).most_common(1)[0][0]

    def surface_forms(self) -> set[str]:
        return set(self._forms)

    # -- serialisation ----------------------------------------------------------------
    def to_disk(self, path: str | Path) -> None:
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        with (path / ENTRIES).open("w", encoding="utf8") as f:
            f.write(json.dumps({"sentences": self.sentences}, ensure_ascii=False) + "\n")
            for e in self.entries:
                f.write(
                    json.dumps([e.sentence, e.start, e.end, e.label], ensure_ascii=False) + "\n"
                )
        if self.vectors is not None:
            np.save(path / VECTORS, self.vectors)

    @classmethod
    def from_disk(cls, path: str | Path) -> "DemoIndex":
        path = Path(path)
        if not (path / ENTRIES).is_file():
            raise ValueError(
                f"No demonstration index at {path}: build it with `python -m spacy_ember "
                "calibrate ... --train <train.spacy>`."
            )
        with (path / ENTRIES).open(encoding="utf8") as f:
            sentences = json.loads(next(f))["sentences"]
            entries = [Entry(*json.loads(line)) for line in f]
        vectors = np.load(path / VECTORS) if (path / VECTORS).is_file() else None
        return cls(sentences, entries, vectors)
