"""spacy-ember: EMBER named-entity recognition embedded in a frozen causal LM, for spaCy."""

from .about import __version__
from .features import LMFeatures, RawFeatures
from .generation import GenerationSettings
from .pipeline.causal_lm import CausalLM
from .pipeline.ember_ner import EmberNER
from .pipeline.linkner_router import LinkNERRouter
from .streaming import StreamEvent, generate_with_entities, stream

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
