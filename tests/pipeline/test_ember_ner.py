"""The ember_ner component on a tiny random LM: training, decoding, serialization."""

import numpy as np
import pytest
import spacy
import torch
from spacy.tokens import Doc
from spacy.training import Example

from spacy_ember.lm.features import LMFeatures
from spacy_ember.ner.candidates import candidate_spans
from spacy_ember.ner.decoding import Entity
from spacy_ember.ner.inference import probe_predictor
from spacy_ember.ner.losses import probe_targets
from spacy_ember.ner.probes import build_probe_mlp
from spacy_ember.pipeline.causal_lm import CausalLM
from spacy_ember.pipeline.ember_ner import EmberNER

from ..helpers import TRAIN_DATA, make_examples, tiny_lm_config, tiny_pipeline


def train(nlp, steps: int):
    examples = make_examples(nlp)
    optimizer = nlp.create_optimizer()
    losses = []
    for _ in range(steps):
        losses.append(nlp.update(examples, sgd=optimizer)["ember_ner"])
    return losses


def test_labels_collected_from_data(ember_nlp):
    assert ember_nlp.get_pipe("ember_ner").labels == ("LOC", "ORG", "PER")


def test_training_lowers_loss_and_leaves_lm_unchanged(ember_nlp):
    model = ember_nlp.get_pipe("causal_lm").extractor.lm.model
    before = [p.detach().clone() for p in model.parameters()]
    losses = train(ember_nlp, 30)
    assert losses[-1] < 0.5 * losses[0]
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))


def test_training_runs_the_lm_once_per_text(ember_nlp):
    cache = ember_nlp.get_pipe("causal_lm").extractor.cache
    train(ember_nlp, 1)
    misses = cache.misses
    train(ember_nlp, 5)
    assert cache.misses == misses


def test_listener_is_linked(ember_nlp):
    lm = ember_nlp.get_pipe("causal_lm")
    assert lm.listening_components == ["ember_ner"]


def test_annotations_on_token_boundaries_with_scores(ember_nlp):
    train(ember_nlp, 5)
    ner = ember_nlp.get_pipe("ember_ner")
    ner.cfg["threshold"], ner.cfg["reject_o"] = 1e-6, False  # force many entities
    doc = ember_nlp("Angela Merkel met Tim Cook in Berlin.")
    group = doc.spans["ember"]
    assert len(doc.ents) > 0
    assert [(e.start, e.end, e.label_) for e in doc.ents] == [
        (s.start, s.end, s.label_) for s in group
    ]
    assert group.attrs["scores"].shape == (len(group),)
    assert group.attrs["label_probs"].shape == (len(group), 3)
    np.testing.assert_allclose(group.attrs["label_probs"].sum(axis=1), 1.0, rtol=1e-5)
    for ent in doc.ents:
        assert 0.0 < ent._.ember_score <= 1.0
        probs = ent._.ember_label_probs
        assert set(probs) == {"LOC", "ORG", "PER"}
        assert max(probs, key=probs.get) == ent.label_


def test_serialization_roundtrip_predicts_the_same(ember_nlp, tmp_path):
    train(ember_nlp, 10)
    ember_nlp.get_pipe("ember_ner").cfg["threshold"] = 0.05
    texts = [text for text, _ in TRAIN_DATA]
    before = [
        [(e.start, e.end, e.label_, e._.ember_score) for e in d.ents] for d in ember_nlp.pipe(texts)
    ]
    ember_nlp.to_disk(tmp_path)
    nlp2 = spacy.load(tmp_path)
    assert nlp2.pipe_names == ["causal_lm", "ember_ner"]
    assert nlp2.get_pipe("ember_ner").cfg["threshold"] == 0.05
    after = [
        [(e.start, e.end, e.label_, e._.ember_score) for e in d.ents] for d in nlp2.pipe(texts)
    ]
    assert before == after
    bytes_nlp = spacy.blank("en").from_config(ember_nlp.config)
    bytes_nlp.from_bytes(ember_nlp.to_bytes())
    assert [
        [(e.start, e.end, e.label_, e._.ember_score) for e in d.ents] for d in bytes_nlp.pipe(texts)
    ] == before


# TRAIN_DATA's gold entities as token spans.
GOLD_ENTS = [
    [(0, 2, "PER"), (3, 5, "PER"), (6, 7, "LOC")],
    [(0, 1, "ORG"), (4, 6, "LOC")],
    [(0, 1, "ORG"), (3, 4, "LOC")],
    [(3, 4, "LOC")],
]


