"""ELMo's scalar mix: a learned softmax-weighted sum of the LM's layers, scaled, as the
typing probe's input instead of the layers concatenated."""

from typing import Any, cast

from thinc.api import Model, get_array_module
from thinc.types import Floats2d


def scalar_mix() -> Model[Floats2d, Floats2d]:
    """(n, layers * width) -> (n, width): gamma * sum_l softmax(w)_l * X[:, l]. The
    number of layers (dim nL) is set by the probes' initialisation; w starts at zero
    (every layer weighted equally), gamma at one."""
    return Model("scalar_mix", scalar_mix_forward, init=scalar_mix_init, dims={"nL": None})


def scalar_mix_init(model: Model, X: Floats2d | None = None, Y=None) -> None:
    if not model.has_dim("nL"):
        raise ValueError("scalar_mix needs its number of layers (dim nL) before initialising.")
    model.set_param("w", model.ops.alloc1f(model.get_dim("nL")))
    model.set_param("gamma", model.ops.asarray1f([1.0]))


def mix_weights(w: Any) -> Any:
    """softmax(w), the layers' weights (numpy or cupy, as w)."""
    e = get_array_module(w).exp(w - w.max())
    return e / e.sum()


def mix_layers(X: Any, w: Any, n_layers: int) -> tuple[Any, Any, Any]:
    """X (n, layers * width) as (n, layers, width), the layer weights softmax(w), and
    their weighted sum (n, width), before gamma (numpy or cupy, as X)."""
    if X.shape[1] % n_layers:
        raise ValueError(
            f"scalar_mix was initialised for {n_layers} layers, but {X.shape[1]} input "
            "columns do not split into them; use the causal_lm layers it was trained with."
        )
    X3 = X.reshape(len(X), n_layers, -1)
    s = mix_weights(w)
    return X3, s, get_array_module(X).einsum("l,nld->nd", s, X3)


def scalar_mix_forward(model: Model, X: Floats2d, is_train: bool):
    xp = model.ops.xp
    X3, s, mixed = mix_layers(X, model.get_param("w"), model.get_dim("nL"))
    gamma = model.get_param("gamma")[0]

    def backprop(dY: Any) -> Floats2d:
        model.inc_grad("gamma", xp.asarray([(dY * mixed).sum()], dtype="float32"))
        d_s = gamma * xp.einsum("nd,nld->l", dY, X3)
        model.inc_grad("w", (s * (d_s - (d_s * s).sum())).astype("float32"))
        dX = gamma * s[None, :, None] * dY[:, None, :]
        return cast(Floats2d, dX.reshape(X.shape).astype("float32"))

    return cast(Floats2d, (gamma * mixed).astype("float32")), backprop
