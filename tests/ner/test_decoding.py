import numpy as np
import pytest

from spacy_ember.ner.decoding import decode, span_type_probs

# 4 tokens, one piece each (+ lookahead row 4); labels: O, PER, LOC
ALIGN = np.array([[0, 0], [1, 1], [2, 2], [3, 3]])
TYPES = np.log(
    np.array(
        [
            [0.1, 0.8, 0.1],
            [0.1, 0.7, 0.2],
            [0.9, 0.05, 0.05],
            [0.2, 0.1, 0.7],
            [0.9, 0.05, 0.05],
        ]
    )
)


def cands(*spans):
    # (start, end, query, offset) with one piece per token
    return np.array([(s, e, e, e - s) for s, e in spans]).reshape(-1, 4)


def logit(p):
    return np.log(p / (1 - p))


def test_greedy_highest_first_without_overlap():
    c = cands((0, 2), (1, 2), (0, 1), (3, 4))
    ents = decode(TYPES, logit(np.array([0.9, 0.95, 0.6, 0.8])), c, ALIGN, 0.5, "last")
    # (0, 2) overlaps the better (1, 2); (0, 1) does not
    assert [(e.start, e.end) for e in ents] == [(0, 1), (1, 2), (3, 4)]
    assert [e.score for e in ents] == pytest.approx([0.6, 0.95, 0.8])


def test_threshold_filters():
    c = cands((0, 2), (3, 4))
    ents = decode(TYPES, logit(np.array([0.4, 0.8])), c, ALIGN, 0.5, "last")
    assert [(e.start, e.end) for e in ents] == [(3, 4)]


@pytest.mark.parametrize(
    "rule,expected",
    [("last", [0.1, 0.7, 0.2]), ("first", [0.1, 0.8, 0.1]), ("mean", [0.1, 0.75, 0.15])],
)
def test_type_rules(rule, expected):
    probs = np.exp(TYPES)
    assert span_type_probs(probs, ALIGN, 0, 2, rule) == pytest.approx(expected)


def test_label_probs_exclude_o_and_sum_to_one():
    ents = decode(TYPES, logit(np.array([0.9])), cands((3, 4)), ALIGN, 0.5, "last")
    assert ents[0].label_probs == pytest.approx([0.125, 0.875])


@pytest.mark.parametrize("reject_o,expected", [(True, []), (False, [(2, 3)])])
def test_reject_o(reject_o, expected):
    ents = decode(TYPES, logit(np.array([0.9])), cands((2, 3)), ALIGN, 0.5, "last", reject_o)
    assert [(e.start, e.end) for e in ents] == expected


def test_no_candidates():
    assert decode(TYPES, np.zeros(0), np.zeros((0, 4), dtype=int), ALIGN, 0.5, "last") == []
    with pytest.raises(ValueError, match="type rule"):
        decode(TYPES, logit(np.array([0.9])), cands((0, 1)), ALIGN, 0.5, "middle")
