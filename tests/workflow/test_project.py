"""The spacy project workflow end to end on a tiny sample with the tiny random LM."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

from thinc.api import Config

from spacy_ember.lm.random_lm import random_causal_lm

from ..helpers import tiny_lm_config
from .test_corpora import CONLL

ROOT = Path(__file__).parents[2]


def test_workflow_all_on_tiny_sample(tmp_path):
    project = tmp_path / "project"
    project.mkdir()
    shutil.copy(ROOT / "project.yml", project)
    # A tiny random LM saved as a local model directory: the project's `model` var
    # reaches the HFCausalLM loader as it would with a hub name or a user's model.
    lm = random_causal_lm("gpt2")()
    lm.model.save_pretrained(tmp_path / "tiny-lm")
    lm.tokenizer.save_pretrained(tmp_path / "tiny-lm")
    config = Config().from_disk(ROOT / "configs" / "ember.cfg", interpolate=False)
    tiny = tiny_lm_config()["model"]
    del tiny["loader"]
    config["components"]["causal_lm"]["model"].update(tiny)
    # The default warmup (250 steps) keeps the learning rate near 0 in a short run.
    config["training"]["optimizer"]["learn_rate"].update(warmup_steps=0, initial_rate=0.01)
    (project / "configs").mkdir()
    config.to_disk(project / "configs" / "tiny.cfg")
    data = tmp_path / "data" / "conll2003_en" / "iob2"
    data.mkdir(parents=True)
    for split in ("train", "dev", "test"):
        (data / f"{split}.txt").write_text(CONLL, encoding="utf8")
    variables = {
        "data_dir": str(tmp_path / "data"),
        "config": "configs/tiny.cfg",
        "max_steps": 20,
        "eval_frequency": 10,
        "layers": "[2]",
        "model": str(tmp_path / "tiny-lm"),
        "benchmark_docs": 3,
    }
    args = [f"--vars.{k}={v}" for k, v in variables.items()]
    run = subprocess.run(
        [sys.executable, "-m", "spacy", "project", "run", "all", str(project), *args],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "nothing to download: '" in run.stdout  # setup: the model is a directory
    assert "2 docs, 3 sentences, 9 tokens, 4 entities" in run.stdout  # corpus_unit documents
    # dev and test are the training sample: the trained and tuned pipeline finds most of
    # its 4 entities (F1 0.86); untrained, tuning the decoding alone reaches 0.25.
    for split in ("dev", "test"):
        metrics = json.loads((project / "metrics" / f"conll2003-{split}.json").read_text())
        assert metrics["ents_f"] >= 0.75, metrics
    case = json.loads((project / "metrics" / "conll2003-case.json").read_text())
    dev = json.loads((project / "metrics" / "conll2003-dev.json").read_text())
    assert abs(case["dev_f"] - dev["ents_f"]) < 1e-9  # same scorer, same docs
    assert {"dev_lower_f", "dev_upper_f"} <= set(case)
    assert (project / "visualize" / "conll2003.html").read_text().count("<h3>gold</h3>") == 2
    table = (project / "metrics" / "conll2003.md").read_text()
    assert "| conll2003-dev |" in table and "| conll2003-test |" in table and "LOC F" in table
    speed = json.loads((project / "metrics" / "conll2003-throughput.json").read_text())
    assert speed["n_texts"] == 2 and speed["n_words"] == 9
    assert speed["words_per_s_with_ember_ner"] > 0 and speed["throughput_ratio"] > 0
    trained = Config().from_disk(project / "training" / "conll2003" / "model-best" / "config.cfg")
    assert trained["components"]["causal_lm"]["model"]["layers"] == [2]
    assert trained["paths"]["model"] == str(tmp_path / "tiny-lm")
