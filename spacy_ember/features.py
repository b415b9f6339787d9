"""Per-doc LM features: what `causal_lm` outputs and `ember_ner` reads."""

from dataclasses import dataclass, field

import numpy as np
import srsly


@dataclass
class RawFeatures:
    """The LM's view of one text, independent of spaCy's tokenisation (what is cached).

    offsets: (n_pieces, 2) character offsets of the text's pieces.
    hidden: (n_pieces + 1, n_layers, width) hidden states of the configured layers;
        row n_pieces is the lookahead token appended after the text.
    attn: (n_pieces + 1, W + 1, layers * heads): attn[q, d] holds the attention
        weights of every layer and head from position q to position q - d.
    """

    offsets: np.ndarray
    hidden: np.ndarray
    attn: np.ndarray

    @property
    def n_pieces(self) -> int:
        return len(self.offsets)

    @property
    def nbytes(self) -> int:
        return self.offsets.nbytes + self.hidden.nbytes + self.attn.nbytes


@dataclass
class LMFeatures:
    """RawFeatures of a doc's text plus the doc's token alignment.

    align: (n_tokens, 2) first and last piece (inclusive) of each spaCy token.
    usable: (n_tokens,) bool, False for whitespace tokens (never an entity edge).
    """

    raw: RawFeatures
    align: np.ndarray
    usable: np.ndarray
    _candidates: np.ndarray | None = field(default=None, repr=False)
    _candidates_max: int = field(default=-1, repr=False)

    @property
    def hidden(self) -> np.ndarray:
        return self.raw.hidden

    @property
    def attn(self) -> np.ndarray:
        return self.raw.attn

    @property
    def window(self) -> int:
        return self.raw.attn.shape[1] - 1

    def candidates(self, max_tokens: int) -> np.ndarray:
        """Candidate spans as (n, 4): start token, end token (exclusive), query row, offset.

        A span (s, e) is a candidate when its first piece lies within the attention
        window of the piece right after it: the query is the piece after the span's last
        piece (the lookahead), the key is the span's first piece.
        """
        if self._candidates is not None and self._candidates_max == max_tokens:
            return self._candidates
        n_tok = len(self.align)
        if n_tok == 0:
            cands = np.zeros((0, 4), dtype=np.int64)
        else:
            starts = np.arange(n_tok)[:, None]
            ends = starts + np.arange(max_tokens)[None, :]  # inclusive end token
            inside = ends < n_tok
            ends_c = np.minimum(ends, n_tok - 1)
            query = self.align[ends_c, 1] + 1
            offset = query - self.align[starts, 0]
            ok = (
                inside
                & (query <= self.raw.n_pieces)
                & (offset <= self.window)
                & self.usable[starts]
                & self.usable[ends_c]
            )
            s_idx, k_idx = np.nonzero(ok)
            e_idx = ends[s_idx, k_idx]
            cands = np.stack(
                [s_idx, e_idx + 1, query[s_idx, k_idx], offset[s_idx, k_idx]], axis=1
            ).astype(np.int64)
        self._candidates = cands
        self._candidates_max = max_tokens
        return cands


@srsly.msgpack_encoders("spacy_ember_features")
def _serialize_features(obj, chain=None):
    """Let docs carrying `doc._.ember_lm` go through to_bytes, DocBin and n_process."""
    if isinstance(obj, LMFeatures):
        raw = obj.raw
        return {
            "__ember_lm__": {
                "offsets": raw.offsets,
                "hidden": raw.hidden,
                "attn": raw.attn,
                "align": obj.align,
                "usable": obj.usable,
            }
        }
    return obj if chain is None else chain(obj)


@srsly.msgpack_decoders("spacy_ember_features")
def _deserialize_features(obj, chain=None):
    if isinstance(obj, dict) and "__ember_lm__" in obj:
        d = obj["__ember_lm__"]
        return LMFeatures(
            RawFeatures(d["offsets"], d["hidden"], d["attn"]), d["align"], d["usable"]
        )
    return obj if chain is None else chain(obj)
