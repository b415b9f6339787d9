"""EMBER's two probes over frozen LM features, as one thinc model.

typing probe: an MLP over the hidden state of each piece -> entity type or O.
span probe: an MLP over the attention weights (all layers x heads) from the piece
after a candidate span to the span's first piece -> "is an entity span".
"""

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import cast

import numpy as np
from spacy.tokens import Doc
from spacy.util import registry
from thinc.api import Config, LayerNorm, Linear, Model, NumpyOps, Relu, chain
from thinc.types import Floats1d, Floats2d

from ..lm.features import LMFeatures
from .candidates import candidate_spans
from .decoding import softmax
from .mix import scalar_mix as build_scalar_mix


@dataclass
class ProbeOutput:
    """Probe scores for one doc.

    type_logits: (n_pieces + 1, n_labels + 1), column 0 is O.
    span_logits: (n_candidates,) one logit per candidate span.
    candidates: (n_candidates, 4) start token, end token (exclusive), query row, offset.
    align: (n_tokens, 2) first/last piece of each token.
    """

    type_logits: Floats2d
    span_logits: Floats1d
    candidates: np.ndarray
    align: np.ndarray


# Gradient for one doc: (d_type_logits, d_span_logits).
ProbeGradient = tuple[Floats2d, Floats1d]

# ember_ner's default model; the builders below take their keyword defaults from it.
_PROBE_MLP = """
@architectures = "spacy-ember.ProbeMLP.v1"
width = 256
depth = 1
dropout = 0.1
normalize = true
scalar_mix = false
nO = null
"""
DEFAULT_EMBER_MODEL = f"""
[model]
@architectures = "spacy-ember.EmberProbes.v1"
max_span_tokens = 12
attn_transform = "none"
boundary_types = true

[model.lm]
@architectures = "spacy-ember.LMListener.v1"
upstream = "*"

[model.typing_probe]{_PROBE_MLP}
[model.span_probe]{_PROBE_MLP}"""
_PROBES = Config().from_str(DEFAULT_EMBER_MODEL)["model"]
_MLP = _PROBES["typing_probe"]


@registry.architectures("spacy-ember.ProbeMLP.v1")
def build_probe_mlp(
    width: int = _MLP["width"],
    depth: int = _MLP["depth"],
    dropout: float = _MLP["dropout"],
    normalize: bool = _MLP["normalize"],
    scalar_mix: bool = _MLP["scalar_mix"],
    nO: int | None = _MLP["nO"],
) -> Model[Floats2d, Floats2d]:
    """An MLP probe: optional scalar mix and input LayerNorm, `depth` ReLU layers of
    `width`, linear out.

    normalize: LayerNorm the input first; LM hidden states have a few huge outlier
        dimensions that otherwise dominate a small probe.
    scalar_mix: (typing probe) read a learned weighted sum of the causal_lm layers
        (ELMo's scalar mix) instead of the layers concatenated.
    """
    layers: list[Model] = [build_scalar_mix()] if scalar_mix else []
    layers += [LayerNorm()] if normalize else []
    layers += [Relu(nO=width, dropout=dropout) for _ in range(depth)]
    layers.append(Linear(nO=nO))
    model: Model[Floats2d, Floats2d] = chain(*layers) if len(layers) > 1 else layers[0]
    if type(model.ops) is NumpyOps:
        # numpy's BLAS instead of thinc's bundled blis: on the 2-core EPYC this was
        # measured on, blis ran these matrix products 6-10x slower (393 vs 39 us for one
        # row, the streaming case; 100 vs 15 ms for a training batch).
        ops = NumpyOps(use_blis=False)
        for layer in model.walk():
            layer.ops = ops
    return model