@pytest.mark.parametrize(
    "predicted,p,r,per_type",
    [
        (GOLD_ENTS, 1.0, 1.0, {"PER": (1.0, 1.0), "LOC": (1.0, 1.0), "ORG": (1.0, 1.0)}),
        ([[], [], [], []], 0.0, 0.0, {"PER": (0.0, 0.0), "LOC": (0.0, 0.0), "ORG": (0.0, 0.0)}),
        # A wrong label, a wrong boundary, a doc missed: 3 of 5 right, 3 of 8 found.
        (
            [[(0, 2, "PER"), (3, 5, "LOC")], [(0, 1, "ORG"), (4, 5, "LOC")], [], [(3, 4, "LOC")]],
            0.6,
            0.375,
            {"PER": (1.0, 0.5), "LOC": (1 / 3, 0.25), "ORG": (1.0, 0.5)},
        ),
    ],
    ids=["exact", "none", "mixed"],
)
def test_evaluate_scores_the_entities_ember_ner_writes(monkeypatch, predicted, p, r, per_type):
    """nlp.evaluate's P/R/F are those of the entities ember_ner decodes (here: fixed ones)."""
    nlp = tiny_pipeline("llama")
    labels = nlp.get_pipe("ember_ner").labels
    one_hot = np.eye(len(labels), dtype="float32")
    decoded = iter(
        [
            [Entity(s, e, 0.9, one_hot[labels.index(label)]) for s, e, label in doc]
            for doc in predicted
        ]
    )
    monkeypatch.setattr(EmberNER, "decode_doc", lambda self, output, threshold=None: next(decoded))
    scores = nlp.evaluate(make_examples(nlp))
    assert next(decoded, None) is None  # one decoding per doc
    f = 2 * p * r / (p + r) if p + r else 0.0
    assert (scores["ents_p"], scores["ents_r"], scores["ents_f"]) == pytest.approx((p, r, f))
    got = {label: (t["p"], t["r"]) for label, t in scores["ents_per_type"].items()}
    assert got == pytest.approx(per_type)


def test_add_pipe_alone_adds_the_lm():
    nlp = spacy.blank("en")
    nlp.add_pipe("ember_ner")
    assert nlp.pipe_names == ["causal_lm", "ember_ner"]
    assert isinstance(nlp.get_pipe("causal_lm"), CausalLM)
    assert nlp.get_pipe("causal_lm").listening_components == ["ember_ner"]


def test_ember_before_lm_gives_a_clear_error():
    nlp = spacy.blank("en")
    nlp.add_pipe("causal_lm", config=tiny_lm_config())
    nlp.add_pipe("ember_ner", first=True)
    with pytest.raises(ValueError, match="listens to no causal_lm"):
        nlp.initialize(lambda: make_examples(nlp))


def test_missing_features_give_a_clear_error(ember_nlp):
    with ember_nlp.select_pipes(disable=["causal_lm"]):
        with pytest.raises(ValueError, match="nlp.add_pipe\\('causal_lm'"):
            ember_nlp("Berlin")


def test_no_labels_gives_a_clear_error():
    nlp = spacy.blank("en")
    nlp.add_pipe("causal_lm", config=tiny_lm_config())
    nlp.add_pipe("ember_ner")
    examples = [Example.from_dict(nlp.make_doc("no entities here"), {"entities": []})]
    with pytest.raises(ValueError, match="no entity labels"):
        nlp.initialize(lambda: examples)


@pytest.mark.parametrize("setting,value", [("threshold", 1.5), ("type_rule", "middle")])
def test_invalid_component_settings(setting, value):
    nlp = spacy.blank("en")
    nlp.add_pipe("causal_lm", config=tiny_lm_config())
    with pytest.raises(ValueError, match=setting):
        nlp.add_pipe("ember_ner", config={setting: value})


def test_probe_sizes_follow_labels_and_features(ember_nlp):
    ner: EmberNER = ember_nlp.get_pipe("ember_ner")
    extractor = ember_nlp.get_pipe("causal_lm").extractor
    typing = ner.model.get_ref("typing_probe")
    assert typing.get_dim("nI") == 2 * extractor.width
    assert typing.layers[-1].get_dim("nO") == 4
    # attention vector + type distributions at 4 boundary pieces
    n_attn = extractor.n_layers * extractor.n_heads
    assert ner.model.get_ref("span_probe").get_dim("nI") == n_attn + 4 * 4


def test_candidates_respect_window_and_whitespace(ember_nlp):
    doc = ember_nlp.get_pipe("causal_lm")(ember_nlp.make_doc("Tim  Cook\n\nin Berlin"))
    feats: LMFeatures = doc._.ember_lm
    cands = candidate_spans(feats, 12)
    assert len(cands) > 0
    assert np.all(cands[:, 3] <= feats.window)
    assert np.all(cands[:, 3] >= 1)
    for start, end, query, offset in cands:
        assert not doc[int(start)].is_space and not doc[int(end) - 1].is_space
        assert query == feats.align[end - 1, 1] + 1
        assert offset == query - feats.align[start, 0]


