"""The attention band EMBER's span probe reads, computed from a layer's query and keys.

For each query position q: the softmax attention weights of every head to the keys
q - W .. q, normalised over all keys exactly as the layer's own softmax is.
"""

import torch

# Queries processed at once when computing the band: bounds the transient
# (batch, heads, chunk, keys) score tensor.
QUERY_CHUNK = 256


def attention_band(
    query: torch.Tensor,
    key: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float | None,
    window: int,
    softcap: float | None = None,
) -> torch.Tensor:
    """Softmax attention weights from each query to the W + 1 keys ending at its position.

    query: (B, H, Tq, D); key: (B, Hkv, Tk, D), queries are the last Tq of Tk positions.
    Returns (B, H, Tq, W + 1) where [..., q, d] is the weight from q to q - d (0 where
    q - d < 0 or masked). The normaliser runs over all keys, exactly as the layer's own
    softmax does.
    """
    B, H, Tq, D = query.shape
    Tk = key.shape[2]
    if Tq == 1 and attention_mask is None:
        return single_query_bands(query[None], key[None], scaling, window, softcap)[0]
    if key.shape[1] != H:
        key = key.repeat_interleave(H // key.shape[1], dim=1)
    scale = default_scale(scaling, D)
    device = query.device
    offsets = torch.arange(window + 1, device=device)
    bands = []
    for start in range(0, Tq, QUERY_CHUNK):
        stop = min(Tq, start + QUERY_CHUNK)
        q_pos = torch.arange(Tk - Tq + start, Tk - Tq + stop, device=device)
        scores = (
            torch.matmul(query[:, :, start:stop].float(), key.float().transpose(-1, -2)) * scale
        )
        if softcap is not None:
            scores = softcap * torch.tanh(scores / softcap)
        if attention_mask is None:
            allowed = torch.arange(Tk, device=device)[None, :] <= q_pos[:, None]
            scores = scores.masked_fill(~allowed, float("-inf"))
        else:
            mask = (
                attention_mask[:, :, start:stop, :Tk]
                if attention_mask.shape[2] > 1
                else attention_mask[..., :Tk]
            )
            if mask.dtype == torch.bool:
                scores = scores.masked_fill(~mask, float("-inf"))
            else:
                scores = scores + mask.float()
        lse = torch.logsumexp(scores, dim=-1, keepdim=True)
        key_idx = q_pos[:, None] - offsets[None, :]
        valid = key_idx >= 0
        gather_idx = key_idx.clamp(min=0).expand(B, H, -1, -1)
        band = torch.exp(scores.gather(-1, gather_idx) - lse)
        band = torch.nan_to_num(band.masked_fill(~valid, 0.0), nan=0.0)
        bands.append(band)
    return torch.cat(bands, dim=2)


def single_query_bands(
    query: torch.Tensor,
    key: torch.Tensor,
    scaling: float | None,
    window: int,
    softcap: float | None,
) -> torch.Tensor:
    """`attention_band` of one unmasked query (a generation step) for a stack of layers
    at once: query (L, B, H, 1, D), key (L, B, Hkv, Tk, D) -> (L, B, H, 1, W + 1).
    Grouped-query heads read their key head without copying keys."""
    L, B, H, _, D = query.shape
    Hkv, Tk = key.shape[2], key.shape[3]
    scale = default_scale(scaling, D)
    # head h reads key head h // (H // Hkv)
    q = query.float().reshape(L, B, Hkv, H // Hkv, D) * scale
    scores = torch.matmul(q, key.float().transpose(-1, -2))
    if softcap is not None:
        scores = softcap * torch.tanh(scores / softcap)
    n = min(window + 1, Tk)
    return as_band(torch.softmax(scores, dim=-1)[..., Tk - n :], window).reshape(
        L, B, H, 1, window + 1
    )


def as_band(weights: torch.Tensor, window: int) -> torch.Tensor:
    """Weights to the last n <= W + 1 keys, oldest first, as a band: [..., d] is the
    weight to q - d, zero where q - d precedes the text."""
    band = weights.flip(-1)
    n = band.shape[-1]
    return torch.nn.functional.pad(band, (0, window + 1 - n)) if n < window + 1 else band


def default_scale(scaling: float | None, head_dim: int) -> float:
    """The layer's attention scale, SDPA's default 1 / sqrt(head_dim) where it has none."""
    return scaling if scaling is not None else head_dim**-0.5
