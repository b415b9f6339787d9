"""configs/ember.cfg trains with `spacy train`; entry points make everything findable."""

import subprocess
import sys
from pathlib import Path

import spacy
from spacy.cli.train import train
from spacy.tokens import DocBin
from thinc.api import Config

from ..helpers import TRAIN_DATA, tiny_lm_config

ROOT = Path(__file__).parents[2]


def write_corpus(nlp, path: Path) -> Path:
    db = DocBin()
    for text, ents in TRAIN_DATA:
        doc = nlp.make_doc(text)
        doc.ents = [doc.char_span(s, e, label=label) for s, e, label in ents]
        db.add(doc)
    db.to_disk(path)
    return path


def tiny_config(tmp_path: Path) -> Path:
    config = Config().from_disk(ROOT / "configs" / "ember.cfg", interpolate=False)
    config["components"]["causal_lm"]["model"].update(tiny_lm_config()["model"])
    config["training"].update({"max_steps": 12, "eval_frequency": 6})
    path = tmp_path / "tiny.cfg"
    config.to_disk(path)
    return path


def test_spacy_train_with_the_shipped_config(tmp_path):
    nlp = spacy.blank("en")
    data = write_corpus(nlp, tmp_path / "train.spacy")
    train(
        tiny_config(tmp_path),
        tmp_path / "out",
        overrides={"paths.train": str(data), "paths.dev": str(data)},
    )
    trained = spacy.load(tmp_path / "out" / "model-best")
    assert trained.pipe_names == ["causal_lm", "ember_ner"]
    assert trained.get_pipe("ember_ner").labels == ("LOC", "ORG", "PER")
    doc = trained("Angela Merkel met Tim Cook in Berlin.")
    assert "ember" in doc.spans
    assert (tmp_path / "out" / "model-best" / "ember_ner" / "model").stat().st_size < 5_000_000


def test_shipped_config_defaults_match_the_factories():
    config = Config().from_disk(ROOT / "configs" / "ember.cfg")
    nlp = spacy.blank("en")
    nlp.add_pipe("causal_lm")
    nlp.add_pipe("ember_ner")
    for name in ("causal_lm", "ember_ner"):
        shipped = dict(config["components"][name])
        default = dict(nlp.config["components"][name])
        shipped_model, default_model = shipped.pop("model"), default.pop("model")
        shipped.pop("factory"), default.pop("factory")
        if name == "causal_lm":
            # Training caches more features than the default, on its own backbone:
            # Gemma-3-270M (float32 features: its hidden states pass float16's range on
            # documents) where the factory's default is SmolLM2-135M (one wheel, a chat LM).
            shipped_model.pop("cache"), default_model.pop("cache")
            for key in ("layers", "feature_dtype"):
                shipped_model.pop(key), default_model.pop(key)
            assert shipped_model["loader"].pop("name") == "gemma3-270m"
            default_model["loader"].pop("name")
        assert shipped == default, name
        assert shipped_model == default_model, name


def test_entry_points_without_importing_the_package():
    code = (
        "import spacy\n"
        "nlp = spacy.blank('en')\n"
        "nlp.add_pipe('ember_ner')\n"
        "from spacy.util import registry\n"
        "registry.architectures.get('spacy-ember.CausalLM.v1')\n"
        "registry.misc.get('spacy-ember.HFCausalLM.v1')\n"
        "print(nlp.pipe_names)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "['causal_lm', 'ember_ner']" in out.stdout
