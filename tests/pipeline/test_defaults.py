"""Every default is defined once: factories' default configs, the registered functions
they name, and the component classes agree on every setting they share."""

import inspect
from typing import Any

import pytest
import spacy
from spacy.language import Language
from spacy.util import registry
from thinc.api import Config

from spacy_ember.pipeline.causal_lm import CausalLM
from spacy_ember.pipeline.ember_ner import EmberNER
from spacy_ember.pipeline.linkner_router import LinkNERRouter

CLASSES = {"causal_lm": CausalLM, "ember_ner": EmberNER, "linkner_router": LinkNERRouter}


def _meta(factory: str):
    """The factory's meta, once its entry point has registered it (as add_pipe does)."""
    assert spacy.blank("en").has_factory(factory), f"no factory '{factory}'"
    return Language.get_factory_meta(factory)


def _function(block: dict[str, Any]):
    """The registered function a config block names (@architectures, @misc, ...)."""
    (key,) = [k for k in block if k.startswith("@")]
    return getattr(registry, key[1:]).get(block[key])


def _blocks(config: dict[str, Any], path: str = ""):
    """Every sub-block naming a registered function, with its dotted path."""
    for key, value in config.items():
        if isinstance(value, dict):
            if any(k.startswith("@") for k in value):
                yield f"{path}{key}", value
            yield from _blocks(value, f"{path}{key}.")


def _mismatches(function, values: dict[str, Any]) -> list[str]:
    """Settings whose value differs from the signature's default (None without a default)."""
    params = inspect.signature(function).parameters
    wrong = []
    for name, value in values.items():
        if name.startswith("@") or isinstance(value, dict) or name not in params:
            continue
        default = params[name].default
        if default is inspect.Parameter.empty:
            continue
        default = list(default) if isinstance(default, tuple) else default
        if default != value:
            wrong.append(f"{name}: config {value!r}, signature {default!r}")
    return wrong


@pytest.mark.parametrize("factory", ["causal_lm", "ember_ner"])
def test_registered_functions_default_to_the_factory_config(factory):
    config = Config(_meta(factory).default_config)
    blocks = list(_blocks(config))
    assert blocks, f"{factory} names no registered function"
    for path, block in blocks:
        assert _mismatches(_function(block), block) == [], f"{factory} {path}"


@pytest.mark.parametrize("factory", list(CLASSES))
def test_component_class_defaults_equal_the_factory_config(factory):
    settings = {k: v for k, v in _meta(factory).default_config.items() if not isinstance(v, dict)}
    assert settings, f"{factory} has no settings to compare"
    cls = CLASSES[factory]
    params = inspect.signature(cls.__init__).parameters
    compared = [name for name in settings if name in params]
    assert compared, f"{cls.__name__} takes none of {sorted(settings)}"
    assert _mismatches(cls.__init__, settings) == []


def test_a_mismatch_is_found():
    """The comparison itself can fail: a signature default unlike the config's value."""

    def build(width: int = 256, depth: int = 1) -> None: ...

    assert _mismatches(build, {"width": 128, "depth": 1, "nO": None}) == [
        "width: config 128, signature 256"
    ]
