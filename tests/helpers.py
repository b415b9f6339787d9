"""Shared test data and config builders."""

from spacy.language import Language
from spacy.training import Example

from spacy_ember.linkner import LabelSet
from spacy_ember.linkner.labels import CONLL2003, WNUT17

CONLL = LabelSet.from_dict(CONLL2003, "conll2003")
WNUT = LabelSet.from_dict(WNUT17, "wnut17")

TRAIN_DATA: list[tuple[str, list[tuple[int, int, str]]]] = [
    ("Angela Merkel met Tim Cook in Berlin.", [(0, 13, "PER"), (18, 26, "PER"), (30, 36, "LOC")]),
    ("Apple opened offices in New York.", [(0, 5, "ORG"), (24, 32, "LOC")]),
    ("Reuters reported from Brussels on Monday.", [(0, 7, "ORG"), (22, 30, "LOC")]),
    ("The talks in Geneva will continue.", [(13, 19, "LOC")]),
]


def tiny_lm_config(architecture: str = "llama", **overrides) -> dict:
    """causal_lm config with a tiny random in-process LM and small windows."""
    model = {
        "loader": {"@misc": "spacy-ember.RandomCausalLM.v1", "architecture": architecture},
        "layers": [1, 2],
        "attn_window": 4,
        "context": 8,
        "max_length": 32,
        "batch_size": 4,
        "cache": {"@misc": "spacy-ember.FeatureCache.v1", "max_mb": 64},
    }
    model.update(overrides)
    return {"model": model}


def make_examples(nlp: Language) -> list[Example]:
    return [Example.from_dict(nlp.make_doc(text), {"entities": ents}) for text, ents in TRAIN_DATA]


def tiny_pipeline(architecture: str = "llama", **ner_config) -> Language:
    """causal_lm (tiny random LM) + ember_ner, initialised on TRAIN_DATA (untrained)."""
    import spacy

    spacy.util.fix_random_seed(0)
    nlp = spacy.blank("en")
    nlp.add_pipe("causal_lm", config=tiny_lm_config(architecture))
    nlp.add_pipe("ember_ner", config=ner_config)
    nlp.initialize(lambda: make_examples(nlp))
    return nlp
