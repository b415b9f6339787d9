"""`python -m spacy apply` (spaCy's own batch command) on a spacy-ember pipeline."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import spacy
from spacy.language import Language
from spacy.tokens import Doc, DocBin

from ..helpers import TRAIN_DATA, tiny_pipeline

TEXTS = [text for text, _ in TRAIN_DATA] + ["Tim Cook visited Geneva and Berlin on Monday."]


def ents(doc: Doc) -> list[tuple[int, int, str]]:
    return [(e.start_char, e.end_char, e.label_) for e in doc.ents]


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> Path:
    """The tiny pipeline on disk, with texts in JSONL for `spacy apply`."""
    path = tmp_path_factory.mktemp("apply")
    tiny_pipeline("llama", threshold=0.3).to_disk(path / "model")
    lines = [json.dumps({"text": text}) for text in TEXTS]
    (path / "input.jsonl").write_text("\n".join(lines) + "\n", encoding="utf8")
    return path


def load(path: Path, store_features: bool) -> Language:
    """Load the saved pipeline, asking for stored features through a config override."""
    override = {"components": {"causal_lm": {"store_features": store_features}}}
    return spacy.load(path / "model", config=override)


def apply(saved: Path, model: Path, n_process: int) -> list[Doc]:
    """Run `python -m spacy apply` and read the docs back from the DocBin it writes."""
    out = saved / f"out-{model.name}-{n_process}.spacy"
    command = [sys.executable, "-m", "spacy", "apply", str(model), str(saved / "input.jsonl")]
    command += [str(out), "--n-process", str(n_process), "--batch-size", "2"]
    run = subprocess.run(command, capture_output=True, text=True)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    return list(DocBin().from_disk(out).get_docs(spacy.blank("en").vocab))


@pytest.mark.parametrize("store_features,n_process", [(False, 1), (False, 2), (True, 1)])
def test_apply_writes_the_entities_of_nlp_pipe(saved, store_features, n_process):
    """The DocBin holds what nlp.pipe predicts; doc._.ember_lm only if the config asks."""
    nlp = load(saved, store_features)
    model = saved / "model"
    if store_features:  # the config saved with the pipeline asks for them
        model = saved / "model-stored"
        nlp.to_disk(model)
    docs = apply(saved, model, n_process)
    expected = list(nlp.pipe(TEXTS))
    assert [doc.text for doc in docs] == TEXTS
    assert any(doc.ents for doc in expected)
    assert [ents(doc) for doc in docs] == [ents(doc) for doc in expected]
    for doc, ref in zip(docs, expected):
        scores = [e._.ember_score for e in doc.ents]
        assert scores == pytest.approx([e._.ember_score for e in ref.ents], abs=1e-4)
        assert ref._.ember_lm is not None  # on the Doc in memory either way
        if not store_features:
            assert doc._.ember_lm is None
            continue
        np.testing.assert_array_equal(doc._.ember_lm.align, ref._.ember_lm.align)
        np.testing.assert_array_equal(doc._.ember_lm.usable, ref._.ember_lm.usable)
        for name in ("hidden", "attn"):  # float16, computed in another process
            stored, computed = getattr(doc._.ember_lm, name), getattr(ref._.ember_lm, name)
            np.testing.assert_allclose(stored.astype("float32"), computed, atol=1e-2)


@pytest.mark.parametrize("store_features", [False, True])
def test_docbin_size_follows_store_features(saved, store_features):
    """Unstored features add nothing to a DocBin; stored, most of their bytes."""
    docs = list(load(saved, store_features).pipe(TEXTS))
    feature_bytes = sum(d._.ember_lm.raw.nbytes + d._.ember_lm.align.nbytes for d in docs)
    size = len(DocBin(docs=docs, store_user_data=True).to_bytes())
    for doc in docs:
        doc._.ember_lm = None
    without = len(DocBin(docs=docs, store_user_data=True).to_bytes())
    if store_features:
        assert size - without > feature_bytes / 2
    else:
        assert size == without
