"""The scalar mix of LM layers: its gradients, and a pipeline that uses it end to end."""

import numpy as np
import pytest
import spacy

from spacy_ember.ner.mix import mix_weights, scalar_mix

from ..helpers import make_examples, tiny_lm_config


def _mix(n_layers: int, w: np.ndarray, gamma: float):
    model = scalar_mix()
    model.set_dim("nL", n_layers)
    model.initialize()
    model.set_param("w", w.astype("float32"))
    model.set_param("gamma", np.asarray([gamma], dtype="float32"))
    return model


def test_mix_is_a_weighted_sum_of_layers():
    X = np.arange(2 * 3 * 4, dtype="float32").reshape(2, 12)
    model = _mix(3, np.zeros(3), 1.0)
    np.testing.assert_allclose(model.predict(X), X.reshape(2, 3, 4).mean(axis=1), rtol=1e-6)
    model.set_param("w", np.asarray([0, 50, 0], dtype="float32"))  # all weight on layer 1
    np.testing.assert_allclose(model.predict(X), X.reshape(2, 3, 4)[:, 1], rtol=1e-5)


def test_gradients_match_finite_differences():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(5, 3 * 4)).astype("float64")
    dY = rng.normal(size=(5, 4))
    w0, gamma0 = rng.normal(size=3), 1.7

    def loss(w, gamma, X_):
        return float(
            (gamma * np.einsum("l,nld->nd", mix_weights(w), X_.reshape(5, 3, 4)) * dY).sum()
        )

    model = _mix(3, w0, gamma0)
    _, backprop = model.begin_update(X.astype("float32"))
    dX = backprop(dY.astype("float32"))
    eps = 1e-5
    for i in range(3):
        step = np.eye(3)[i] * eps
        numeric = (loss(w0 + step, gamma0, X) - loss(w0 - step, gamma0, X)) / (2 * eps)
        assert model.get_grad("w")[i] == pytest.approx(numeric, rel=1e-3, abs=1e-4)
    numeric = (loss(w0, gamma0 + eps, X) - loss(w0, gamma0 - eps, X)) / (2 * eps)
    assert model.get_grad("gamma")[0] == pytest.approx(numeric, rel=1e-3)
    unit = np.zeros_like(X)
    unit[2, 7] = eps
    numeric = (loss(w0, gamma0, X + unit) - loss(w0, gamma0, X - unit)) / (2 * eps)
    assert dX[2, 7] == pytest.approx(numeric, rel=1e-3)


def test_input_that_does_not_split_into_the_layers_is_refused():
    with pytest.raises(ValueError, match="do not split"):
        _mix(3, np.zeros(3), 1.0).predict(np.zeros((2, 10), dtype="float32"))


def test_pipeline_with_a_scalar_mix_trains_and_round_trips(tmp_path):
    spacy.util.fix_random_seed(0)
    nlp = spacy.blank("en")
    nlp.add_pipe("causal_lm", config=tiny_lm_config(layers=[0, 1, 2]))
    nlp.add_pipe("ember_ner", config={"model": {"typing_probe": {"scalar_mix": True}}})
    examples = make_examples(nlp)
    nlp.initialize(lambda: examples)
    mix = next(x for x in nlp.get_pipe("ember_ner").model.walk() if x.name == "scalar_mix")
    assert mix.get_dim("nL") == 3
    optimizer = nlp.create_optimizer()
    for _ in range(3):
        nlp.update(examples, sgd=optimizer)
    assert np.abs(mix.get_param("w")).sum() > 0  # the layer weights learn
    text = examples[0].text
    before = [(e.text, e.label_) for e in nlp(text).ents]
    nlp.to_disk(tmp_path / "p")
    loaded = spacy.load(tmp_path / "p")
    assert [(e.text, e.label_) for e in loaded(text).ents] == before
    np.testing.assert_array_equal(
        next(
            x for x in loaded.get_pipe("ember_ner").model.walk() if x.name == "scalar_mix"
        ).get_param("w"),
        mix.get_param("w"),
    )
