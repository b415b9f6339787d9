"""A trained probe's inference as plain numpy, for the one-row calls made while streaming."""

from collections.abc import Callable
from functools import partial
from typing import cast

import numpy as np
from thinc.api import Model, NumpyOps
from thinc.types import Floats2d

from .mix import mix_layers


def probe_predictor(probe: Model[Floats2d, Floats2d]) -> Callable[[np.ndarray], np.ndarray]:
    """A trained ProbeMLP's inference as plain numpy over its current weights.

    The arithmetic of thinc's LayerNorm, Relu and Linear, without thinc's per-layer
    dispatch, which costs more than the products themselves for the one-row calls made
    while streaming. A probe of other layers falls back to `predict`.
    """
    steps: list[Callable[[np.ndarray], np.ndarray]] = []
    for layer in _leaf_layers(probe):
        params = {name: np.asarray(layer.get_param(name)) for name in layer.param_names}
        if layer.name == "scalar_mix":
            steps.append(partial(_scalar_mix, **params, n_layers=layer.get_dim("nL")))
        elif layer.name == "layernorm":
            steps.append(partial(_layer_norm, **params))
        elif layer.name in ("relu", "linear"):
            steps.append(partial(_affine, **params, relu=layer.name == "relu"))
        elif layer.name != "dropout":  # dropout is the identity at inference
            return lambda X: probe.ops.to_numpy(probe.predict(cast(Floats2d, X)))

    def predict(X: np.ndarray) -> np.ndarray:
        for step in steps:
            X = step(X)
        return X

    return predict


def _scalar_mix(X: np.ndarray, w: np.ndarray, gamma: np.ndarray, n_layers: int) -> np.ndarray:
    """The scalar mix's forward pass (see mix.py) on numpy arrays."""
    return (gamma[0] * mix_layers(X, w, n_layers)[2]).astype("float32")


def _layer_norm(X: np.ndarray, G: np.ndarray, b: np.ndarray) -> np.ndarray:
    """thinc's LayerNorm: X.mean and X.var's own reductions, without their wrappers."""
    n = X.shape[1]
    centred = X - np.add.reduce(X, axis=1, keepdims=True) / n
    var = np.add.reduce(centred * centred, axis=1, keepdims=True) / n + 1e-08
    return centred * var ** (-1.0 / 2.0) * G + b


# thinc's own CPU gemm (BLIS, single-threaded), as its Linear and Relu layers use. Not
# numpy's `@`: its OpenBLAS threads spin after each call, and between two generation
# steps they take the cores from the LM's next forward pass (several times its time).
_CPU_OPS = NumpyOps()


def _affine(X: np.ndarray, W: np.ndarray, b: np.ndarray, relu: bool) -> np.ndarray:
    """thinc's Linear (relu=False) and Relu layers: X @ W.T + b."""
    Y = _CPU_OPS.gemm(X.astype("float32", copy=False), W, trans2=True) + b
    return np.maximum(Y, 0) if relu else Y


def _leaf_layers(model: Model) -> list[Model]:
    """The layers of a chain in the order they run."""
    return (
        [leaf for layer in model.layers for leaf in _leaf_layers(layer)]
        if model.layers
        else [model]
    )
