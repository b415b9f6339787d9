"""Per-entity uncertainty scores that decide which entities LinkNER sends to the LLM.

Each entity's local belief is a distribution over K + 1 outcomes: "not an entity"
(1 - the span probe's score) and each label (the span score times the typing
distribution). All scores lie in 0..1; higher means less certain.
"""

import numpy as np
from scipy.special import entr

METHODS = ("confidence", "entropy", "mc_dropout", "evidential")
MC_STATISTICS = ("predictive_entropy", "mutual_information")


def entity_distribution(span_score: float, label_probs: np.ndarray) -> np.ndarray:
    """(K + 1,) [not an entity, label_1 .. label_K] from the two probes' outputs."""
    probs = np.asarray(label_probs, dtype="float64")
    return np.concatenate([[1.0 - span_score], span_score * probs])


def confidence(dist: np.ndarray) -> float:
    """1 - max p (least-confidence)."""
    return float(1.0 - np.max(dist))


def _entropy(dist: np.ndarray) -> np.ndarray:
    """Shannon entropy (nats) over the last axis; entries <= 0 contribute nothing."""
    p = np.asarray(dist, dtype="float64")
    return entr(np.where(p > 0, p, 0.0)).sum(axis=-1)


def entropy(dist: np.ndarray) -> float:
    """Entropy normalised by log(K + 1), so 1 is a uniform distribution."""
    return float(_entropy(dist) / np.log(len(dist)))


def mc_dropout(samples: np.ndarray, statistic: str = "predictive_entropy") -> float:
    """From T stochastic passes (T, K + 1): the normalised entropy of their mean
    (total uncertainty), or the mutual information between prediction and weights
    (BALD: entropy of the mean minus mean entropy, the model's epistemic part)."""
    samples = np.asarray(samples, dtype="float64")
    total = _entropy(samples.mean(axis=0))
    if statistic == "predictive_entropy":
        value = total
    elif statistic == "mutual_information":
        value = total - _entropy(samples).mean()
    else:
        raise ValueError(f"Unknown MC dropout statistic '{statistic}': use one of {MC_STATISTICS}.")
    return float(np.clip(value / np.log(samples.shape[1]), 0.0, 1.0))


def evidential(alpha: np.ndarray) -> float:
    """Subjective-logic uncertainty u = K / S of a Dirichlet(alpha) over K classes."""
    alpha = np.asarray(alpha, dtype="float64")
    return float(len(alpha) / alpha.sum())
