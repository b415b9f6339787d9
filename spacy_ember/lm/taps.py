"""Read a causal LM's hidden states and attention band from each forward pass it makes.

Forward hooks keep the hidden states of the configured layers (the tensors
`output_hidden_states` would return, without keeping every other layer's) and the
`ember_sdpa` attention records the attention band when a recorder is active. Batch
extraction reads its features this way; during generation the LM runs through
transformers' `generate`, and spacy-ember does not run it again.
"""

from collections.abc import Sequence
from contextlib import ExitStack

import numpy as np
import torch

from .attention import BandRecorder, record_attention

BLOCK_NAMES = ("layers", "h", "blocks")
NORM_NAMES = ("norm", "ln_f", "final_layer_norm", "final_norm")


def _blocks_and_norm(model: torch.nn.Module) -> tuple[Sequence[torch.nn.Module], torch.nn.Module]:
    """The decoder layers and the final norm, under the names transformers' causal LMs use
    (Llama, Gemma, Mistral, Qwen: layers/norm; GPT-2, Falcon: h/ln_f; GPT-NeoX, OPT:
    layers/final_layer_norm, OPT's under `decoder`)."""
    base = getattr(model, "base_model", model)
    base = getattr(base, "decoder", base)
    blocks = next((getattr(base, n) for n in BLOCK_NAMES if hasattr(base, n)), None)
    norm = next((getattr(base, n) for n in NORM_NAMES if getattr(base, n, None) is not None), None)
    if blocks is None or norm is None:
        raise ValueError(
            f"Cannot find the decoder layers of {type(model).__name__} (looked for "
            f"{'/'.join(BLOCK_NAMES)} and {'/'.join(NORM_NAMES)}): spacy-ember supports "
            "Llama-, Gemma-, GPT-2-, GPT-NeoX- and OPT-style models."
        )
    return blocks, norm


class LMTaps:
    """Within `with LMTaps(...) as taps:`, keep the hidden states hidden_states[l]
    (l in `layers`) of every forward pass, and the attention band while
    `taps.recorder.active` is set.

    hidden_states[l] is the input of decoder layer l for l < n_layers, and the final
    norm's output for l = n_layers, as in transformers' `output_hidden_states`.
    """

    def __init__(self, model: torch.nn.Module, layers: Sequence[int], window: int) -> None:
        self.window = window
        self.blocks, self.norm = _blocks_and_norm(model)
        n = len(self.blocks)
        self.layers = [layer if layer >= 0 else n + 1 + layer for layer in layers]
        self._states: dict[int, torch.Tensor] = {}
        self._stack = ExitStack()
        self._recorder: BandRecorder | None = None

    def __enter__(self) -> "LMTaps":
        for slot, layer in enumerate(self.layers):
            if layer < len(self.blocks):
                block = self.blocks[layer]
                hook = block.register_forward_pre_hook(self._pre_hook(slot), with_kwargs=True)
            else:
                hook = self.norm.register_forward_hook(self._post_hook(slot))
            self._stack.callback(hook.remove)
        self._recorder = self._stack.enter_context(record_attention(self.window))
        return self

    def __exit__(self, *exc) -> None:
        self._stack.close()
        self._recorder = None

    @property
    def recorder(self) -> BandRecorder:
        """The band recorder of the current `with` block."""
        if self._recorder is None:
            raise RuntimeError("LMTaps records only inside `with LMTaps(...) as taps:`.")
        return self._recorder

    def _pre_hook(self, slot: int):
        def hook(module, args, kwargs):
            self._states[slot] = args[0] if args else kwargs["hidden_states"]

        return hook

    def _post_hook(self, slot: int):
        def hook(module, args, output):
            self._states[slot] = output[0] if isinstance(output, tuple) else output

        return hook

    def states(self) -> torch.Tensor:
        """(B, T, n_layers, width): the last forward pass's hidden states."""
        return torch.stack([self._states[slot] for slot in range(len(self.layers))], dim=2)

    def hidden(self) -> np.ndarray:
        """(T, n_layers, width): the last forward pass's hidden states (batch item 0)."""
        return self.states()[0].float().cpu().numpy()

    def band(self) -> np.ndarray | None:
        """(T, W + 1, layers * heads) of the last forward pass if it was recorded; the
        recording is consumed, so a later unrecorded pass returns None."""
        if not self.recorder:
            return None
        band = self.recorder.stacked()[0].float().cpu().numpy()
        self.recorder.clear()
        return band
