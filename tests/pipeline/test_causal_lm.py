"""The causal_lm component: features, windows, batching, cache and frozenness."""

import numpy as np
import pytest
import spacy
import torch
from spacy.tokens import Doc

from spacy_ember.lm.extractor import plan_windows
from spacy_ember.pipeline.causal_lm import CausalLM

from ..helpers import tiny_lm_config


@pytest.mark.parametrize("n_pieces", [0, 1, 29, 30, 31, 100, 1000])
@pytest.mark.parametrize("max_length,context", [(32, 8), (16, 4), (64, 16)])
def test_windows_cover_every_piece_once(n_pieces, max_length, context):
    windows = plan_windows(n_pieces, max_length, context)
    kept = [k for w in windows for k in range(w.start, w.stop)]
    assert kept == list(range(n_pieces))
    assert windows[-1].last and not any(w.last for w in windows[:-1])
    for w in windows:
        length = 1 + (w.stop - w.ctx) + (1 if w.last else 0)
        assert length <= max_length
        assert w.start - w.ctx == (0 if w is windows[0] else context)


def test_features_shapes(lm_nlp):
    doc = lm_nlp("Angela Merkel met Tim Cook in Berlin.")
    feats = doc._.ember_lm
    lm = lm_nlp.get_pipe("causal_lm").extractor
    n = feats.raw.n_pieces
    assert feats.hidden.shape == (n + 1, 2, lm.width)
    assert feats.attn.shape == (n + 1, 4 + 1, lm.n_layers * lm.n_heads)
    assert feats.align.shape == (len(doc), 2)
    assert feats.align[-1, 1] == n - 1
    # the lookahead row attends to real pieces
    assert feats.attn[n, 1:].sum() > 0


@pytest.mark.parametrize("layers", [[0, 2], [1, -1]])
def test_hidden_features_are_transformers_hidden_states(architecture, layers):
    """The hooks read exactly `output_hidden_states[l]` for the configured layers (the
    embeddings for 0, the final norm's output for -1), for every piece and the lookahead."""
    nlp = spacy.blank("en")
    nlp.add_pipe("causal_lm", config=tiny_lm_config(architecture, layers=layers))
    text = "Angela Merkel met Tim Cook in Berlin."
    feats = nlp(text)._.ember_lm
    ex = nlp.get_pipe("causal_lm").extractor
    ids = ex.lm.tokenizer(text, add_special_tokens=False)["input_ids"]
    ids = torch.tensor([[ex.start_token_id, *ids, ex.lookahead_token_id]])
    with torch.no_grad():
        out = ex.lm.model.base_model(input_ids=ids, output_hidden_states=True)
    expected = torch.stack([out.hidden_states[layer][0, 1:] for layer in layers], dim=1)
    assert feats.hidden.shape == tuple(expected.shape)
    np.testing.assert_allclose(
        feats.hidden.astype("float32"), expected.numpy(), rtol=1e-2, atol=1e-2
    )


def test_long_doc_is_windowed_and_fully_covered(lm_nlp):
    words = ["Berlin", "is", "large", "and", "Paris", "is", "old", "."] * 40
    doc = lm_nlp(" ".join(words))
    feats = doc._.ember_lm
    n = feats.raw.n_pieces
    assert n > 32 * 4  # several windows
    assert np.all(np.abs(feats.hidden.astype("float32")).sum(axis=(1, 2)) > 0)
    # every query row has a full attention window past the first W pieces
    assert np.all(feats.attn[4:, :, :].sum(axis=(1, 2)) > 0)
    assert feats.align[-1, 1] == n - 1


def test_window_context_matches_unwindowed_prefix(architecture):
    """The first window's features equal those of a run with one big window."""
    small = spacy.blank("en")
    small.add_pipe("causal_lm", config=tiny_lm_config(architecture))
    big = spacy.blank("en")
    big.add_pipe("causal_lm", config=tiny_lm_config(architecture, max_length=256))
    text = " ".join(["Angela Merkel visited the city of Geneva"] * 8)
    f_small, f_big = small(text)._.ember_lm, big(text)._.ember_lm
    np.testing.assert_allclose(
        f_small.hidden[:30].astype("float32"), f_big.hidden[:30].astype("float32"), atol=1e-2
    )
    np.testing.assert_allclose(
        f_small.attn[:30].astype("float32"), f_big.attn[:30].astype("float32"), atol=1e-2
    )


def test_batch_equals_single(lm_nlp):
    texts = [
        "Angela Merkel met Tim Cook in Berlin.",
        "Hi",
        "Apple opened offices in New York today.",
    ]
    batched = [d._.ember_lm for d in lm_nlp.pipe(texts, batch_size=3)]
    lm_nlp.get_pipe("causal_lm").extractor.cache = None
    for text, fb in zip(texts, batched):
        fs = lm_nlp(text)._.ember_lm
        np.testing.assert_allclose(
            fs.hidden.astype("float32"), fb.hidden.astype("float32"), atol=1e-2
        )
        np.testing.assert_allclose(fs.attn.astype("float32"), fb.attn.astype("float32"), atol=1e-2)


