"""Helpers shared by the benchmark scripts: corpora and scoring with the package's code."""

import os
import subprocess
from collections.abc import Sequence
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from spacy.scorer import Scorer  # noqa: E402
from spacy.tokens import Doc  # noqa: E402
from spacy.training import Example  # noqa: E402
from spacy.vocab import Vocab  # noqa: E402

from spacy_ember.workflow.corpora import read_bio, sentence_to_doc  # noqa: E402

DATA = Path(
    os.environ.get("SPACY_EMBER_DATA", Path(__file__).parent.parent.parent / "shared" / "data")
)
CONLL = DATA / "conll2003_en" / "iob2"


def load_conll(split: str, vocab: Vocab, limit: int = 0) -> list[Doc]:
    """Gold docs of a CoNLL-2003 split ('train', 'dev', 'test'), one sentence each."""
    docs = []
    for words, tags in read_bio(CONLL / f"{split}.txt"):
        docs.append(sentence_to_doc(vocab, words, tags))
        if limit and len(docs) >= limit:
            break
    return docs


def ents_f(predicted: Sequence[Doc], gold: Sequence[Doc]) -> dict:
    """spaCy's entity scores of predicted docs against gold docs."""
    return Scorer.score_spans([Example(p, g) for p, g in zip(predicted, gold)], "ents")


def git_commit() -> str:
    """The checkout's short commit id, recorded in each result file."""
    root = Path(__file__).resolve().parents[1]
    run = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=root
    )
    return run.stdout.strip()
