"""Case variants of training examples, so the probes learn to read text as people type
it: all lower case (chat, tweets), all upper case (headlines)."""

import random
from collections.abc import Callable, Iterator

from spacy.language import Language
from spacy.tokens import Doc, Span
from spacy.training import Example
from spacy.util import registry

CASES: dict[str, Callable[[str], str]] = {"lower": str.lower, "upper": str.upper}


def case_variant(doc: Doc, case: str) -> Doc:
    """`doc` with every token in `case` (see CASES), its entities, sentence starts and
    missing annotation on the same tokens."""
    if case not in CASES:
        raise ValueError(f"case must be one of {', '.join(CASES)}, got '{case}'.")
    change = CASES[case]
    variant = Doc(
        doc.vocab,
        words=[change(t.text) for t in doc],
        spaces=[bool(t.whitespace_) for t in doc],
        sent_starts=[t.is_sent_start for t in doc] if doc.has_annotation("SENT_START") else None,
    )
    variant.set_ents(
        [Span(variant, e.start, e.end, e.label_) for e in doc.ents],
        missing=[variant[t.i : t.i + 1] for t in doc if t.ent_iob == 0],
        default="outside",
    )
    return variant


def case_example(nlp: Language, example: Example, case: str) -> Example:
    """The example with its text and gold tokens in `case`."""
    reference = case_variant(example.reference, case)
    return Example(nlp.make_doc(reference.text), reference)


@registry.augmenters("spacy-ember.case_variants.v1")
def create_case_augmenter(
    lower: float = 0.0, upper: float = 0.0, seed: int = 0
) -> Callable[[Language, Example], Iterator[Example]]:
    """Replace a share `lower` of the training examples by their lower-cased copy and a
    share `upper` by their upper-cased copy. Which ones is drawn once per text (from
    `seed` and the text), not per epoch: every epoch sees the same variants, so the
    feature cache computes the LM features of each training text once, as without
    augmentation, instead of ending up with all three cases of every text."""
    for name, rate in (("lower", lower), ("upper", upper)):
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"{name} must be a probability in [0, 1], got {rate}.")
    if lower + upper > 1.0:
        raise ValueError(f"lower + upper must be at most 1, got {lower + upper}.")

    def augment(nlp: Language, example: Example) -> Iterator[Example]:
        if not lower and not upper:
            yield example
            return
        draw = random.Random(f"{seed}\n{example.reference.text}").random()
        if draw < lower:
            yield case_example(nlp, example, "lower")
        elif draw < lower + upper:
            yield case_example(nlp, example, "upper")
        else:
            yield example

    return augment