def test_cache_returns_same_features_without_running_the_lm(lm_nlp):
    extractor = lm_nlp.get_pipe("causal_lm").extractor
    first = lm_nlp("Reuters reported from Brussels.")._.ember_lm
    misses = extractor.cache.misses
    second = lm_nlp("Reuters reported from Brussels.")._.ember_lm
    assert extractor.cache.misses == misses
    assert second.raw is first.raw


def test_disk_cache_persists(tmp_path, architecture):
    config = tiny_lm_config(
        architecture, cache={"@misc": "spacy-ember.FeatureCache.v1", "directory": str(tmp_path)}
    )
    nlp1 = spacy.blank("en")
    nlp1.add_pipe("causal_lm", config=config)
    f1 = nlp1("Geneva talks")._.ember_lm
    nlp2 = spacy.blank("en")
    nlp2.add_pipe("causal_lm", config=config)
    extractor = nlp2.get_pipe("causal_lm").extractor
    f2 = nlp2("Geneva talks")._.ember_lm
    assert extractor.cache.hits == 1 and extractor.cache.misses == 0
    np.testing.assert_array_equal(f1.attn, f2.attn)


def test_start_token_is_bos_or_eos(lm_nlp):
    extractor = lm_nlp.get_pipe("causal_lm").extractor
    tok = extractor.lm.tokenizer
    assert extractor.start_token_id == tok.bos_token_id
    assert extractor.lookahead_token_id == tok.eos_token_id
    tok.bos_token = None
    try:
        assert extractor.start_token_id == tok.eos_token_id
    finally:
        tok.bos_token = "<s>"


def test_text_is_tokenized_without_special_tokens(lm_nlp):
    extractor = lm_nlp.get_pipe("causal_lm").extractor
    ids, offsets = extractor.tokenize(["Berlin"])
    assert extractor.start_token_id not in ids[0]
    assert offsets[0][0][0] == 0 and offsets[0][-1][1] == len("Berlin")


def test_lm_is_frozen_and_threads_are_respected(lm_nlp):
    torch.set_num_threads(1)
    try:
        lm_nlp("Berlin is large.")
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(2)
    model = lm_nlp.get_pipe("causal_lm").extractor.lm.model
    assert not model.training
    assert not any(p.requires_grad for p in model.parameters())


def test_lm_weights_are_not_serialized(lm_nlp, tmp_path):
    lm_nlp("warm up")
    lm_nlp.to_disk(tmp_path)
    size = sum(f.stat().st_size for f in (tmp_path / "causal_lm").rglob("*") if f.is_file())
    assert size < 1024  # the loader config lives in config.cfg; no weights are written
    nlp2 = spacy.load(tmp_path)
    assert isinstance(nlp2.get_pipe("causal_lm"), CausalLM)
    np.testing.assert_array_equal(nlp2("Geneva")._.ember_lm.attn, lm_nlp("Geneva")._.ember_lm.attn)


@pytest.mark.parametrize("store_features", [True, False])
def test_features_survive_doc_serialization_only_if_stored(lm_nlp, store_features):
    lm_nlp.get_pipe("causal_lm").store_features = store_features
    doc = lm_nlp("Tim Cook")
    assert doc._.ember_lm is not None  # on the Doc in memory either way
    doc2 = Doc(lm_nlp.vocab).from_bytes(doc.to_bytes())
    if not store_features:
        assert doc2._.ember_lm is None
        return
    np.testing.assert_array_equal(doc2._.ember_lm.attn, doc._.ember_lm.attn)
    np.testing.assert_array_equal(doc2._.ember_lm.align, doc._.ember_lm.align)


@pytest.mark.parametrize(
    "overrides,message",
    [
        ({"context": 2}, "context"),
        ({"max_length": 10}, "max_length"),
        ({"attn_window": 0}, "attn_window"),
        ({"feature_dtype": "int8"}, "feature_dtype"),
    ],
)
def test_invalid_settings_give_clear_errors(overrides, message):
    nlp = spacy.blank("en")
    with pytest.raises(ValueError, match=message):
        nlp.add_pipe("causal_lm", config=tiny_lm_config(**overrides))


@pytest.mark.parametrize(
    "overrides,message",
    [({"layers": [7]}, "Layer 7"), ({"max_length": 1024}, "context size")],
)
def test_settings_checked_against_the_model(overrides, message):
    nlp = spacy.blank("en")
    nlp.add_pipe("causal_lm", config=tiny_lm_config(**overrides))
    with pytest.raises(ValueError, match=message):
        nlp("text")


def test_n_process_after_the_lm_ran_in_the_parent(lm_nlp):
    lm_nlp.get_pipe("causal_lm").store_features = True  # workers send the docs as bytes
    lm_nlp("warm up")  # torch's thread pool is now in use in this process
    texts = ["Angela Merkel met Tim Cook.", "Paris", "Apple opened offices in New York."] * 2
    docs = list(lm_nlp.pipe(texts, n_process=2, batch_size=2))
    for doc, text in zip(docs, texts):
        np.testing.assert_allclose(
            doc._.ember_lm.attn.astype("float32"),
            lm_nlp(text)._.ember_lm.attn.astype("float32"),
            atol=1e-2,
        )


