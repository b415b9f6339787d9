"""Integration tests on the real embedded backbone (SmolLM2-135M-Instruct GGUF).

Run with: python -m pytest -m slow
"""

import os
import random
from pathlib import Path

import pytest
import spacy
from spacy.training import Example

from spacy_ember.corpora import read_bio, sentence_to_doc
from spacy_ember.loaders import EMBEDDED_MODEL, hf_causal_lm

pytestmark = pytest.mark.slow

DATA = Path(os.environ.get("SPACY_EMBER_DATA", Path(__file__).parents[2] / "shared" / "data"))
CONLL = DATA / "conll2003_en" / "iob2"


@pytest.fixture(scope="module")
def smollm2():
    return hf_causal_lm(EMBEDDED_MODEL)()


def conll(split, vocab, n):
    if not (CONLL / f"{split}.txt").is_file():
        pytest.skip(f"CoNLL-2003 not found under {CONLL} (set SPACY_EMBER_DATA)")
    out = []
    for words, tags in read_bio(CONLL / f"{split}.txt"):
        out.append(sentence_to_doc(vocab, words, tags))
        if len(out) == n:
            return out
    return out


def test_embedded_model_shape_and_tokenizer(smollm2):
    config = smollm2.model.config
    assert (config.model_type, config.num_hidden_layers, config.num_attention_heads) == (
        "llama",
        30,
        9,
    )
    tok = smollm2.tokenizer
    ids = tok("Angela Merkel", add_special_tokens=False)["input_ids"]
    # transformers 5 matches llama.cpp: no BOS is prepended; spacy-ember adds its own start token
    assert tok.bos_token == "<|im_start|>" and tok.bos_token_id not in ids
    assert tok("Angela Merkel")["input_ids"] == ids


def test_converted_copy_loads_as_a_local_directory(smollm2, tmp_path):
    from spacy_ember.loaders import cache_root

    converted = [
        p
        for p in cache_root().glob("SmolLM2-135M-Instruct.Q4_1-*")
        if (p / "config.json").is_file()
    ]
    assert converted, "the GGUF file was converted to safetensors once"
    local = hf_causal_lm(str(converted[0]))()
    assert local.model.config.num_hidden_layers == 30


def test_short_training_run_is_far_above_chance(smollm2):
    nlp = spacy.blank("en")
    nlp.add_pipe("causal_lm", config={"model": {"layers": [16], "batch_size": 16}})
    ner = nlp.add_pipe("ember_ner")
    train = [Example(nlp.make_doc(d.text), d) for d in conll("train", nlp.vocab, 400)]
    dev = [Example(nlp.make_doc(d.text), d) for d in conll("dev", nlp.vocab, 200)]
    optimizer = nlp.initialize(lambda: train)
    lm_params = sum(p.numel() for p in nlp.get_pipe("causal_lm").extractor.lm.model.parameters())
    probe_params = sum(
        node.get_param(name).size
        for node in ner.model.walk()
        for name in node.param_names
        if node.has_param(name)
    )
    assert probe_params < 0.01 * lm_params
    for epoch in range(8):
        random.Random(epoch).shuffle(train)
        for b in range(0, len(train), 32):
            nlp.update(train[b : b + 32], sgd=optimizer, drop=0.1)
    scores = nlp.evaluate(dev)
    print("dev scores", scores["ents_f"], scores["ents_per_type"])
    assert scores["ents_f"] > 0.4
    doc = nlp("Angela Merkel met Tim Cook in Berlin.")
    assert {e.label_ for e in doc.ents} <= {"PER", "LOC", "ORG", "MISC"}
