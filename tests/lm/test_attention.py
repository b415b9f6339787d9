"""The recorded attention band equals what eager attention computes."""

import copy

import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

from spacy_ember.lm.attention import ATTN_IMPLEMENTATION, record_attention
from spacy_ember.lm.band import attention_band

W = 5


def tiny_model(arch: str):
    torch.manual_seed(0)
    if arch == "llama":
        cfg = LlamaConfig(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            vocab_size=100,
            bos_token_id=1,
            eos_token_id=2,
            pad_token_id=0,
        )
        return LlamaForCausalLM(cfg).eval()
    cfg = GPT2Config(n_embd=32, n_layer=2, n_head=4, vocab_size=100, bos_token_id=1, eos_token_id=2)
    return GPT2LMHeadModel(cfg).eval()


def eager_attentions(model, ids, mask):
    model.set_attn_implementation("eager")
    with torch.no_grad():
        out = model(ids, attention_mask=mask, output_attentions=True)
    model.set_attn_implementation(ATTN_IMPLEMENTATION)
    return out


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_band_matches_eager_with_padding(arch):
    model = tiny_model(arch)
    ids = torch.randint(3, 100, (2, 20))
    mask = torch.ones_like(ids)
    mask[1, 15:] = 0
    ref = eager_attentions(model, ids, mask)
    with torch.no_grad(), record_attention(W) as rec:
        out = model(ids, attention_mask=mask)
    assert torch.allclose(out.logits, ref.logits, atol=1e-5)
    band = rec.stacked()
    n_heads = 4
    assert band.shape == (2, 20, W + 1, 2 * n_heads)
    for layer, att in enumerate(ref.attentions):
        cols = slice(layer * n_heads, (layer + 1) * n_heads)
        for q in range(20):
            for d in range(W + 1):
                if q - d < 0:
                    assert torch.all(band[:, q, d, cols] == 0)
                    continue
                assert torch.allclose(band[0, q, d, cols], att[0, :, q, q - d], atol=1e-5)
                if q < 15:
                    assert torch.allclose(band[1, q, d, cols], att[1, :, q, q - d], atol=1e-5)


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_band_with_kv_cache_matches_full_pass(arch):
    model = tiny_model(arch)
    ids = torch.randint(3, 100, (1, 12))
    ref = eager_attentions(model, ids, torch.ones_like(ids))
    with torch.no_grad():
        past = model(ids[:, :10], use_cache=True).past_key_values
        with record_attention(W) as rec:
            model(ids[:, 10:11], past_key_values=past, use_cache=True)
    band = rec.stacked()[0, 0]  # (W + 1, L * H)
    for layer, att in enumerate(ref.attentions):
        expected = att[0, :, 10, 10 - W : 11].flip(-1).T
        assert torch.allclose(band[:, layer * 4 : (layer + 1) * 4], expected, atol=1e-5)


def test_no_recording_outside_context():
    model = tiny_model("llama")
    model.set_attn_implementation(ATTN_IMPLEMENTATION)
    with torch.no_grad():
        model(torch.randint(3, 100, (1, 5)))
    with record_attention(W) as rec:
        pass
    assert not rec


def test_band_rows_are_probabilities():
    torch.manual_seed(1)
    q, k = torch.randn(1, 2, 6, 8), torch.randn(1, 2, 6, 8)
    band = attention_band(q, k, None, None, window=10)
    # The window covers every earlier key, so each row sums to one.
    assert torch.allclose(band.sum(-1), torch.ones(1, 2, 6), atol=1e-5)


@pytest.mark.parametrize("n_keys", [3, 6, 40])
@pytest.mark.parametrize("kv_heads", [1, 2, 4])
@pytest.mark.parametrize("softcap", [None, 20.0])
def test_single_query_fast_path_equals_general_path(n_keys, kv_heads, softcap):
    torch.manual_seed(n_keys + kv_heads)
    q, k = torch.randn(2, 4, 1, 8), torch.randn(2, kv_heads, n_keys, 8)
    fast = attention_band(q, k, None, 0.3, window=W, softcap=softcap)
    everything = torch.ones(2, 1, 1, n_keys, dtype=torch.bool)  # forces the general path
    general = attention_band(q, k, everything, 0.3, window=W, softcap=softcap)
    assert fast.shape == general.shape == (2, 4, 1, W + 1)
    assert torch.allclose(fast, general, atol=1e-6)


def test_inactive_recorder_records_nothing():
    model = tiny_model("llama")
    model.set_attn_implementation(ATTN_IMPLEMENTATION)
    with record_attention(W) as rec, torch.no_grad():
        rec.active = False
        model(torch.randint(3, 100, (1, 5)))
    assert not rec


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_recorded_generation_step_is_bit_identical_and_reads_only_the_window(arch):
    model = tiny_model(arch)
    model.set_attn_implementation(ATTN_IMPLEMENTATION)
    ids = torch.randint(3, 100, (1, 12))
    with torch.no_grad():
        past = model(ids[:, :11], use_cache=True).past_key_values
        plain = model(ids[:, 11:], past_key_values=copy.deepcopy(past), use_cache=True).logits
        with record_attention(W) as rec:
            recorded = model(ids[:, 11:], past_key_values=past, use_cache=True).logits
            kept = dict(rec.windows)
            band = rec.stacked()
    assert torch.equal(plain, recorded)
    assert sorted(kept) == [0, 1] and not rec.deferred
    assert all(key.shape[2] == W + 1 for _, key, _, _ in kept.values())  # never the whole cache
    ref = eager_attentions(model, ids, torch.ones_like(ids))
    for layer, att in enumerate(ref.attentions):
        expected = att[0, :, 11, 11 - W : 12].flip(-1).T
        assert torch.allclose(band[0, 0, :, layer * 4 : (layer + 1) * 4], expected, atol=1e-6)


def test_recorder_stacks_mixed_routes_in_layer_order():
    """Layers recorded by different routes (a full band, a kept window with its
    normaliser, a deferred query/keys) come out in layer order, equal to the band."""
    from spacy_ember.lm.attention import BandRecorder

    torch.manual_seed(3)
    q = [torch.randn(1, 4, 1, 8) for _ in range(3)]
    k = [torch.randn(1, 2, 9, 8) for _ in range(3)]
    expected = [attention_band(qi, ki, None, 0.3, window=W) for qi, ki in zip(q, k)]
    rec = BandRecorder(W)
    rec.record(2, expected[2])
    scores = torch.matmul(q[0].reshape(1, 2, 2, 8), k[0].transpose(-1, -2)) * 0.3
    rec.keep_window(0, q[0], k[0], torch.logsumexp(scores, -1).reshape(1, 4, 1), 0.3)
    rec.defer(1, q[1], k[1], 0.3, None)
    assert len(rec) == 3
    band = rec.stacked()[0, 0]  # (W + 1, 3 layers * 4 heads)
    assert not rec
    for layer in range(3):
        want = expected[layer][0, :, 0].T  # (W + 1, heads)
        assert torch.allclose(band[:, layer * 4 : (layer + 1) * 4], want, atol=1e-6)
