"""LinkNER's offline evaluation: routing simulated on hand-made predictions."""

import sys

import numpy as np
import pytest

from spacy_ember.linkner import Answer
from spacy_ember.linkner.evaluate import (
    Collected,
    Predicted,
    Setting,
    candidate_thresholds,
    expected_calibration_error,
    final_spans,
    prf,
    risk_coverage,
    routed_keys,
    search,
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


def test_search_routes_nothing_when_the_llm_is_wrong(collected):
    wrong = answers(["ORG", "PER", "PER"])  # every answer wrong
    setting, f = search(collected, wrong, "entropy", LABELS, max_routed=1.0)
    assert setting == Setting() and f == pytest.approx(1 / 3)  # the probes' own F1


def test_search_routes_when_the_llm_helps(collected):
    right = answers(["PER", "ORG", "NONE"])
    setting, f = search(collected, right, "entropy", LABELS, max_routed=1.0)
    assert setting.threshold < 0.8 and setting.remove_none and f == pytest.approx(0.8)


def test_search_routes_only_the_labels_the_llm_gets_right(collected):
    """Right on the uncertain PER, wrong on the ORG (a non-entity it calls PER): only
    predicted PER entities are routed."""
    mixed = answers(["PER", "ORG", "PER"])
    setting, f = search(collected, mixed, "entropy", LABELS, max_routed=1.0)
    assert setting.route_labels == ("PER",) and f == pytest.approx(2 / 3)
    assert setting.routed(collected, "entropy") == {(0, 2, 3)}
    assert setting.config()["route_labels"] == ["PER"]


def test_search_never_below_the_probes(collected):
    rng = np.random.default_rng(0)
    probe_f = prf({(*p.key, p.label) for p in collected.predicted}, collected.gold)[2]
    for _ in range(20):
        got = answers(rng.choice(["PER", "ORG", "NONE"], size=3).tolist())
        assert search(collected, got, "entropy", LABELS, max_routed=1.0)[1] >= probe_f


def test_candidate_thresholds_respect_max_routed(collected):
    grid = candidate_thresholds(collected.predicted, "entropy", max_routed=0.34, steps=5)
    assert grid[0] == 1.0 and len(grid) > 1
    assert all(len(routed_keys(collected.predicted, "entropy", t)) <= 1 for t in grid)


def test_ece():
    conf = np.array([0.9, 0.9, 0.1, 0.1])
    assert expected_calibration_error(conf, np.array([1, 1, 0, 0.0])) == pytest.approx(0.1)
    assert expected_calibration_error(np.array([1.0, 1.0]), np.array([0, 0.0])) == 1.0


def test_risk_coverage():
    coverage, risk = risk_coverage(np.array([0.9, 0.1, 0.5]), np.array([0.0, 1.0, 1.0]))
    assert np.allclose(coverage, [1 / 3, 2 / 3, 1]) and np.allclose(risk, [0, 0, 1 / 3])


def test_calibrate_and_evaluate_commands(tmp_path, monkeypatch):
    """The CLI end to end on the tiny pipeline and a loopback LLM: a calibrated
    pipeline is saved, and the evaluation writes its JSON, table and plot; without
    matplotlib, the tables and how to get the plot."""
    import json

    import spacy
    from spacy.tokens import DocBin
    from typer.testing import CliRunner

    from spacy_ember.cli.linkner import app

    from ..helpers import make_examples, tiny_pipeline
    from ..linkner_server import FakeLLMServer, Reply

    nlp = tiny_pipeline(threshold=1e-6, reject_o=False)
    examples = make_examples(nlp)
    nlp.to_disk(tmp_path / "model")
    data = tmp_path / "gold.spacy"
    DocBin(docs=[eg.reference for eg in examples]).to_disk(data)
    runner = CliRunner()
    with FakeLLMServer([Reply('{"label": "PER"}')]) as server:
        common = ["--base-url", server.base_url, "--cache-dir", str(tmp_path / "llm")]
        result = runner.invoke(
            app,
            ["calibrate", str(tmp_path / "model"), str(data), str(tmp_path / "out"), *common]
            + ["--train", str(data)],
        )
        assert result.exit_code == 0, result.output
        assert "dev F1" in result.output and "demonstrations: indexed" in result.output
        calibrated = spacy.load(tmp_path / "out")
        router = calibrated.get_pipe("linkner_router")
        assert 0.0 <= router.threshold <= 1.0
        assert router.demonstrations == 6 and router.index is not None  # saved with it
        result = runner.invoke(
            app,
            ["evaluate-linkner", str(tmp_path / "model"), str(data), str(data)]
            + [str(tmp_path / "metrics"), "--name", "tiny", *common]
            + ["--train", str(data), "--index", str(tmp_path / "index"), "--compare", "3"],
        )
        assert result.exit_code == 0, result.output
        monkeypatch.setitem(sys.modules, "matplotlib", None)  # not installed
        result = runner.invoke(
            app,
            ["evaluate-linkner", str(tmp_path / "model"), str(data), str(data)]
            + [str(tmp_path / "bare"), "--name", "tiny", "--limit", "1", *common]
            + ["--index", str(tmp_path / "index"), "--evidential-model", str(tmp_path / "no")],
        )
        assert result.exit_code == 0, result.output
        assert "pip install spacy-ember[plot]" in result.output
        assert "evidential is skipped" in result.output
        assert {p.name for p in (tmp_path / "bare").iterdir()} == {
            "linkner-tiny.json",
            "linkner-tiny.md",
        }
    report = json.loads((tmp_path / "metrics" / "linkner-tiny.json").read_text())
    assert set(report) == {"confidence", "entropy", "mc_dropout", "best", "dev", "_run"}
    for method in ("confidence", "entropy", "mc_dropout"):
        r = report[method]
        for key in ("probe_f", "routed_fraction", "replace_f", "fuse_f", "oracle_f", "threshold"):
            assert 0.0 <= r[key] <= 1.0
        assert r["oracle_f"] >= r["final_f"] - 1e-9 or r["routed_fraction"] == 0
        assert r["dev_final_f"] >= r["dev_probe_f"]  # dev and test are the same docs here
    assert report["best"]["method"] in ("confidence", "entropy", "mc_dropout")
    assert report["best"]["final_f"] >= report["best"]["probe_f"]
    prompts = report["dev"]["prompts"]
    assert prompts["n"] == prompts["all"]["n"] > 0
    assert set(prompts["all"]) >= {"probes", "zero_shot", "random_k_shot", "retrieved_k_shot"}
    assert report["_run"]["llm_calls"] > 0 and report["_run"]["prompt_tokens_per_call"] >= 0
    assert (tmp_path / "metrics" / "linkner-tiny-risk-coverage.png").stat().st_size > 0
    assert "| entropy |" in (tmp_path / "metrics" / "linkner-tiny.md").read_text()


def test_collect_matches_gold_by_characters():
    """Gold docs tokenised unlike spaCy ("New-York" one token, spaCy's three) still
    match the pipeline's entities: matching is by characters, not token indices."""
    from spacy.tokens import Doc

    from spacy_ember.linkner.evaluate import collect

    from ..helpers import tiny_pipeline
    from ..pipeline.test_linkner_router import DEFINITIONS

    nlp = tiny_pipeline(threshold=1e-6, reject_o=False)
    settings = {"model": "fake", "base_url": "http://127.0.0.1:9/v1", "threshold": 1.0}
    definitions = {"@misc": "spacy-ember.label_definitions.v1", "definitions": DEFINITIONS}
    settings["label_set"] = definitions
    nlp.add_pipe("linkner_router", config=settings)
    words = ["New-York", "is", "big", "and", "Ada", "Lovelace", "lived", "in", "London"]
    text = " ".join(words)
    with nlp.select_pipes(disable=["linkner_router"]):
        predicted = nlp(text).ents
    gold_doc = Doc(nlp.vocab, words=words)
    assert len(gold_doc) < len(nlp.make_doc(text))  # the tokenisations differ
    # Gold: every predicted entity that falls on gold token boundaries, labelled as predicted.
    spans = [gold_doc.char_span(e.start_char, e.end_char, label=e.label_) for e in predicted]
    gold_doc.ents = [s for s in spans if s is not None]
    assert any(e.start_char > len("New-York") for e in gold_doc.ents)  # after the split token
    collected = collect(nlp, [gold_doc], ["confidence"], "linkner_router")
    gold_keys = {(0, e.start_char, e.end_char) for e in gold_doc.ents}
    matched = {p.key for p in collected.predicted if p.gold != "NONE"}
    assert matched == gold_keys
    assert prf({(*p.key, p.label) for p in collected.predicted}, collected.gold)[1] == 1.0
