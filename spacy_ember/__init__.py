"""spacy-ember: EMBER named-entity recognition embedded in a frozen causal LM, for spaCy.

The public names load on first use, so `import spacy_ember` (and loading an NER-only
pipeline) imports neither the LLM client nor the generation code.
"""

from importlib import import_module
from typing import TYPE_CHECKING, Any

from .about import __version__

_EXPORTS = {
    "CausalLM": "pipeline.causal_lm",
    "EmberNER": "pipeline.ember_ner",
    "LinkNERRouter": "pipeline.linkner_router",
    "LMFeatures": "lm.features",
    "RawFeatures": "lm.features",
    "GenerationSettings": "generate.settings",
    "StreamEvent": "generate.streaming",
    "generate_with_entities": "generate.streaming",
    "stream": "generate.streaming",
}

__all__ = [
    "__version__",
    "CausalLM",
    "EmberNER",
    "LinkNERRouter",
    "LMFeatures",
    "RawFeatures",
    "GenerationSettings",
    "StreamEvent",
    "generate_with_entities",
    "stream",
]

if TYPE_CHECKING:
    from .generate.settings import GenerationSettings
    from .generate.streaming import StreamEvent, generate_with_entities, stream
    from .lm.features import LMFeatures, RawFeatures
    from .pipeline.causal_lm import CausalLM
    from .pipeline.ember_ner import EmberNER
    from .pipeline.linkner_router import LinkNERRouter


def __getattr__(name: str) -> Any:
    """Import a public name's module when the name is first read."""
    if name not in _EXPORTS:
        raise AttributeError(f"module 'spacy_ember' has no attribute '{name}'")
    value = getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
    globals()[name] = value
    return value
