"""How a generation runs: greedy or sampled, how long, with or without a chat template.

Kept free of torch imports: the command line reads its option defaults from here.
"""

from dataclasses import dataclass


@dataclass
class GenerationSettings:
    """How `generate_with_entities` generates: greedy unless do_sample."""

    max_new_tokens: int = 60
    do_sample: bool = False
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int | None = None
    chat: bool | None = None  # None: use the chat template if the tokenizer has one
