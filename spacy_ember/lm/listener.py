"""A listener that hands a downstream component the features `causal_lm` computed.

Copied in spirit from spaCy's Tok2VecListener and spacy-transformers'
TransformerListener: during training the upstream component broadcasts its batch
output with `receive`; at prediction time the features are read from `doc._.ember_lm`.
"""

from collections.abc import Callable

from spacy.tokens import Doc
from spacy.util import registry
from thinc.api import Model

from .features import LMFeatures

MISSING_FEATURES = (
    "'{name}' found no causal LM features on the doc. Add the LM component before it, "
    "e.g. nlp.add_pipe('causal_lm', before='{name}'), and make sure it is not disabled. "
    "It needs no [training] frozen_components entry (its weights never change); if you "
    "freeze it anyway, also list it in annotating_components."
)


class LMListener(Model):
    name = "lm-listener"

    def __init__(self, upstream_name: str) -> None:
        Model.__init__(self, name=self.name, forward=listener_forward)
        self.upstream_name = upstream_name
        self._batch_id: int | None = None
        self._outputs: list[LMFeatures] | None = None
        self._backprop: Callable | None = None

    @classmethod
    def get_batch_id(cls, docs: list[Doc]) -> int:
        return sum(sum(token.orth for token in doc) for doc in docs) + len(docs)

    def receive(self, batch_id: int, outputs: list[LMFeatures], backprop: Callable) -> None:
        self._batch_id = batch_id
        self._outputs = outputs
        self._backprop = backprop

    def received_for(self, docs: list[Doc]) -> bool:
        return self._outputs is not None and self._batch_id == self.get_batch_id(docs)


def listener_forward(model: LMListener, docs: list[Doc], is_train: bool):
    if is_train and model.received_for(docs):
        assert model._outputs is not None and model._backprop is not None
        return model._outputs, model._backprop
    outputs = []
    for doc in docs:
        features = doc._.ember_lm
        if features is None:
            raise ValueError(
                MISSING_FEATURES.format(name=model.attrs.get("component", "ember_ner"))
            )
        outputs.append(features)
    return outputs, lambda d_features: []


@registry.architectures("spacy-ember.LMListener.v1")
def build_lm_listener(upstream: str = "*") -> Model[list[Doc], list[LMFeatures]]:
    """Listen to the `causal_lm` component named `upstream` ("*" for any)."""
    return LMListener(upstream)
