"""A label distribution from the token logprobs of one JSON answer."""

import math

import pytest

from spacy_ember.linkner import LabelSet, label_scores

from ..helpers import CONLL, WNUT
from ..linkner_server import json_label_tokens

ln = math.log


def test_scores_first_label_token():
    tokens = json_label_tokens("LOC", [("LOC", ln(0.7)), ("PER", ln(0.2)), ("Paris", ln(0.1))])
    scores = label_scores(tokens, CONLL)
    assert list(scores) == ["PER", "LOC", "ORG", "MISC", "NONE"]
    assert scores == pytest.approx({"PER": 2 / 9, "LOC": 7 / 9, "ORG": 0, "MISC": 0, "NONE": 0})


def test_scores_token_with_quote_and_case():
    top = [(' "LOC', ln(0.5)), (' "per', ln(0.2)), ("LOC", ln(0.1)), (' "N', ln(0.2))]
    tokens = [('{"label":', 0.0, [('{"label":', 0.0)]), (' "LOC', ln(0.5), top), ('"}', 0.0, [])]
    scores = label_scores(tokens, CONLL)
    assert scores == pytest.approx({"PER": 0.2, "LOC": 0.6, "ORG": 0, "MISC": 0, "NONE": 0.2})


def test_scores_follow_chosen_tokens_while_ambiguous():
    tokens = [
        ('{"label": "', 0.0, [('{"label": "', 0.0)]),
        ("p", ln(0.6), [("p", ln(0.6)), ("c", ln(0.3)), ("l", ln(0.1))]),
        ("erson", ln(0.5), [("erson", ln(0.5)), ("roduct", ln(0.5))]),
        ('"}', 0.0, [('"}', 0.0)]),
    ]
    scores = label_scores(tokens, WNUT)
    expected = {"person": 0.3, "product": 0.3, "location": 0.1}
    expected |= {"corporation": 0.15, "creative-work": 0.15, "group": 0.0, "NONE": 0.0}
    assert scores == pytest.approx(expected)


def test_scores_label_that_prefixes_another():
    labels = LabelSet.from_dict({"PER": "a", "PERSONA": "b"})
    tokens = [
        ('{"label": "', 0.0, [('{"label": "', 0.0)]),
        ("PER", ln(0.8), [("PER", ln(0.8)), ("NONE", ln(0.2))]),
        ('"}', ln(0.75), [('"}', ln(0.75)), ("SONA", ln(0.25))]),
    ]
    scores = label_scores(tokens, labels)
    assert scores == pytest.approx({"PER": 0.6, "PERSONA": 0.2, "NONE": 0.2})


@pytest.mark.parametrize("bad", [710.0, 0.5, float("nan"), float("inf"), float("-inf")])
def test_scores_none_when_logprobs_are_not_log_probabilities(bad):
    """A server's NaN, infinite or positive "logprobs" give no scores (the answer text
    still counts), not an overflow."""
    tokens = json_label_tokens("PER", [("PER", bad), ("LOC", ln(0.2))])
    assert label_scores(tokens, CONLL) is None


def test_scores_bare_label_and_without_none():
    tokens = [("LOC", ln(0.5), [("LOC", ln(0.5)), ("NONE", ln(0.3)), ("ORG", ln(0.2))])]
    assert label_scores(tokens, CONLL)["NONE"] == pytest.approx(0.3)
    assert label_scores(tokens, CONLL, allow_none=False) == pytest.approx(
        {"PER": 0, "LOC": 0.5 / 0.7, "ORG": 0.2 / 0.7, "MISC": 0}
    )


@pytest.mark.parametrize(
    "tokens",
    [
        [],
        json_label_tokens("Paris", [("Paris", ln(0.9)), ("Berlin", ln(0.1))]),
        [("LOC", ln(0.9), [])],  # no top_logprobs
        [("I think LOC", ln(0.9), [("I think LOC", ln(0.9))])],  # prose
    ],
    ids=["empty", "no-label-matches", "no-top", "prose"],
)
def test_scores_impossible(tokens):
    assert label_scores(tokens, CONLL) is None
