"""A small byte-level BPE tokenizer trained in-process, for the random test LMs."""

from functools import lru_cache

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

CORPUS = [
    "Angela Merkel met Tim Cook in Berlin on Monday.",
    "The European Union rejected the German call to boycott British lamb.",
    "Peter Blackburn reported from Brussels for Reuters.",
    "Apple and Microsoft opened offices in New York and San Francisco.",
    "The United Nations said the talks in Geneva would continue next week.",
    "She said the company would announce results for the third quarter.",
    "Paris, London and Tokyo are large cities; Lake Victoria is in Africa.",
] * 4
SPECIALS = ["<|endoftext|>", "<s>", "</s>", "<pad>"]


@lru_cache(maxsize=4)
def _train(vocab_size: int) -> str:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIALS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(CORPUS, trainer)
    return tok.to_str()


def build_tiny_tokenizer(vocab_size: int = 400):
    """Deterministic for a given vocab size; words outside CORPUS split into many pieces."""
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer.from_str(_train(vocab_size)),
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        unk_token="<|endoftext|>",
    )