@registry.architectures("spacy-ember.EmberProbes.v1")
def build_ember_probes(
    lm: Model[list[Doc], list[LMFeatures]],
    typing_probe: Model[Floats2d, Floats2d],
    span_probe: Model[Floats2d, Floats2d],
    max_span_tokens: int = _PROBES["max_span_tokens"],
    attn_transform: str = _PROBES["attn_transform"],
    boundary_types: bool = _PROBES["boundary_types"],
) -> Model[list[Doc], list[ProbeOutput]]:
    """EMBER: a token-typing probe on hidden states and a span probe on attention.

    max_span_tokens: longest candidate span in spaCy tokens (the attention window W of
        `causal_lm` bounds it in LM pieces too).
    attn_transform: "none" (EMBER), "sqrt" or "log" applied to attention weights.
    boundary_types: beyond EMBER, also give the span probe the typing probe's output
        distribution at the piece before the span, its first and last pieces and the
        lookahead piece (all known when the lookahead arrives, so streaming still works).
    """
    if attn_transform not in ATTN_TRANSFORMS:
        raise ValueError(f"attn_transform must be one of {sorted(ATTN_TRANSFORMS)}.")
    return Model(
        "ember_probes",
        probes_forward,
        init=probes_init,
        layers=[lm, typing_probe, span_probe],
        refs={"lm": lm, "typing_probe": typing_probe, "span_probe": span_probe},
        attrs={
            "max_span_tokens": max_span_tokens,
            "attn_transform": attn_transform,
            "boundary_types": boundary_types,
        },
    )


ATTN_TRANSFORMS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "none": lambda a: a,
    "sqrt": np.sqrt,
    "log": lambda a: np.log(a + 1e-6),
}


def typing_inputs(model: Model, feats: list[LMFeatures]) -> Floats2d:
    """Hidden states of all docs' pieces, layers concatenated: (sum n_pieces + 1, L * D)."""
    X = np.concatenate([f.hidden.reshape(len(f.hidden), -1) for f in feats]).astype("float32")
    return model.ops.asarray2f(cast(Floats2d, X))


def boundary_rows(query: np.ndarray, offset: np.ndarray) -> np.ndarray:
    """(n, 4) pieces whose types the span probe reads with `boundary_types`: the piece
    before the span (-1 when the span starts the text), its first and last pieces and
    the lookahead (query) piece."""
    first = query - offset
    return np.stack([np.where(first > 0, first - 1, -1), first, query - 1, query], axis=1)