def test_targets_count_unreachable_gold_spans(ember_nlp):
    ner = ember_nlp.get_pipe("ember_ner")
    text = "Tim Cook met the President of the United States of America in Berlin"
    doc = ember_nlp.make_doc(text)
    long = "President of the United States of America"
    start = text.index(long)
    example = Example.from_dict(
        doc, {"entities": [(0, 8, "PER"), (start, start + len(long), "ORG")]}
    )
    output = ner.model.predict([ember_nlp.get_pipe("causal_lm")(doc.copy())])[0]
    piece_types, is_gold, missed = probe_targets(example, output, ner.labels)
    assert is_gold.sum() == 1 and missed == 1  # the long span exceeds the attention window
    assert set(piece_types.tolist()) == {0, 2, 3}


def test_empty_batch(ember_nlp):
    assert list(ember_nlp.pipe([])) == []
    assert ember_nlp.get_pipe("ember_ner").predict([]) == []
    Doc(ember_nlp.vocab)  # an empty doc goes through the pipeline
    assert len(ember_nlp("").ents) == 0


@pytest.mark.parametrize(
    "probe_config,extra_inputs",
    [
        ({"boundary_types": False, "attn_transform": "none"}, 0),  # EMBER as published
        ({"boundary_types": False, "attn_transform": "log"}, 0),
        ({"boundary_types": True, "attn_transform": "sqrt"}, 4 * 4),
    ],
)
def test_probe_variants_train(probe_config, extra_inputs):
    nlp = spacy.blank("en")
    nlp.add_pipe("causal_lm", config=tiny_lm_config())
    ner = nlp.add_pipe("ember_ner", config={"model": probe_config})
    nlp.initialize(lambda: make_examples(nlp))
    extractor = nlp.get_pipe("causal_lm").extractor
    assert (
        ner.model.get_ref("span_probe").get_dim("nI")
        == extractor.n_layers * extractor.n_heads + extra_inputs
    )
    losses = train(nlp, 20)
    assert losses[-1] < losses[0]


def test_unknown_attn_transform():
    nlp = spacy.blank("en")
    nlp.add_pipe("causal_lm", config=tiny_lm_config())
    with pytest.raises(ValueError, match="attn_transform"):
        nlp.add_pipe("ember_ner", config={"model": {"attn_transform": "cube"}})


@pytest.mark.parametrize("normalize", [True, False])
@pytest.mark.parametrize("depth", [0, 1, 2])
@pytest.mark.parametrize("scalar_mix", [False, True])
def test_probe_predictor_equals_thinc_predict(normalize, depth, scalar_mix):
    """Streaming's plain-numpy probe inference is thinc's forward pass, number for number."""
    probe = build_probe_mlp(
        width=16, depth=depth, dropout=0.2, normalize=normalize, scalar_mix=scalar_mix, nO=5
    )
    X = np.random.default_rng(depth).normal(size=(7, 12)).astype("float32") * 3 + 1
    for layer in probe.walk():
        if layer.name == "scalar_mix":
            layer.set_dim("nL", 3)
    probe.initialize(X=X)
    for param in ("W", "b", "G", "w", "gamma"):  # non-trivial values
        for layer in probe.walk():
            if layer.has_param(param):
                shape = layer.get_param(param).shape
                layer.set_param(param, np.random.default_rng(1).normal(size=shape).astype("f"))
    expected = probe.ops.to_numpy(probe.predict(X))
    got = probe_predictor(probe)(X)
    assert got.shape == expected.shape == (7, 5)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("budget", [1, 7, 30])
def test_predict_in_piece_chunks_equals_one_pass(ember_nlp, monkeypatch, budget):
    """Prediction runs the probes over chunks of docs (PREDICT_PIECES); a doc's outputs do
    not depend on which docs share its chunk."""
    from spacy_ember.ner import probes

    train(ember_nlp, 5)
    ner = ember_nlp.get_pipe("ember_ner")
    docs = list(ember_nlp.get_pipe("causal_lm").pipe(ember_nlp.make_doc(t) for t, _ in TRAIN_DATA))
    monkeypatch.setattr(probes, "PREDICT_PIECES", 10**9)
    whole = ner.predict(docs)  # one pass
    monkeypatch.setattr(probes, "PREDICT_PIECES", budget)
    chunked = ner.predict(docs)
    assert len(chunked) == len(whole) == len(docs)
    for a, b in zip(whole, chunked):
        np.testing.assert_allclose(a.type_logits, b.type_logits, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(a.span_logits, b.span_logits, rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(a.candidates, b.candidates)
