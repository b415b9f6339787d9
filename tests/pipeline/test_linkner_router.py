"""linkner_router with the tiny random pipeline and a loopback OpenAI-compatible server."""

import json
import warnings

import numpy as np
import pytest
import spacy

from spacy_ember.linkner import LLMWarning
from spacy_ember.linkner.fusion import decide
from spacy_ember.linkner.uncertainty import (
    confidence,
    entity_distribution,
    entropy,
    evidential,
    mc_dropout,
)

from ..helpers import make_examples, tiny_lm_config, tiny_pipeline
from ..linkner_server import Reply, json_label_tokens

TEXT = "Angela Merkel visited Berlin, and met Tim Cook in Paris."
DEFINITIONS = {"LOC": "a place", "ORG": "an organisation", "PER": "a person"}


@pytest.fixture(scope="module")
def trained():
    """A tiny pipeline that predicts many entities (every candidate passes)."""
    return tiny_pipeline(threshold=1e-6, reject_o=False)


def local_ents(nlp, text=TEXT):
    """The entities without the router."""
    with nlp.select_pipes(disable=[n for n in ["linkner_router"] if n in nlp.pipe_names]):
        return [(e.start, e.end, e.label_) for e in nlp(text).ents]


def with_router(nlp, base_url, **config):
    if "linkner_router" in nlp.pipe_names:
        nlp.remove_pipe("linkner_router")
    settings = {
        "model": "fake",
        "base_url": base_url,
        "threshold": 0.0,
        "timeout": 2.0,
        "max_retries": 1,
        "label_set": {"@misc": "spacy-ember.label_definitions.v1", "definitions": DEFINITIONS},
    }
    nlp.add_pipe("linkner_router", config={**settings, **config})
    return nlp


# ---- uncertainty on fixed probabilities


@pytest.mark.parametrize(
    "dist,conf,ent",
    [
        ([1.0, 0.0, 0.0], 0.0, 0.0),
        ([1 / 3, 1 / 3, 1 / 3], 2 / 3, 1.0),
        ([0.5, 0.5, 0.0], 0.5, np.log(2) / np.log(3)),
    ],
)
def test_confidence_and_entropy(dist, conf, ent):
    assert confidence(np.array(dist)) == pytest.approx(conf)
    assert entropy(np.array(dist)) == pytest.approx(ent)


def test_entity_distribution():
    assert np.allclose(entity_distribution(0.8, np.array([0.5, 0.5])), [0.2, 0.4, 0.4])


def test_mc_dropout_statistics():
    agree = np.array([[0.1, 0.9], [0.1, 0.9]])
    disagree = np.array([[0.0, 1.0], [1.0, 0.0]])
    # Samples that agree carry no epistemic uncertainty; ones that disagree carry all.
    assert mc_dropout(agree, "mutual_information") == pytest.approx(0.0, abs=1e-9)
    assert mc_dropout(disagree, "mutual_information") == pytest.approx(1.0, abs=1e-6)
    assert mc_dropout(agree, "predictive_entropy") == pytest.approx(entropy(np.array([0.1, 0.9])))
    with pytest.raises(ValueError, match="Unknown MC dropout statistic"):
        mc_dropout(agree, "variance")


@pytest.mark.parametrize("alpha,u", [([1, 1, 1], 1.0), ([10, 1, 1], 0.25), ([28, 1, 1], 0.1)])
def test_evidential(alpha, u):
    assert evidential(np.array(alpha, dtype=float)) == pytest.approx(u)


@pytest.mark.parametrize(
    "weight,scores,expected",
    [
        (None, None, "ORG"),  # replace: the LLM's answer
        (0.5, None, "ORG"),  # fused with a one-hot LLM answer: 0.5 beats the probes' 0.35
        (0.2, None, "PER"),  # a small LLM weight leaves the probes' label
        (0.5, {"NONE": 0.1, "PER": 0.8, "ORG": 0.1}, "PER"),  # logprobs disagree with answer
    ],
)
def test_decide(weight, scores, expected):
    local = np.array([0.05, 0.7, 0.25])  # NONE, PER, ORG
    assert decide(local, "ORG", scores, weight, ("PER", "ORG")) == expected


