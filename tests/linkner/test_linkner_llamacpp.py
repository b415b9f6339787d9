"""linkner_router against a real llama.cpp server on the embedded SmolLM2 GGUF (slow)."""

import threading
import time
import warnings

import pytest

from spacy_ember.linkner import LLMWarning

from ..helpers import tiny_pipeline

pytestmark = pytest.mark.slow

TEXTS = [
    "Angela Merkel visited Berlin, and met Tim Cook in Paris.",
    "Apple opened offices in New York.",
    "Reuters reported from Brussels on Monday.",
]


@pytest.fixture(scope="module")
def llm():
    pytest.importorskip("llama_cpp", reason="pip install 'spacy-ember[llm]'")
    from spacy_ember.linkner.server import running_server

    with running_server() as server:
        yield server.base_url


@pytest.fixture(scope="module")
def nlp():
    return tiny_pipeline(threshold=1e-6, reject_o=False)


def local(nlp, text):
    with nlp.select_pipes(disable=["linkner_router"]):
        return [(e.start, e.end) for e in nlp(text).ents]


def router(nlp, base_url, **config):
    if "linkner_router" in nlp.pipe_names:
        nlp.remove_pipe("linkner_router")
    settings = {"model": "local", "base_url": base_url, "threshold": 0.0, "max_retries": 1}
    nlp.add_pipe("linkner_router", config={**settings, **config})
    return nlp.get_pipe("linkner_router")


@pytest.mark.parametrize("constrain", ["json_schema_llamacpp", "json_object", "none"])
def test_real_server_types_every_routed_entity(nlp, llm, constrain):
    component = router(nlp, llm, constrain=constrain, logprobs=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LLMWarning)  # a 135M LM may answer off-format
        docs = list(nlp.pipe(TEXTS))
    for text, doc in zip(TEXTS, docs):
        assert [(e.start, e.end) for e in doc.ents] == local(nlp, text)  # nothing lost
        for ent in doc.ents:
            assert ent._.routed and ent.label_ in ("PER", "LOC", "ORG")
            assert ent._.llm_label in (None, "NONE", "PER", "LOC", "ORG")
    stats = component.client.stats
    assert stats.calls >= stats.requests - stats.cache_hits > 0
    if constrain == "json_schema_llamacpp":  # the grammar makes every answer parse
        assert not stats.failures


def test_real_server_timeout_keeps_entities(nlp, llm):
    router(nlp, llm, timeout=0.001, max_retries=0)
    with pytest.warns(LLMWarning, match="timeout"):
        doc = nlp(TEXTS[0])
    assert [(e.start, e.end) for e in doc.ents] == local(nlp, TEXTS[0])
    assert all(e._.llm_error == "timeout" for e in doc.ents)


def test_server_dying_mid_run_keeps_entities(nlp):
    pytest.importorskip("llama_cpp")
    from spacy_ember.linkner.server import running_server

    texts = TEXTS * 4
    with running_server() as server:
        component = router(nlp, server.base_url, max_concurrency=1, max_retries=0)
        client = component.client

        def kill_after_first_answers() -> None:
            while client.stats.requests < 2:
                time.sleep(0.005)
            server.stop()

        threading.Thread(target=kill_after_first_answers, daemon=True).start()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            docs = list(nlp.pipe(texts, batch_size=len(texts)))  # one batch of calls
    for text, doc in zip(texts, docs):
        assert [(e.start, e.end) for e in doc.ents] == local(nlp, text)  # nothing lost
    errors = [e._.llm_error for d in docs for e in d.ents]
    assert errors.count(None) >= 2 and "connection" in errors
    assert any("connection" in str(w.message) for w in caught)


@pytest.fixture(scope="module")
def qwen():
    """llama.cpp serving Qwen2.5-Coder-1.5B (skipped unless download-llm fetched it)."""
    pytest.importorskip("llama_cpp", reason="pip install 'spacy-ember[llm]'")
    from spacy_ember.linkner.llms import resolve_llm
    from spacy_ember.linkner.server import running_server

    try:
        resolve_llm("qwen2.5-coder-1.5b")
    except ValueError as err:
        pytest.skip(str(err))
    with running_server("qwen2.5-coder-1.5b", startup_timeout=300) as server:
        yield server.base_url


QUERIES = [  # (sentence, entity, gold)
    ("Milan beat Lazio 2-0 on Sunday .", "Milan", "ORG"),
    ("Angela Merkel arrived in Paris .", "Angela Merkel", "PER"),
    ("Prices rose in Brazil last month .", "Brazil", "LOC"),
    ("Shares of Nortel fell 3 percent .", "Nortel", "ORG"),
]
TRAINING = [  # the demonstration index: what retrieval finds for the queries
    ("Milan drew 1-1 with Roma .", [("Milan", "ORG"), ("Roma", "ORG")]),
    ("Inter Milan coach resigned .", [("Inter Milan", "ORG")]),
    ("Merkel met Chirac in Bonn .", [("Merkel", "PER"), ("Chirac", "PER"), ("Bonn", "LOC")]),
    ("Brazil 's exports grew .", [("Brazil", "LOC")]),
    ("Nortel said profits rose .", [("Nortel", "ORG")]),
]


def test_qwen_types_entities_with_retrieved_demonstrations(qwen):
    """The LLM the README recommends, with demonstrations retrieved by name: every
    answer parses, and at least 3 of 4 clear entities get their gold type."""
    import spacy

    from spacy_ember.linkner import LLMClient
    from spacy_ember.linkner.labels import CONLL2003, LabelSet
    from spacy_ember.linkner.retrieval import DemoIndex, Entry
    from spacy_ember.linkner.routing import span_request

    nlp = spacy.blank("en")
    entries = []
    for i, (sentence, ents) in enumerate(TRAINING):
        entries += [Entry(i, sentence.index(t), sentence.index(t) + len(t), lab) for t, lab in ents]
    index = DemoIndex([s for s, _ in TRAINING], entries)
    labels = LabelSet.from_dict(CONLL2003, "conll2003")
    requests = []
    for sentence, text, _ in QUERIES:
        doc = nlp(sentence)
        ent = doc.char_span(sentence.index(text), sentence.index(text) + len(text))
        demos = index.demonstrations(index.retrieve(text, sentence, None, k=3), words=8)
        assert demos and all(d.sentence != sentence for d in demos)
        requests.append(span_request(ent, labels, demos))
    with LLMClient("local", qwen, max_retries=1, timeout=120) as client:
        answers = client.classify(requests)
    assert all(a.label is not None for a in answers), [a.text for a in answers]
    right = sum(a.label == gold for a, (_, _, gold) in zip(answers, QUERIES))
    assert right >= 3, [a.label for a in answers]
