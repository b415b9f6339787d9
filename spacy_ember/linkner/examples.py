"""Few-shot examples for LinkNER prompts, drawn from annotated training docs."""

from pathlib import Path

from spacy.tokens import DocBin
from spacy.util import registry
from spacy.vocab import Vocab

from .prompt import FewShot


@registry.misc("spacy-ember.few_shot_examples.v1")
def few_shot_examples(path: str | Path, limit: int = 2000) -> list[FewShot]:
    """Every entity of the first `limit` docs of a .spacy file, as (sentence, start_char,
    end_char, label), for `linkner_router`'s `examples` (it samples `few_shot` of them)."""
    path = Path(path)
    if not path.exists():
        raise ValueError(f"Few-shot examples: no file at {path}.")
    examples = []
    for i, doc in enumerate(DocBin().from_disk(path).get_docs(Vocab())):
        if i >= limit:
            break
        examples += [FewShot(doc.text, e.start_char, e.end_char, e.label_) for e in doc.ents]
    return examples
