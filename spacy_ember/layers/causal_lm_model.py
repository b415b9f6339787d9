"""The `causal_lm` component's model: docs in, per-doc LM features out, no gradients."""

from collections.abc import Callable, Sequence

from spacy.tokens import Doc
from spacy.util import registry
from thinc.api import Model

from ..cache import FeatureCache
from ..extractor import FeatureExtractor
from ..features import LMFeatures
from ..loaders import LoadedLM


@registry.architectures("spacy-ember.CausalLM.v1")
def build_causal_lm_model(
    loader: Callable[[], LoadedLM],
    layers: Sequence[int] = (8, 16),
    attn_window: int = 16,
    max_length: int = 512,
    context: int = 64,
    batch_size: int = 16,
    cache: FeatureCache | None = None,
    feature_dtype: str = "float16",
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
    # Loads the LM and checks the configuration against it.
    model.attrs["extractor"].load()


def forward(model: Model, docs: list[Doc], is_train: bool):
    features = model.attrs["extractor"](docs)

    def backprop(d_features) -> list[Doc]:
        # The LM is frozen: nothing flows back into it.
        return []

    return features, backprop