def boundary_type_probs(type_logits: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """(n, 4, n_types) typing distributions at `rows` (from `boundary_rows`; -1 gives zeros)."""
    probs = softmax(type_logits.astype("float32"))
    padded = np.concatenate([probs, np.zeros((1, probs.shape[1]), dtype="float32")])
    return padded[rows]


def span_features(
    model: Model, attn_vectors: np.ndarray, boundary_probs: np.ndarray | None
) -> Floats2d:
    """The span probe's input: (n, layers * heads) attention vectors, transformed, then
    with `boundary_types` the (n, 4, n_types) boundary type distributions flattened."""
    X = ATTN_TRANSFORMS[model.attrs["attn_transform"]](attn_vectors.astype("float32"))
    if model.attrs["boundary_types"]:
        assert boundary_probs is not None
        flat = boundary_probs.reshape(len(X), 4 * boundary_probs.shape[-1]).astype("float32")
        X = np.concatenate([X, flat], axis=1)
    return model.ops.asarray2f(cast(Floats2d, X))


def span_inputs(
    model: Model, feats: list[LMFeatures], cands: list[np.ndarray], type_logits: Floats2d
) -> Floats2d:
    """Per candidate: the attention vector from the lookahead piece to the span's first
    piece, optionally followed by boundary type distributions."""
    n_attn = feats[0].attn.shape[2]
    parts = [f.attn[c[:, 2], c[:, 3]] for f, c in zip(feats, cands)]
    attn = np.concatenate(parts + [np.zeros((0, n_attn), dtype="float32")])
    boundary = None
    if model.attrs["boundary_types"]:
        rows, start = [], 0
        for f, c in zip(feats, cands):
            local = boundary_rows(c[:, 2], c[:, 3])
            rows.append(np.where(local >= 0, local + start, -1))
            start += len(f.hidden)
        idx = np.concatenate(rows + [np.zeros((0, 4), dtype=np.int64)])
        boundary = boundary_type_probs(model.ops.to_numpy(type_logits), idx)
    return span_features(model, attn, boundary)


# Pieces per probe pass when predicting. One pass over a whole batch of documents builds
# arrays of hundreds of MB that the allocator maps fresh (and the kernel zeroes) every
# batch; chunks this size reuse the heap and stay in cache: the probes' cost on CoNLL-2003
# documents was 3-4x higher right after an LM pass without them (1,024 measured best).
PREDICT_PIECES = 1024


def probes_forward(model: Model, docs: list[Doc], is_train: bool):
    lm = model.get_ref("lm")
    feats, bp_lm = lm(docs, is_train)
    if not feats:
        return [], lambda d: bp_lm([])
    if not is_train:
        outputs = [
            output
            for group in piece_groups(feats, PREDICT_PIECES)
            for output in run_probes(model, group, False)[0]
        ]
        return outputs, lambda d: bp_lm([])
    outputs, bp_typing, bp_span = run_probes(model, feats, True)

    def backprop(d_outputs: list[ProbeGradient]) -> list[Doc]:
        ops = model.ops
        bp_typing(ops.xp.concatenate([d[0] for d in d_outputs]))
        d_span = ops.xp.concatenate([d[1] for d in d_outputs] + [ops.alloc1f(0)])
        bp_span(d_span.reshape(-1, 1))
        return bp_lm([])

    return outputs, backprop


def piece_groups(feats: list[LMFeatures], budget: int) -> Iterator[list[LMFeatures]]:
    """Consecutive runs of docs' features holding at most `budget` pieces (a longer doc
    is a run of its own)."""
    group: list[LMFeatures] = []
    pieces = 0
    for f in feats:
        if group and pieces + len(f.hidden) > budget:
            yield group
            group, pieces = [], 0
        group.append(f)
        pieces += len(f.hidden)
    if group:
        yield group


def run_probes(
    model: Model, feats: list[LMFeatures], is_train: bool
) -> tuple[list[ProbeOutput], Callable, Callable]:
    """Both probes over these docs' features: their outputs and the probes' backprops."""
    cands = [candidate_spans(f, model.attrs["max_span_tokens"]) for f in feats]
    Yt, bp_typing = model.get_ref("typing_probe")(typing_inputs(model, feats), is_train)
    Ys, bp_span = model.get_ref("span_probe")(span_inputs(model, feats, cands, Yt), is_train)
    outputs = []
    t = s = 0
    for f, c in zip(feats, cands):
        outputs.append(ProbeOutput(Yt[t : t + len(f.hidden)], Ys[s : s + len(c), 0], c, f.align))
        t += len(f.hidden)
        s += len(c)
    return outputs, bp_typing, bp_span


def probes_init(model: Model, X: list[Doc] | None = None, Y=None) -> None:
    if X is None:
        return
    feats, _ = model.get_ref("lm")(X, is_train=False)
    if not feats:
        return
    cands = [candidate_spans(f, model.attrs["max_span_tokens"]) for f in feats]
    typing = model.get_ref("typing_probe")
    for layer in typing.walk():
        if layer.name == "scalar_mix":
            layer.set_dim("nL", feats[0].hidden.shape[1], force=True)
    Xt = typing_inputs(model, feats)
    typing.initialize(X=Xt)
    Xs = span_inputs(model, feats, cands, typing.predict(Xt))
    span = model.get_ref("span_probe")
    set_output_width(span, 1)
    span.initialize(X=Xs if len(Xs) else model.ops.alloc2f(1, Xs.shape[1]))


def set_output_width(probe: Model, n: int) -> None:
    """Set the output width of a probe built by ProbeMLP (its last layer and itself)."""
    last = probe.layers[-1] if probe.layers else probe
    last.set_dim("nO", n, force=True)
    if probe.has_dim("nO") is not False:
        probe.set_dim("nO", n, force=True)
