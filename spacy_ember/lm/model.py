"""The `causal_lm` component's model: docs in, per-doc LM features out, no gradients."""

from collections.abc import Callable, Sequence

from spacy.tokens import Doc
from spacy.util import registry
from thinc.api import Config, Model

from .cache import FeatureCache
from .extractor import FeatureExtractor
from .features import LMFeatures
from .gguf import EMBEDDED_MODEL
from .loaders import LoadedLM

# causal_lm's default model; the builder below takes its keyword defaults from it.
DEFAULT_CAUSAL_LM_MODEL = f"""
[model]
@architectures = "spacy-ember.CausalLM.v1"
layers = [8,16]
attn_window = 16
max_length = 512
context = 64
batch_size = 16
feature_dtype = "float16"

[model.loader]
@misc = "spacy-ember.HFCausalLM.v1"
name = "{EMBEDDED_MODEL}"

[model.cache]
@misc = "spacy-ember.FeatureCache.v1"
max_mb = 2048
directory = null
"""

_MODEL = Config().from_str(DEFAULT_CAUSAL_LM_MODEL)["model"]


@registry.architectures("spacy-ember.CausalLM.v1")
def build_causal_lm_model(
    loader: Callable[[], LoadedLM],
    layers: Sequence[int] = tuple(_MODEL["layers"]),
    attn_window: int = _MODEL["attn_window"],
    max_length: int = _MODEL["max_length"],
    context: int = _MODEL["context"],
    batch_size: int = _MODEL["batch_size"],
    cache: FeatureCache | None = None,
    feature_dtype: str = _MODEL["feature_dtype"],
) -> Model[list[Doc], list[LMFeatures]]:
    """A frozen decoder-only LM read for EMBER's probes.

    layers: hidden layers given to the typing probe, concatenated (0 = embeddings,
        -1 = last).
    attn_window: W, how many pieces back each query's attention row is kept.
    max_length / context: longer texts run in windows of max_length tokens that repeat
        `context` pieces of left context (context >= attn_window).
    batch_size: LM input windows per forward pass.
    feature_dtype: storage precision of features (float16 halves the cache).
    """
    extractor = FeatureExtractor(
        loader, layers, attn_window, max_length, context, batch_size, cache, feature_dtype
    )
    return Model(
        "causal_lm",
        forward,
        init=init,
        attrs={"extractor": extractor, "layers": list(layers), "attn_window": attn_window},
    )


def init(model: Model, X=None, Y=None) -> None:
    """Load the LM and check the configuration against it."""
    model.attrs["extractor"].lm  # noqa: B018  (the property loads and checks)


def forward(model: Model, docs: list[Doc], is_train: bool):
    features = model.attrs["extractor"](docs)

    def backprop(d_features) -> list[Doc]:
        # The LM is frozen: nothing flows back into it.
        return []

    return features, backprop
