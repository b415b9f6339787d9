"""Read CoNLL-2003 and WNUT-17 style BIO files into spaCy Docs: one Doc per document
(`-DOCSTART-` boundaries, sentence starts set), or one per sentence."""

from collections import Counter
from collections.abc import Iterator
from pathlib import Path

from spacy.tokens import Doc
from spacy.training import iob_to_biluo
from spacy.training.iob_utils import biluo_tags_to_spans
from spacy.vocab import Vocab

Sentence = tuple[list[str], list[str]]

# Where each known corpus keeps its splits, relative to a data directory (the layout of
# ../shared/data; point data_dir at your own copy with the same layout).
DATASETS: dict[str, dict[str, str]] = {
    "conll2003": {
        "train": "conll2003_en/iob2/train.txt",
        "dev": "conll2003_en/iob2/dev.txt",
        "test": "conll2003_en/iob2/test.txt",
    },
    "wnut17": {
        "train": "wnut17/wnut17train.conll",
        "dev": "wnut17/emerging.dev.conll",
        "test": "wnut17/emerging.test.annotated",
    },
}


# One Doc per document or per sentence; documents give the LM each sentence's left
# context, as `nlp(article)` and streaming do. Corpora without document boundaries
# (WNUT-17) are sentences either way.
UNITS = ("documents", "sentences")
DEFAULT_UNIT = "sentences"


class CorpusFormatError(ValueError):
    pass


DOCSTART = "-DOCSTART-"


def _read(path: Path) -> Iterator[Sentence | str]:
    """Yield each sentence as (words, IOB2 tags), and DOCSTART where a document starts.

    Columns are split on whitespace; the first is the word and the last the tag
    (CoNLL-2003: `word POS chunk tag`; WNUT-17: `word<TAB>tag`). Blank and
    whitespace-only lines end a sentence.
    """
    words: list[str] = []
    tags: list[str] = []
    with Path(path).open(encoding="utf8") as handle:
        for lineno, line in enumerate(handle, start=1):
            cols = line.split()
            if (not cols or cols[0] == DOCSTART) and words:
                yield words, tags
                words, tags = [], []
            if not cols:
                continue
            if cols[0] == DOCSTART:
                yield DOCSTART
                continue
            if len(cols) < 2:
                raise CorpusFormatError(
                    f"{path}:{lineno}: expected 'word ... tag', got {line.rstrip()!r}"
                )
            tag = cols[-1]
            if tag != "O" and not (tag[:2] in ("B-", "I-") and len(tag) > 2):
                raise CorpusFormatError(
                    f"{path}:{lineno}: '{tag}' is not a BIO tag (O, B-X or I-X)"
                )
            words.append(cols[0])
            tags.append(tag)
    if words:
        yield words, tags


def read_bio(path: Path) -> Iterator[Sentence]:
    """Yield (words, IOB2 tags) per sentence, ignoring document boundaries."""
    return (item for item in _read(path) if not isinstance(item, str))


def read_documents(path: Path) -> Iterator[list[Sentence]]:
    """Yield the sentences of each document (a `-DOCSTART-` line starts one). Sentences
    before the first `-DOCSTART-`, and all of a file without any (WNUT-17: tweets), are
    each a document of their own."""
    document: list[Sentence] | None = None
    for item in _read(path):
        if isinstance(item, str):
            if document:
                yield document
            document = []
        elif document is None:
            yield [item]
        else:
            document.append(item)
    if document:
        yield document


def sentence_to_doc(vocab: Vocab, words: list[str], tags: list[str]) -> Doc:
    """A Doc with the sentence's entities (see document_to_doc)."""
    return document_to_doc(vocab, [(words, tags)])


def document_to_doc(vocab: Vocab, sentences: list[Sentence]) -> Doc:
    """One Doc of the sentences, space-separated, each sentence start set, with their
    entities; an I- tag that starts an entity counts as B-."""
    words = [word for sentence_words, _ in sentences for word in sentence_words]
    fixed = []
    starts: list[bool | int | None] = []
    for _, tags in sentences:
        for i, tag in enumerate(tags):
            if tag.startswith("I-") and (
                i == 0 or tags[i - 1] == "O" or tags[i - 1][2:] != tag[2:]
            ):
                tag = "B-" + tag[2:]
            fixed.append(tag)
            starts.append(i == 0)
    doc = Doc(vocab, words=words, spaces=[True] * (len(words) - 1) + [False], sent_starts=starts)
    doc.ents = biluo_tags_to_spans(doc, iob_to_biluo(fixed))
    return doc


def convert(
    input_path: Path,
    output_path: Path,
    vocab: Vocab,
    unit: str = DEFAULT_UNIT,
    show_progress: bool = True,
) -> dict:
    """Convert a BIO file to a .spacy DocBin, one Doc per `unit` (see UNITS); returns
    counts for a sanity check."""
    from spacy.tokens import DocBin
    from tqdm import tqdm

    if unit not in UNITS:
        raise ValueError(f"unit must be one of {', '.join(UNITS)}, got '{unit}'.")
    db = DocBin(store_user_data=False)
    counts: dict = {"docs": 0, "sentences": 0, "tokens": 0, "entities": Counter()}
    lines = sum(1 for _ in Path(input_path).open(encoding="utf8"))
    if unit == "documents":
        groups = read_documents(input_path)
    else:
        groups = ([sentence] for sentence in read_bio(input_path))
    with tqdm(
        total=lines, disable=not show_progress, unit="line", desc=Path(input_path).name
    ) as bar:
        for sentences in groups:
            doc = document_to_doc(vocab, sentences)
            db.add(doc)
            counts["docs"] += 1
            counts["sentences"] += len(sentences)
            counts["tokens"] += len(doc)
            counts["entities"].update(ent.label_ for ent in doc.ents)
            bar.update(len(doc) + len(sentences))
    Path(output_path).parent.mkdir(parents=True, exist_ok=True)
    db.to_disk(output_path)
    counts["entities"] = dict(sorted(counts["entities"].items()))
    return counts
