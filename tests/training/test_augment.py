"""Case augmentation: variants keep their gold, reach the LM, and get their own cache keys."""

import pytest
import spacy
from spacy.tokens import Doc
from spacy.training import Example
from spacy.util import registry

from spacy_ember.training.augment import case_example, case_variant
from spacy_ember.workflow.corpora import document_to_doc

from ..helpers import make_examples, tiny_pipeline

SENTENCES = [
    (["Leeds", "beat", "Chelsea", "."], ["B-ORG", "O", "B-ORG", "O"]),
    (["Tim", "Cook", "visited", "New", "York"], ["B-PER", "I-PER", "O", "B-LOC", "I-LOC"]),
]


@pytest.mark.parametrize("case,change", [("lower", str.lower), ("upper", str.upper)])
def test_variant_keeps_entities_sentences_and_spacing(case, change):
    doc = document_to_doc(spacy.blank("en").vocab, SENTENCES)
    variant = case_variant(doc, case)
    assert variant.text == change(doc.text)
    assert [(e.text, e.label_) for e in variant.ents] == [
        (change(e.text), e.label_) for e in doc.ents
    ]
    assert [t.is_sent_start for t in variant] == [t.is_sent_start for t in doc]


def test_variant_keeps_missing_annotation():
    doc = Doc(spacy.blank("en").vocab, words=["Paris", "is", "nice"], ents=["B-LOC", "", "O"])
    variant = case_variant(doc, "upper")
    assert [t.ent_iob_ for t in variant] == ["B", "", "O"]


def test_example_is_retokenised_from_its_own_text():
    nlp = spacy.blank("en")
    example = Example.from_dict(nlp.make_doc("Apple's CEO"), {"entities": [(0, 5, "ORG")]})
    variant = case_example(nlp, example, "lower")
    assert variant.predicted.text == "apple's ceo"
    assert [(e.text, e.label_) for e in variant.reference.ents] == [("apple", "ORG")]


def test_unknown_case_is_refused():
    with pytest.raises(ValueError, match="lower, upper"):
        case_variant(spacy.blank("en")("x"), "title")


@pytest.mark.parametrize("lower,upper", [(-0.1, 0.0), (0.0, 1.5), (0.6, 0.6)])
def test_rates_must_be_probabilities(lower, upper):
    with pytest.raises(ValueError, match="must be"):
        registry.augmenters.get("spacy-ember.case_variants.v1")(lower=lower, upper=upper)


@pytest.mark.parametrize("case", ["lower", "upper"])
def test_variants_reach_the_lm_under_their_own_cache_keys(case):
    nlp = tiny_pipeline()
    augment = registry.augmenters.get("spacy-ember.case_variants.v1")(
        **{"lower": 0.0, "upper": 0.0, case: 1.0}
    )
    examples = make_examples(nlp)
    variants = [v for example in examples for v in augment(nlp, example)]
    change = str.lower if case == "lower" else str.upper
    assert [v.text for v in variants] == [change(e.text) for e in examples]
    extractor = nlp.get_pipe("causal_lm").extractor
    misses = extractor.cache.misses
    nlp.update(variants, sgd=nlp.create_optimizer())
    assert extractor.cache.misses == misses + len(variants)  # new texts, new keys
    keys = {extractor.cache.key(extractor.signature, v.text) for v in variants}
    assert keys.isdisjoint(extractor.cache.key(extractor.signature, e.text) for e in examples)
    assert all(extractor.cache.get(key) is not None for key in keys)


def test_each_text_keeps_its_variant_across_epochs():
    nlp = spacy.blank("en")
    examples = [Example.from_dict(nlp.make_doc(f"Text number {i} ."), {}) for i in range(200)]
    augment = registry.augmenters.get("spacy-ember.case_variants.v1")(lower=0.3, upper=0.3)
    epochs = [[v.text for e in examples for v in augment(nlp, e)] for _ in range(2)]
    assert epochs[0] == epochs[1]  # one variant per text: its features are cached once
    kinds = [("lower" if t.islower() else "upper" if t.isupper() else "as is") for t in epochs[0]]
    assert 40 <= kinds.count("lower") <= 80 and 40 <= kinds.count("upper") <= 80
    other_seed = registry.augmenters.get("spacy-ember.case_variants.v1")(0.3, 0.3, seed=1)
    assert [v.text for e in examples for v in other_seed(nlp, e)] != epochs[0]


def test_no_rates_leave_examples_unchanged():
    nlp = spacy.blank("en")
    augment = registry.augmenters.get("spacy-ember.case_variants.v1")()
    examples = make_examples(nlp)
    assert [next(augment(nlp, e)) for e in examples] == examples


def test_case_scores_on_the_tiny_pipeline():
    from spacy_ember.workflow.case import case_scores

    nlp = tiny_pipeline()
    gold = [e.reference for e in make_examples(nlp)]
    scores = case_scores(nlp, gold)
    assert set(scores) == {f"dev{c}_{k}" for c in ("", "_lower", "_upper") for k in "prf"}
    assert all(0.0 <= v <= 1.0 for v in scores.values())
