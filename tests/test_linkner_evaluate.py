"""LinkNER's offline evaluation: routing simulated on hand-made predictions."""

import numpy as np
import pytest

from spacy_ember.linkner import Answer
from spacy_ember.linkner.evaluate import (
    Collected,
    Predicted,
    calibrate,
    expected_calibration_error,
    final_spans,
    prf,
    risk_coverage,
    routed_keys,
    thresholds,
)

LABELS = ("PER", "ORG")


def predicted(key, label, gold, u):
    local = np.array([0.1, 0.6, 0.3]) if label == "PER" else np.array([0.1, 0.3, 0.6])
    return Predicted(key, label, gold, local, {"entropy": u})


@pytest.fixture
def collected():
    preds = [
        predicted((0, 0, 1), "PER", "PER", 0.1),  # right, certain
        predicted((0, 2, 3), "PER", "ORG", 0.8),  # wrong label, uncertain
        predicted((1, 0, 2), "ORG", "NONE", 0.9),  # not an entity, uncertain
    ]
    gold = {(0, 0, 1, "PER"), (0, 2, 3, "ORG"), (1, 4, 5, "PER")}
    return Collected(preds, gold, [])


def answers(labels):
    keys = [(0, 0, 1), (0, 2, 3), (1, 0, 2)]
    return {k: Answer(label) for k, label in zip(keys, labels)}


def test_prf():
    assert prf({1, 2}, {2, 3}) == (0.5, 0.5, 0.5)
    assert prf(set(), {1}) == (0.0, 0.0, 0.0)


@pytest.mark.parametrize(
    "mode,remove_none,expected",
    [
        ("replace", False, {(0, 0, 1, "PER"), (0, 2, 3, "ORG"), (1, 0, 2, "ORG")}),
        ("replace", True, {(0, 0, 1, "PER"), (0, 2, 3, "ORG")}),
        ("oracle", False, {(0, 0, 1, "PER"), (0, 2, 3, "ORG")}),
    ],
)
def test_final_spans(collected, mode, remove_none, expected):
    routed = routed_keys(collected.predicted, "entropy", 0.5)
    assert routed == {(0, 2, 3), (1, 0, 2)}
    got = final_spans(collected, routed, answers(["PER", "ORG", "NONE"]), mode, LABELS, remove_none)
    assert got == expected


def test_failed_answer_keeps_the_local_label(collected):
    routed = routed_keys(collected.predicted, "entropy", 0.0)
    got = final_spans(collected, routed, answers([None, None, None]), "replace", LABELS, True)
    assert got == {(*p.key, p.label) for p in collected.predicted}


def test_calibration_routes_nothing_when_the_llm_is_wrong(collected):
    wrong = answers(["ORG", "PER", "PER"])  # every answer wrong
    threshold, f = calibrate(collected, wrong, "entropy", LABELS, True, max_routed=1.0)
    assert threshold == 1.0 and f == pytest.approx(1 / 3)  # the probes' own F1


def test_calibration_routes_when_the_llm_helps(collected):
    right = answers(["PER", "ORG", "NONE"])
    threshold, f = calibrate(collected, right, "entropy", LABELS, True, max_routed=1.0)
    assert threshold < 0.8 and f == pytest.approx(0.8)


def test_thresholds_respect_max_routed(collected):
    grid = thresholds(collected.predicted, "entropy", max_routed=0.34)
    assert 1.0 in grid
    assert all(len(routed_keys(collected.predicted, "entropy", t)) <= 1 for t in grid)


def test_ece():
    conf = np.array([0.9, 0.9, 0.1, 0.1])
    assert expected_calibration_error(conf, np.array([1, 1, 0, 0.0])) == pytest.approx(0.1)
    assert expected_calibration_error(np.array([1.0, 1.0]), np.array([0, 0.0])) == 1.0


def test_risk_coverage():
    coverage, risk = risk_coverage(np.array([0.9, 0.1, 0.5]), np.array([0.0, 1.0, 1.0]))
    assert np.allclose(coverage, [1 / 3, 2 / 3, 1]) and np.allclose(risk, [0, 0, 1 / 3])
