"""Evidential deep learning for the typing probe (Sensoy et al., 2018), for LinkNER.

With `typing_loss = "evidential"` the typing probe's logits z are read as evidence for
a Dirichlet over the K classes (O and the labels): alpha = softplus(z) + 1. Its
uncertainty u = K / sum(alpha) is what `linkner_router`'s "evidential" method routes on.
Decoding still reads softmax(z), which orders the classes exactly as alpha does.
"""

import numpy as np
from scipy.special import digamma, gammaln, polygamma

TYPING_LOSSES = ("softmax", "evidential")


def softplus(z: np.ndarray) -> np.ndarray:
    return np.logaddexp(0.0, z)


def dirichlet_alpha(logits: np.ndarray) -> np.ndarray:
    """Dirichlet parameters from typing logits: evidence softplus(z), plus one."""
    return softplus(np.asarray(logits, dtype="float64")) + 1.0


def evidential_loss(
    logits: np.ndarray, targets: np.ndarray, kl_weight: float
) -> tuple[np.ndarray, np.ndarray]:
    """Per-row loss and d loss / d logits for the evidential MSE loss (Sensoy et al.,
    eq. 5) plus kl_weight * KL(Dir(alpha~) || Dir(1)), where alpha~ removes the
    target's evidence so that only misleading evidence is penalised.

    logits: (n, K); targets: (n,) class index.
    """
    z = np.asarray(logits, dtype="float64")
    n, k = z.shape
    y = np.zeros((n, k))
    y[np.arange(n), targets] = 1.0
    alpha = softplus(z) + 1.0
    S = alpha.sum(axis=1, keepdims=True)
    p = alpha / S
    loss = ((y - p) ** 2 + p * (1 - p) / (S + 1)).sum(axis=1)
    g = -2 * (y - p) + (1 - 2 * p) / (S + 1)
    d_alpha = (g - (g * p).sum(axis=1, keepdims=True)) / S
    d_alpha -= (p * (1 - p)).sum(axis=1, keepdims=True) / (S + 1) ** 2
    if kl_weight > 0:
        tilde = y + (1 - y) * alpha
        kl, d_tilde = _kl_to_uniform(tilde)
        loss = loss + kl_weight * kl
        d_alpha += kl_weight * d_tilde * (1 - y)
    sigmoid = 1.0 / (1.0 + np.exp(-z))  # d softplus / dz
    return loss, d_alpha * sigmoid


def _kl_to_uniform(alpha: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """KL(Dir(alpha) || Dir(1, ..., 1)) per row and its gradient in alpha."""
    k = alpha.shape[1]
    S = alpha.sum(axis=1, keepdims=True)
    kl = (
        gammaln(S[:, 0])
        - gammaln(k)
        - gammaln(alpha).sum(axis=1)
        + ((alpha - 1) * (digamma(alpha) - digamma(S))).sum(axis=1)
    )
    trigamma_s = polygamma(1, S)
    grad = (alpha - 1) * polygamma(1, alpha) - trigamma_s * (alpha - 1).sum(axis=1, keepdims=True)
    return kl, grad
