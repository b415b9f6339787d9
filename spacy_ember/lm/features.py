"""Per-doc LM features: what `causal_lm` outputs and `ember_ner` reads."""

from dataclasses import dataclass

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

    @property
    def hidden(self) -> np.ndarray:
        return self.raw.hidden

    @property
    def attn(self) -> np.ndarray:
        return self.raw.attn

    @property
    def window(self) -> int:
        return self.raw.attn.shape[1] - 1


class UnstoredFeatures(LMFeatures):
    """LMFeatures kept on the Doc in memory only: to_bytes and DocBin write None instead.

    `causal_lm` sets these unless `store_features` is true, so saved docs do not carry
    about 11 KB of features per LM piece that only the pipeline's own listeners read.
    """


@srsly.msgpack_encoders("spacy_ember_features")
def _serialize_features(obj, chain=None):
    """Write `doc._.ember_lm` with to_bytes, DocBin and n_process (None if unstored)."""
    if isinstance(obj, UnstoredFeatures):
        return None
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
    """Read back what `_serialize_features` wrote."""
    if isinstance(obj, dict) and "__ember_lm__" in obj:
        d = obj["__ember_lm__"]
        return LMFeatures(
            RawFeatures(d["offsets"], d["hidden"], d["attn"]), d["align"], d["usable"]
        )
    return obj if chain is None else chain(obj)
