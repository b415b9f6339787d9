"""A tiny random causal LM built in-process: the backbone of tests and smoke runs."""

from collections.abc import Callable

import torch
from spacy.util import registry
from transformers import PreTrainedModel

from .loaders import DTYPES, LoadedLM, freeze


@registry.misc("spacy-ember.RandomCausalLM.v1")
def random_causal_lm(
    architecture: str = "llama",
    hidden_size: int = 32,
    n_layers: int = 2,
    n_heads: int = 4,
    n_kv_heads: int = 2,
    vocab_size: int = 400,
    max_positions: int = 256,
    seed: int = 0,
    dtype: str = "float32",
) -> Callable[[], LoadedLM]:
    """A tiny randomly initialised Llama or GPT-2 with an in-process BPE tokenizer.

    For tests and smoke runs: built from a config in-process, never downloaded, and
    identical on every call with the same arguments (so a saved pipeline reloads it).
    dtype: the weights' precision after building in float32 ("bfloat16", "float16").
    """

    def load() -> LoadedLM:
        from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

        from .tiny_tokenizer import build_tiny_tokenizer

        tokenizer = build_tiny_tokenizer(vocab_size)
        special = dict(
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
        if architecture not in ("llama", "gpt2"):
            raise ValueError(f"Unknown architecture '{architecture}': use 'llama' or 'gpt2'.")
        model: PreTrainedModel
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            if architecture == "llama":
                model = LlamaForCausalLM(
                    LlamaConfig(
                        hidden_size=hidden_size,
                        intermediate_size=2 * hidden_size,
                        num_hidden_layers=n_layers,
                        num_attention_heads=n_heads,
                        num_key_value_heads=n_kv_heads,
                        vocab_size=len(tokenizer),
                        max_position_embeddings=max_positions,
                        **special,
                    )
                )
            else:
                model = GPT2LMHeadModel(
                    GPT2Config(
                        n_embd=hidden_size,
                        n_layer=n_layers,
                        n_head=n_heads,
                        vocab_size=len(tokenizer),
                        n_positions=max_positions,
                        **special,
                    )
                )
        name = f"random-{architecture}-{hidden_size}x{n_layers}x{n_heads}-{vocab_size}-s{seed}"
        return freeze(model, tokenizer, name, torch.device("cpu"), DTYPES[dtype])

    return load
