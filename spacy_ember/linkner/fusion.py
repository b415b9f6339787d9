"""How a routed entity's final label is decided from the LLM's answer and the probes."""

from collections.abc import Sequence

import numpy as np

from .labels import NONE_LABEL


def decide(
    local: np.ndarray,
    llm_label: str,
    llm_scores: dict[str, float] | None,
    fuse_weight: float | None,
    labels: Sequence[str],
) -> str:
    """The final label of a routed entity, or NONE: the LLM's (fuse_weight None), or the
    argmax of (1 - w) * probes + w * LLM over [NONE, labels...], the LLM's distribution
    taken from its logprobs when the server gave them, else its answer alone."""
    if fuse_weight is None:
        return llm_label
    options = (NONE_LABEL, *labels)
    if llm_scores:
        llm = np.array([llm_scores.get(o, 0.0) for o in options])
    else:
        llm = np.array([float(o == llm_label) for o in options])
    fused = (1 - fuse_weight) * local + fuse_weight * llm
    return options[int(np.argmax(fused))]