# ---- routing


def test_routes_uncertain_entities_and_replaces_labels(trained, serve):
    fake = serve([Reply('{"label": "ORG"}')])
    nlp = with_router(trained, fake.base_url)
    local = local_ents(nlp)
    doc = nlp(TEXT)
    assert [(e.start, e.end) for e in doc.ents] == [(s, e) for s, e, _ in local]
    assert fake.count == len(doc.ents) > 0
    for ent, (_, _, label) in zip(doc.ents, local):
        assert ent.label_ == "ORG" and ent._.llm_label == "ORG"
        assert ent._.routed and ent._.local_label == label and 0 <= ent._.uncertainty <= 1
    prompt = fake.bodies[0]["messages"]
    assert "a place" in prompt[0]["content"] and "NONE" in prompt[0]["content"]


def test_threshold_above_every_uncertainty_routes_nothing(trained, serve):
    fake = serve()
    doc = with_router(trained, fake.base_url, threshold=1.0)(TEXT)
    assert fake.count == 0 and doc.ents
    assert not any(e._.routed for e in doc.ents)


@pytest.mark.parametrize(
    "reply",
    [Reply(status=500), Reply(status=429), Reply("I think it is a city."), Reply(body=b"{oops")],
)
def test_failed_calls_keep_every_entity(trained, serve, reply):
    fake = serve([reply])
    nlp = with_router(trained, fake.base_url)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        doc = nlp(TEXT)
    assert [(e.start, e.end, e.label_) for e in doc.ents] == local_ents(nlp)
    assert all(e._.routed and e._.llm_error for e in doc.ents)
    assert any(issubclass(w.category, LLMWarning) for w in caught)


def test_connection_refused_keeps_every_entity(trained):
    nlp = with_router(trained, "http://127.0.0.1:9/v1", max_retries=0)
    with pytest.warns(LLMWarning, match="connection"):
        doc = nlp(TEXT)
    assert doc.ents and all(e._.llm_error == "connection" for e in doc.ents)


@pytest.mark.parametrize("remove_none", [False, True])
def test_not_an_entity(trained, serve, remove_none):
    fake = serve([Reply('{"label": "NONE"}')])
    doc = with_router(trained, fake.base_url, remove_none=remove_none)(TEXT)
    assert len(doc.ents) == (0 if remove_none else len(local_ents(trained)))


def test_fusion_reads_logprobs(trained, serve):
    top = [("PER", np.log(0.05)), ("ORG", np.log(0.9)), ("LOC", np.log(0.05))]
    fake = serve([Reply('{"label": "ORG"}', logprobs=json_label_tokens("ORG", top))])
    doc = with_router(trained, fake.base_url, fuse_weight=0.9, logprobs=True)(TEXT)
    assert fake.bodies[0]["logprobs"] is True
    assert all(e.label_ == "ORG" for e in doc.ents)


def test_second_run_is_served_from_the_cache(trained, serve, tmp_path):
    fake = serve([Reply('{"label": "LOC"}')])
    nlp = with_router(trained, fake.base_url, cache_dir=str(tmp_path / "llm"))
    first = [(e.start, e.end, e.label_) for e in nlp(TEXT).ents]
    calls = fake.count
    nlp = with_router(trained, fake.base_url, cache_dir=str(tmp_path / "llm"))
    assert [(e.start, e.end, e.label_) for e in nlp(TEXT).ents] == first
    assert fake.count == calls > 0


