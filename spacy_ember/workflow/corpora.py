"""Read CoNLL-2003 and WNUT-17 style BIO files into spaCy Docs (one sentence per Doc)."""

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


class CorpusFormatError(ValueError):
    pass


def read_bio(path: Path) -> Iterator[Sentence]:
    """Yield (words, IOB2 tags) per sentence.

    Columns are split on whitespace; the first is the word and the last the tag
    (CoNLL-2003: `word POS chunk tag`; WNUT-17: `word<TAB>tag`). Blank and
    whitespace-only lines end a sentence; `-DOCSTART-` lines are skipped.
    """
    words: list[str] = []
    tags: list[str] = []
    with Path(path).open(encoding="utf8") as handle:
        for lineno, line in enumerate(handle, start=1):
            cols = line.split()
            if not cols:
                if words:
                    yield words, tags
                words, tags = [], []
                continue
            if cols[0] == "-DOCSTART-":
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


def sentence_to_doc(vocab: Vocab, words: list[str], tags: list[str]) -> Doc:
    """A Doc with the sentence's entities; an I- tag that starts an entity counts as B-."""
    fixed = []
    for i, tag in enumerate(tags):
        if tag.startswith("I-") and (i == 0 or tags[i - 1][2:] != tag[2:] or tags[i - 1] == "O"):
            tag = "B-" + tag[2:]
        fixed.append(tag)
    doc = Doc(vocab, words=words, spaces=[True] * (len(words) - 1) + [False])
    doc.ents = biluo_tags_to_spans(doc, iob_to_biluo(fixed))
    return doc


def convert(input_path: Path, output_path: Path, vocab: Vocab, show_progress: bool = True) -> dict:
    """Convert a BIO file to a .spacy DocBin; returns counts for a sanity check."""
    from spacy.tokens import DocBin
    from tqdm import tqdm

    db = DocBin(store_user_data=False)
    counts: dict = {"sentences": 0, "tokens": 0, "entities": Counter()}
    lines = sum(1 for _ in Path(input_path).open(encoding="utf8"))
    with tqdm(
        total=lines, disable=not show_progress, unit="line", desc=Path(input_path).name
    ) as bar:
        for words, tags in read_bio(input_path):
            doc = sentence_to_doc(vocab, words, tags)
            db.add(doc)
            counts["sentences"] += 1
            counts["tokens"] += len(doc)
            counts["entities"].update(ent.label_ for ent in doc.ents)
            bar.update(len(words) + 1)
    Path(output_path).parent.mkdir(parents=True, exist_ok=True)
    db.to_disk(output_path)
    counts["entities"] = dict(sorted(counts["entities"].items()))
    return counts
