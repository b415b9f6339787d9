"""The candidate spans EMBER's span probe scores: those its attention window can see."""

import numpy as np

from ..lm.features import LMFeatures


def candidate_spans(feats: LMFeatures, max_tokens: int) -> np.ndarray:
    """Candidate spans as (n, 4): start token, end token (exclusive), query row, offset.

    A span (s, e) is a candidate when its first piece lies within the attention window
    of the piece right after it: the query is the piece after the span's last piece (the
    lookahead), the key is the span's first piece. Whitespace tokens never bound a span.
    """
    align, n_tok = feats.align, len(feats.align)
    if n_tok == 0:
        return np.zeros((0, 4), dtype=np.int64)
    starts = np.arange(n_tok)[:, None]
    ends = starts + np.arange(max_tokens)[None, :]  # inclusive end token
    inside = ends < n_tok
    ends_c = np.minimum(ends, n_tok - 1)
    query = align[ends_c, 1] + 1
    offset = query - align[starts, 0]
    ok = (
        inside
        & (query <= feats.raw.n_pieces)
        & (offset <= feats.window)
        & feats.usable[starts]
        & feats.usable[ends_c]
    )
    s_idx, k_idx = np.nonzero(ok)
    e_idx = ends[s_idx, k_idx]
    return np.stack([s_idx, e_idx + 1, query[s_idx, k_idx], offset[s_idx, k_idx]], axis=1).astype(
        np.int64
    )
