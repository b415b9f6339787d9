"""The `causal_lm` component: runs the frozen LM once per batch for its listeners."""

from collections.abc import Callable, Iterable, Sequence
from itertools import islice

from spacy.language import Language
from spacy.pipeline import TrainablePipe
from spacy.tokens import Doc
from spacy.training import Example, validate_examples
from spacy.vocab import Vocab
from thinc.api import Config, Model, Optimizer

from ..lm.features import LMFeatures, UnstoredFeatures
from ..lm.listener import LMListener
from ..lm.model import DEFAULT_CAUSAL_LM_MODEL

if not Doc.has_extension("ember_lm"):
    Doc.set_extension("ember_lm", default=None)


# causal_lm's settings: the factory's default config and CausalLM's keyword defaults.
DEFAULT_SETTINGS = {"store_features": False}


@Language.factory(
    "causal_lm",
    default_config={
        "model": Config().from_str(DEFAULT_CAUSAL_LM_MODEL)["model"],
        **DEFAULT_SETTINGS,
    },
)
def make_causal_lm(
    nlp: Language,
    name: str,
    model: Model[list[Doc], list[LMFeatures]],
    store_features: bool,
) -> "CausalLM":
    """A frozen decoder-only LM whose features downstream listeners (ember_ner) read."""
    return CausalLM(nlp.vocab, model, name=name, store_features=store_features)


class CausalLM(TrainablePipe):
    """Runs a frozen causal LM and shares its features with listening components.

    The LM is never updated and its weights are never saved with the pipeline: the
    config names a loader, and `initialize` (or first use) loads the weights from it.
    `update` runs the LM forward (through the feature cache) and broadcasts the result
    to the listeners with a no-op backprop, so training needs no `frozen_components`.

    store_features: whether saved docs keep `doc._.ember_lm` (about 11 KB per LM piece
        with the default settings). False (the default): the features stay on each Doc
        in memory, where the listening components of the same pipeline read them, but
        `Doc.to_bytes`, `DocBin` (e.g. `spacy apply`) and the docs that `nlp.pipe`'s
        `n_process` workers send back carry None instead. True: they round-trip exactly.
        Kept out of `cfg`, so a config override at `spacy.load` takes effect.
    """

    def __init__(
        self,
        vocab: Vocab,
        model: Model,
        name: str = "causal_lm",
        *,
        store_features: bool = DEFAULT_SETTINGS["store_features"],
    ) -> None:
        self.vocab = vocab
        self.model = model
        self.name = name
        self.store_features = store_features
        self.listener_map: dict[str, list[LMListener]] = {}
        self.cfg: dict = {}

    @property
    def extractor(self):
        return self.model.attrs["extractor"]

    @property
    def listeners(self) -> list[LMListener]:
        return [m for c in self.listening_components for m in self.listener_map[c]]

    @property
    def listening_components(self) -> list[str]:
        return list(self.listener_map.keys())

    def add_listener(self, listener: LMListener, component_name: str) -> None:
        self.listener_map.setdefault(component_name, [])
        if listener not in self.listener_map[component_name]:
            self.listener_map[component_name].append(listener)
        listener.attrs["component"] = component_name

    def remove_listener(self, listener: LMListener, component_name: str) -> bool:
        if listener in self.listener_map.get(component_name, []):
            self.listener_map[component_name].remove(listener)
            if not self.listener_map[component_name]:
                del self.listener_map[component_name]
            return True
        return False

    def find_listeners(self, component) -> None:
        names = ("*", self.name)
        if isinstance(getattr(component, "model", None), Model):
            for node in component.model.walk():
                if isinstance(node, LMListener) and node.upstream_name in names:
                    self.add_listener(node, component.name)

    def predict(self, docs: Iterable[Doc]) -> list[LMFeatures]:
        return self.model.predict(list(docs))

    def set_annotations(self, docs: Iterable[Doc], features: Sequence[LMFeatures]) -> None:
        """Put each doc's features on `doc._.ember_lm`, unstored unless store_features."""
        for doc, feats in zip(docs, features):
            if not self.store_features:
                feats = UnstoredFeatures(feats.raw, feats.align, feats.usable)
            doc._.ember_lm = feats

    def update(
        self,
        examples: Iterable[Example],
        *,
        drop: float = 0.0,
        sgd: Optimizer | None = None,
        losses: dict[str, float] | None = None,
    ) -> dict[str, float]:
        losses = {} if losses is None else losses
        examples = list(examples)
        validate_examples(examples, "CausalLM.update")
        docs = [eg.predicted for eg in examples]
        features = self.predict(docs)
        batch_id = LMListener.get_batch_id(docs)
        for listener in self.listeners:
            listener.receive(batch_id, features, lambda d_features: [])
        losses.setdefault(self.name, 0.0)
        return losses

    def finish_update(self, sgd: Optimizer) -> None:
        """The LM is frozen: nothing to update."""

    def initialize(
        self,
        get_examples: Callable[[], Iterable[Example]],
        *,
        nlp: Language | None = None,
        prefill_cache: bool = True,
    ) -> None:
        """Load the LM and check the configuration against it.

        prefill_cache: run the LM over all training texts now, in large length-sorted
            batches, so that training batches (small and unsorted) only read the cache.
            Set it in [initialize.components.causal_lm]; it needs a cache large enough
            to hold the training set.
        """
        sample = [eg.predicted for eg in islice(get_examples(), 2)]
        self.model.initialize(X=sample)
        if prefill_cache and self.extractor.cache is not None:
            self.extractor.prefill(eg.predicted.text for eg in get_examples())
