"""Align spaCy tokens to LM pieces through character offsets."""

import numpy as np
from spacy.tokens import Doc


def token_char_spans(doc: Doc) -> np.ndarray:
    """(n_tokens, 2) start and end character offsets of each token."""
    spans = np.zeros((len(doc), 2), dtype=np.int64)
    for i, token in enumerate(doc):
        spans[i] = (token.idx, token.idx + len(token))
    return spans


def align_pieces(token_spans: np.ndarray, piece_offsets: np.ndarray) -> np.ndarray:
    """First and last (inclusive) piece overlapping each token, as (n_tokens, 2).

    A piece may cover the whitespace before a word (" Berlin"), and one piece may span
    two spaCy tokens; both are fine. A token that no piece overlaps (characters the
    tokenizer dropped) gets the next piece, or the lookahead row n_pieces at the end,
    so every token has features and first <= last always holds.
    """
    n_pieces = len(piece_offsets)
    if len(token_spans) == 0:
        return np.zeros((0, 2), dtype=np.int64)
    if n_pieces == 0:
        return np.zeros((len(token_spans), 2), dtype=np.int64)
    starts = piece_offsets[:, 0]
    # Piece ends can dip when a multi-byte character is split into several pieces;
    # a running maximum keeps the search well defined.
    ends = np.maximum.accumulate(piece_offsets[:, 1])
    first = np.searchsorted(ends, token_spans[:, 0], side="right")
    last = np.searchsorted(starts, token_spans[:, 1], side="left") - 1
    first = np.minimum(first, n_pieces)
    last = np.maximum(last, first)
    return np.stack([first, last], axis=1).astype(np.int64)
