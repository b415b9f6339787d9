"""Record the attention weights EMBER's span probe reads, while the LM runs with SDPA.

The span probe needs, for each query position q, the attention weights of every
layer and head from q to the keys q-W..q. Eager attention materialises full
T x T matrices for every layer; instead we register an attention implementation
("ember_sdpa") that computes the output with SDPA and, when a recorder is active,
recomputes just that band from the query and key states the layer already has.
The same code serves a full forward pass and one-token generation steps with a KV
cache, so batch and streaming features are the same numbers.

A generation step on CPU reads even less: SDPA's CPU kernel (flash attention) also
returns each query's log-sum-exp, the softmax normaliser, so the band needs only the
last W + 1 keys, never the whole cache.
"""

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Optional

import torch
from torch.nn.attention import SDPBackend
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward, use_gqa_in_sdpa
from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, sdpa_mask

from .band import as_band, attention_band, default_scale, single_query_bands

ATTN_IMPLEMENTATION = "ember_sdpa"

_RECORDER: ContextVar[Optional["BandRecorder"]] = ContextVar("ember_band_recorder", default=None)


class BandRecorder:
    """Collects, per layer, the attention band (batch, heads, queries, W + 1).

    A generation step (one unmasked query) only keeps references to the layer's query
    and key states; `stacked` then computes the band of all such layers in one batched
    pass, instead of a dozen small tensor operations inside every layer.
    """

    def __init__(self, window: int) -> None:
        self.window = window
        self.bands: dict[int, torch.Tensor] = {}
        self.deferred: dict[int, tuple[torch.Tensor, torch.Tensor, float | None, float | None]] = {}
        # Generation steps on CPU: the query, the last W + 1 keys and the log-sum-exp.
        self.windows: dict[int, tuple[torch.Tensor, torch.Tensor, torch.Tensor, float]] = {}
        # Streaming switches recording off for steps whose band no span can use.
        self.active = True

    def record(self, layer_idx: int, band: torch.Tensor) -> None:
        self.bands[layer_idx] = band

    def defer(
        self,
        layer_idx: int,
        query: torch.Tensor,
        key: torch.Tensor,
        scaling: float | None,
        softcap: float | None,
    ) -> None:
        self.deferred[layer_idx] = (query, key, scaling, softcap)

    def keep_window(
        self,
        layer_idx: int,
        query: torch.Tensor,
        key: torch.Tensor,
        lse: torch.Tensor,
        scale: float,
    ) -> None:
        """A generation step whose softmax normaliser `lse` (B, H, 1) is known: keep the
        query and a view of the last W + 1 keys only."""
        self.windows[layer_idx] = (query, key[:, :, -(self.window + 1) :], lse, scale)

    def __len__(self) -> int:
        """Layers recorded so far."""
        return len(self.bands) + len(self.deferred) + len(self.windows)

    def clear(self) -> None:
        self.bands.clear()
        self.deferred.clear()
        self.windows.clear()

    def stacked(self) -> torch.Tensor:
        """Return (batch, queries, W + 1, layers * heads), layer-major like EMBER's features."""
        if not self:
            raise RuntimeError(
                "The LM ran without calling its attention through transformers' attention "
                "interface, so no attention weights were recorded. spacy-ember needs a model "
                "whose attention layers use `ALL_ATTENTION_FUNCTIONS` (Llama, Gemma, GPT-2, ...)."
            )
        # One batched pass per group of equally shaped layers (all layers, for most
        # models), instead of a dozen small operations inside each layer.
        parts: list[tuple[list[int], torch.Tensor]] = []  # layers, (L, B, H, Tq, W + 1)
        window_groups: dict[tuple, list[int]] = {}
        for layer, (query, key, _, scale) in self.windows.items():
            window_groups.setdefault((query.shape, key.shape, scale), []).append(layer)
        for (*_, scale), layers in window_groups.items():
            parts.append((layers, self._window_bands(layers, scale)))
        groups: dict[tuple, list[int]] = {}
        for layer, (query, key, scaling, softcap) in self.deferred.items():
            groups.setdefault((query.shape, key.shape, scaling, softcap), []).append(layer)
        for (*_, scaling, softcap), layers in groups.items():
            parts.append((layers, self._bands_of(layers, scaling, softcap)))
        if self.bands:
            parts.append((list(self.bands), torch.stack(list(self.bands.values()))))
        self.clear()
        layers = [layer for group, _ in parts for layer in group]
        stacked = parts[0][1] if len(parts) == 1 else torch.cat([band for _, band in parts])
        if layers != sorted(layers):
            order = sorted(range(len(layers)), key=layers.__getitem__)
            stacked = stacked[torch.tensor(order, device=stacked.device)]
        L, B, H, Tq, W1 = stacked.shape
        return stacked.permute(1, 3, 4, 0, 2).reshape(B, Tq, W1, L * H)

    def _window_bands(self, layers: list[int], scale: float) -> torch.Tensor:
        """exp(scale * q.k - lse) to the last W + 1 keys: (L, B, H, 1, W + 1)."""
        queries = torch.stack([self.windows[i][0] for i in layers]).float()
        keys = torch.stack([self.windows[i][1] for i in layers]).float()
        lses = torch.stack([self.windows[i][2] for i in layers]).float()
        L, B, H, _, D = queries.shape
        Hkv, n = keys.shape[2], keys.shape[3]
        # head h reads key head h // (H // Hkv): one (H / Hkv) x n product per key head
        groups = L * B * Hkv
        scores = torch.baddbmm(
            lses.reshape(groups, H // Hkv, 1),
            queries.reshape(groups, H // Hkv, D),
            keys.reshape(groups, n, D).transpose(1, 2),
            beta=-1.0,
            alpha=scale,
        )  # scale * q.k - lse
        return as_band(scores.exp_().reshape(L, B, H, 1, n), self.window)

    def _bands_of(
        self, layers: list[int], scaling: float | None, softcap: float | None
    ) -> torch.Tensor:
        queries = torch.stack([self.deferred[i][0] for i in layers])
        keys = torch.stack([self.deferred[i][1] for i in layers])
        return single_query_bands(queries, keys, scaling, self.window, softcap)


@contextmanager
def record_attention(window: int) -> Iterator[BandRecorder]:
    """Within this block, every `ember_sdpa` attention call records its band."""
    recorder = BandRecorder(window)
    token = _RECORDER.set(recorder)
    try:
        yield recorder
    finally:
        _RECORDER.reset(token)


def ember_sdpa_attention(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    **kwargs,
):
    """SDPA attention that also records the attention band when a recorder is active."""
    recorder = _RECORDER.get()
    if recorder is not None and recorder.active:
        layer = getattr(module, "layer_idx", len(recorder))
        if query.shape[2] == 1 and attention_mask is None:
            step = _cpu_step_with_lse(module, query, key, value, dropout, scaling, kwargs)
            if step is not None:
                output, lse, scale = step
                recorder.keep_window(layer, query, key, lse, scale)
                return output, None
            recorder.defer(layer, query, key, scaling, kwargs.get("softcap"))
        else:
            band = attention_band(
                query, key, attention_mask, scaling, recorder.window, kwargs.get("softcap")
            )
            recorder.record(layer, band)
    output, _ = sdpa_attention_forward(
        module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs
    )
    return output, None


_FLASH = SDPBackend.FLASH_ATTENTION.value
# torch's own pick of an SDPA kernel for given inputs (private; None if it goes away).
_FUSED_SDP_CHOICE = getattr(torch, "_fused_sdp_choice", None)


def _cpu_step_with_lse(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    dropout: float,
    scaling: float | None,
    kwargs: dict,
) -> tuple[torch.Tensor, torch.Tensor, float] | None:
    """A one-query generation step through the very kernel `sdpa_attention_forward` runs
    on CPU (flash attention, bit-identical output), which also returns the log-sum-exp.

    Returns (output as sdpa_attention_forward shapes it, lse (B, H, 1), scale), or None
    where torch or transformers would take another route (GPU, math kernel, packed GQA,
    softcap, position bias, paged cache).
    """
    choose = _FUSED_SDP_CHOICE
    if (
        choose is None
        or query.device.type != "cpu"
        or dropout
        or any(kwargs.get(k) is not None for k in ("softcap", "position_bias", "cache"))
    ):
        return None
    gqa = getattr(module, "num_key_value_groups", 1) > 1
    if gqa and not use_gqa_in_sdpa(None, key, value):
        return None
    if choose(query, key, value, None, 0.0, False, scale=scaling, enable_gqa=gqa) != _FLASH:
        return None
    output, lse = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(
        query, key, value, 0.0, False, scale=scaling
    )[:2]
    return output.transpose(1, 2).contiguous(), lse, default_scale(scaling, query.shape[-1])


AttentionInterface.register(ATTN_IMPLEMENTATION, ember_sdpa_attention)
ALL_MASK_ATTENTION_FUNCTIONS.register(ATTN_IMPLEMENTATION, sdpa_mask)
