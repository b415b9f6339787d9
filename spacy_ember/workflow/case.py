"""How well a pipeline holds up when the text's case changes (dev only: it guides the
augmentation rate)."""

from collections.abc import Sequence

from spacy.language import Language
from spacy.tokens import Doc
from spacy.training import Example

from ..training.augment import CASES, case_variant


def case_scores(nlp: Language, gold_docs: Sequence[Doc], batch_size: int = 64) -> dict:
    """Entity P/R/F on the docs as written (`dev_*`) and with every token in each case
    of CASES (`dev_lower_*`, `dev_upper_*`), from spaCy's scorer."""
    scores = {}
    for case in (None, *CASES):
        variants = gold_docs if case is None else [case_variant(d, case) for d in gold_docs]
        examples = [Example(nlp.make_doc(d.text), d) for d in variants]
        result = nlp.evaluate(examples, batch_size=batch_size)
        prefix = "dev" if case is None else f"dev_{case}"
        scores.update({f"{prefix}_{k}": result[f"ents_{k}"] for k in ("p", "r", "f")})
    return scores