def test_no_api_key_in_a_saved_pipeline(trained, serve, tmp_path, monkeypatch):
    secret = "sk-test-secret-0123456789"
    monkeypatch.setenv("OPENAI_API_KEY", secret)
    fake = serve([Reply('{"label": "LOC"}')])
    nlp = with_router(trained, fake.base_url)
    nlp(TEXT)
    sent = {k.lower(): v for k, v in fake.headers[0].items()}
    assert sent["authorization"] == f"Bearer {secret}"
    nlp.to_disk(tmp_path / "pipeline")
    for path in (tmp_path / "pipeline").rglob("*"):
        if path.is_file():
            assert secret.encode() not in path.read_bytes(), path
    loaded = spacy.load(tmp_path / "pipeline")
    assert "linkner_router" in loaded.pipe_names


def test_missing_key_and_endpoint_keeps_labels(trained):
    nlp = with_router(trained, None)
    with pytest.warns(UserWarning, match="no LLM client"):
        doc = nlp(TEXT)
    assert doc.ents and all(e._.llm_error == "no client" for e in doc.ents)


@pytest.mark.parametrize("statistic", ["predictive_entropy", "mutual_information"])
def test_mc_dropout_uncertainty(trained, serve, statistic):
    fake = serve()
    nlp = with_router(
        trained, fake.base_url, uncertainty="mc_dropout", mc_statistic=statistic, threshold=1.0
    )
    doc = nlp(TEXT)
    values = [e._.uncertainty for e in doc.ents]
    assert values and all(0 <= v <= 1 for v in values) and len(set(values)) > 1


def test_evidential_needs_an_evidential_probe(trained, serve):
    fake = serve()
    nlp = with_router(trained, fake.base_url, uncertainty="evidential")
    with pytest.raises(ValueError, match="typing_loss = 'evidential'"):
        nlp(TEXT)


def test_evidential_probe_trains_and_routes(serve):
    spacy.util.fix_random_seed(0)
    nlp = spacy.blank("en")
    nlp.add_pipe("causal_lm", config=tiny_lm_config("llama"))
    nlp.add_pipe(
        "ember_ner",
        config={"threshold": 1e-6, "reject_o": False, "typing_loss": "evidential"},
    )
    examples = make_examples(nlp)
    optimizer = nlp.initialize(lambda: examples)
    losses = [nlp.update(examples, sgd=optimizer)["ember_ner"] for _ in range(15)]
    assert losses[-1] < losses[0]
    fake = serve()
    doc = with_router(nlp, fake.base_url, uncertainty="evidential", threshold=1.0)(TEXT)
    assert doc.ents and all(0 < e._.uncertainty <= 1 for e in doc.ents)


@pytest.mark.parametrize(
    "config,message",
    [
        ({"uncertainty": "vibes"}, "uncertainty must be one of"),
        ({"fuse_weight": 1.5}, "fuse_weight must lie in 0..1"),
        ({"mc_samples": 1}, "mc_samples must be at least 2"),
    ],
)
def test_bad_config(trained, config, message):
    with pytest.raises(ValueError, match=message):
        with_router(trained, "http://127.0.0.1:9/v1", **config)


def test_config_round_trip(trained, serve, tmp_path):
    fake = serve()
    nlp = with_router(trained, fake.base_url, threshold=0.37, uncertainty="confidence")
    nlp.to_disk(tmp_path / "p")
    cfg = json.loads(json.dumps(spacy.load(tmp_path / "p").config["components"]["linkner_router"]))
    assert cfg["threshold"] == 0.37 and cfg["uncertainty"] == "confidence"


def test_entities_from_elsewhere_are_kept_and_not_routed(trained, serve):
    fake = serve()
    nlp = with_router(trained, fake.base_url)
    doc = nlp.get_pipe("ember_ner")(nlp.get_pipe("causal_lm")(nlp.make_doc(TEXT)))
    # A label ember_ner does not know, on a span too long to be one of its candidates.
    doc.ents = [doc[0 : len(doc)].char_span(0, len(TEXT), label="DATE")]
    doc = nlp.get_pipe("linkner_router")(doc)
    assert [(e.text, e.label_) for e in doc.ents] == [(TEXT, "DATE")]
    assert doc.ents[0]._.uncertainty == 0.0 and not doc.ents[0]._.routed and fake.count == 0