def test_initialize_prefills_the_cache(architecture):
    from ..helpers import make_examples

    nlp = spacy.blank("en")
    nlp.add_pipe("causal_lm", config=tiny_lm_config(architecture))
    examples = make_examples(nlp)
    nlp.initialize(lambda: examples)
    cache = nlp.get_pipe("causal_lm").extractor.cache
    assert len(cache) == len(examples)
    misses = cache.misses
    list(nlp.pipe(eg.reference.text for eg in examples))
    assert cache.misses == misses


def test_prefill_warns_when_the_cache_is_too_small(architecture):
    nlp = spacy.blank("en")
    cache = {"@misc": "spacy-ember.FeatureCache.v1", "max_mb": 0.001}
    nlp.add_pipe("causal_lm", config=tiny_lm_config(architecture, cache=cache))
    with pytest.warns(UserWarning, match="raise its max_mb"):
        nlp.get_pipe("causal_lm").extractor.prefill(["Berlin is large.", "Paris"])


def _sentence_hidden(doc: Doc, sentence: int) -> np.ndarray:
    """The hidden states of a sentence's pieces (all but its last token's)."""
    sent = list(doc.sents)[sentence]
    feats = doc._.ember_lm
    first, last = feats.align[sent.start, 0], feats.align[sent.end - 1, 0]
    return feats.hidden[first:last].astype("float32")


def test_a_sentence_reads_its_document_before_it(lm_nlp):
    """Documents give the LM left context: a sentence's features change with the text
    before it, and a document's first sentence reads exactly what it reads alone."""
    from spacy_ember.workflow.corpora import document_to_doc

    vocab = lm_nlp.vocab
    leeds = (["Leeds", "beat", "Chelsea", "2-1", "."], ["B-ORG", "O", "B-ORG", "O", "O"])
    soccer = (["SOCCER", "-", "LATEST", "RESULTS"], ["O"] * 4)
    travel = (["Visiting", "Yorkshire", "in", "spring"], ["O", "B-LOC", "O", "O"])
    docs = [
        document_to_doc(vocab, sentences)
        for sentences in ([soccer, leeds], [travel, leeds], [leeds], [leeds, travel])
    ]
    cache = lm_nlp.get_pipe("causal_lm").extractor.cache
    docs = list(lm_nlp.pipe(docs))
    assert cache.misses == 4  # one entry per document text: the context is in the key
    after_soccer, after_travel = _sentence_hidden(docs[0], 1), _sentence_hidden(docs[1], 1)
    assert after_soccer.shape == after_travel.shape
    assert not np.allclose(after_soccer, after_travel, atol=1e-3)
    np.testing.assert_allclose(
        _sentence_hidden(docs[3], 0), _sentence_hidden(docs[2], 0), atol=1e-2
    )


@pytest.mark.parametrize("feature_dtype", ["float16", "float32"])
def test_hidden_states_beyond_float16_are_refused_not_stored_as_inf(feature_dtype):
    nlp = spacy.blank("en")
    lm = nlp.add_pipe("causal_lm", config=tiny_lm_config(feature_dtype=feature_dtype, cache=None))
    model = lm.model.attrs["extractor"].lm.model
    with torch.no_grad():
        model.get_input_embeddings().weight.mul_(1e8)  # a residual stream like Gemma-3's
    if feature_dtype == "float16":
        with pytest.raises(ValueError, match='feature_dtype = "float32"'):
            nlp("Angela Merkel met Tim Cook.")
    else:  # stored as computed: finite, and not clipped to float16's range
        hidden = nlp("Angela Merkel met Tim Cook.")._.ember_lm.raw.hidden
        assert np.isfinite(hidden).all() and np.abs(hidden).max() > np.finfo(np.float16).max


def test_bfloat16_features_are_close_to_float32_and_cached_apart():
    text = "Angela Merkel met Tim Cook in Berlin."
    features, keys = {}, {}
    for dtype in ("float32", "bfloat16"):
        config = tiny_lm_config(feature_dtype="float32")
        config["model"]["loader"]["dtype"] = dtype
        nlp = spacy.blank("en")
        lm = nlp.add_pipe("causal_lm", config=config)
        features[dtype] = nlp(text)._.ember_lm.raw
        keys[dtype] = lm.model.attrs["extractor"].signature
    assert keys["float32"] != keys["bfloat16"]
    for part in ("hidden", "attn"):
        a, b = getattr(features["float32"], part), getattr(features["bfloat16"], part)
        assert a.shape == b.shape and not np.array_equal(a, b)  # bf16 really ran
        np.testing.assert_allclose(b, a, atol=0.05 * np.abs(a).max(), rtol=0.05)
