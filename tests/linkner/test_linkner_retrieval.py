"""Retrieved demonstrations: the index, what it returns, and the router saving it."""

import numpy as np
import pytest
import spacy
from spacy.tokens import Doc

from spacy_ember.linkner.prompt import FewShot
from spacy_ember.linkner.retrieval import DemoIndex, Entry, window

from ..helpers import make_examples, tiny_pipeline
from ..linkner_server import Reply

SENTENCES = [
    "Milan beat Roma 2-1 in Serie A.",  # Milan: ORG
    "The fashion week in Milan opened.",  # Milan: LOC
    "AC Milan signed a new striker.",  # AC Milan: ORG
    "Rain fell over Milan again.",  # Milan: LOC
    "Paris is the capital.",  # Paris: LOC
]
ENTITIES = [(0, 0, 5, "ORG"), (0, 11, 15, "ORG"), (1, 21, 26, "LOC"), (2, 0, 8, "ORG")]
ENTITIES += [(3, 15, 20, "LOC"), (4, 0, 5, "LOC")]


def toy_index(vectors=None) -> DemoIndex:
    return DemoIndex(SENTENCES, [Entry(*e) for e in ENTITIES], vectors)


def form(index: DemoIndex, i: int) -> str:
    entry = index.entries[i]
    return index.sentences[entry.sentence][entry.start : entry.end]


def test_same_form_first_with_every_label():
    index = toy_index()
    ids = index.retrieve("Milan", "Milan won.", None, k=3)
    assert [form(index, i) for i in ids[:2]] == ["Milan", "Milan"]
    assert {index.entries[i].label for i in ids[:2]} == {"ORG", "LOC"}  # both readings
    assert form(index, ids[2]) == "AC Milan"  # then a similar form


def test_never_the_query_sentence_itself():
    index = toy_index()
    for sentence in SENTENCES:
        ids = index.retrieve("Milan", sentence, None, k=10)
        assert all(index.sentences[index.entries[i].sentence] != sentence for i in ids)
    assert len({index.entries[i].sentence for i in index.retrieve("Milan", "x", None, 10)}) == len(
        index.retrieve("Milan", "x", None, 10)
    )  # one demonstration per sentence


def test_nearest_neighbours_fill_up():
    vectors = np.eye(len(ENTITIES), dtype="float16")
    index = toy_index(vectors)
    query = np.eye(len(ENTITIES), dtype="float32")[5]  # "Paris"'s own vector
    ids = index.retrieve("Lutetia", "Lutetia was old.", query, k=1)  # no name match
    assert ids == [5]
    assert index.majority("Lutetia", query, k=1) == "LOC"
    assert index.majority("Milan", None, k=3) in ("ORG", "LOC")
    assert index.majority("Nowhere", None, k=3) is None
    with pytest.raises(ValueError, match="build the index with this pipeline"):
        index.nearest(np.ones(3, dtype="float32"), 2)


def test_demonstrations_are_short_windows():
    long = " ".join(f"w{i}" for i in range(40))
    sentence = f"{long} Milan {long}"
    start = sentence.index("Milan")
    shot = window(sentence, start, start + 5, words=3)
    assert shot.sentence[shot.start_char : shot.end_char] == "Milan"
    assert len(shot.sentence.split()) == 7
    index = DemoIndex([sentence], [Entry(0, start, start + 5, "ORG")])
    assert index.demonstrations([0], words=3) == [shot._replace(label="ORG")]


def test_bad_index_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="No demonstration index"):
        DemoIndex.from_disk(tmp_path)
    with pytest.raises(ValueError, match="build it again"):
        toy_index(np.zeros((2, 4), dtype="float16"))


def gold_docs(nlp):
    return [eg.reference for eg in make_examples(nlp)]


def test_index_round_trip_on_the_tiny_pipeline(tmp_path):
    """Built from gold docs with the tiny LM's vectors, saved, loaded: the same."""
    nlp = tiny_pipeline(threshold=1e-6, reject_o=False)
    nlp.add_pipe("linkner_router", config={"model": "fake", "base_url": "http://127.0.0.1:9/v1"})
    router = nlp.get_pipe("linkner_router")
    built = router.index_demonstrations(gold_docs(nlp))
    assert len(built.entries) == sum(len(d.ents) for d in gold_docs(nlp))
    assert built.vectors is not None and built.vectors.shape[0] == len(built.entries)
    assert np.allclose(np.linalg.norm(built.vectors.astype("float32"), axis=1), 1, atol=1e-2)
    built.to_disk(tmp_path / "index")
    loaded = DemoIndex.from_disk(tmp_path / "index")
    assert loaded.sentences == built.sentences and loaded.entries == built.entries
    assert np.array_equal(loaded.vectors, built.vectors)


def test_router_retrieves_saves_and_loads_lazily(tmp_path, serve):
    """With demonstrations on, each routed entity's prompt shows solved training
    examples (never its own sentence); the index travels with the saved pipeline and
    is read only when first needed."""
    fake = serve([Reply('{"label": "LOC"}')])
    nlp = tiny_pipeline(threshold=1e-6, reject_o=False)
    config = {"model": "fake", "base_url": fake.base_url, "threshold": 0.0, "demonstrations": 2}
    nlp.add_pipe("linkner_router", config=config)
    nlp.get_pipe("linkner_router").index_demonstrations(gold_docs(nlp))
    query = "Angela Merkel met Tim Cook in Berlin."  # a training sentence itself
    doc = nlp(query)
    assert fake.bodies and doc.ents
    for body in fake.bodies:
        turns = body["messages"][1:-1]
        assert len(turns) == 4  # two solved examples: user + assistant each
        assert all(query not in t["content"] for t in turns)
    nlp.to_disk(tmp_path / "model")
    assert (tmp_path / "model" / "linkner_router" / "demonstrations" / "entries.jsonl").is_file()
    loaded = spacy.load(tmp_path / "model")
    router = loaded.get_pipe("linkner_router")
    assert router._index is None  # not read yet
    assert router.index is not None
    assert len(router.index.entries) == sum(len(d.ents) for d in gold_docs(nlp))
    loaded.to_disk(tmp_path / "again")  # saved again before or after reading it
    assert (tmp_path / "again" / "linkner_router" / "demonstrations" / "vectors.npy").is_file()


def test_router_without_index_says_how_to_build_it(serve):
    fake = serve([Reply('{"label": "LOC"}')])
    nlp = tiny_pipeline(threshold=1e-6, reject_o=False)
    config = {"model": "fake", "base_url": fake.base_url, "threshold": 0.0, "demonstrations": 2}
    nlp.add_pipe("linkner_router", config=config)
    with pytest.raises(ValueError, match="--train"):
        nlp("Angela Merkel met Tim Cook in Berlin.")


def test_preceding_context_in_the_prompt(serve):
    from spacy_ember.linkner.labels import LabelSet
    from spacy_ember.linkner.routing import span_request

    nlp = spacy.blank("en")
    words = ["Rome", "won", ".", "Then", "Milan", "lost", "."]
    doc = Doc(nlp.vocab, words=words, sent_starts=[True, False, False, True, False, False, False])
    ent = doc[4:5]
    labels = LabelSet.from_dict({"ORG": "a team", "LOC": "a place"}, "toy")
    user = span_request(ent, labels, [], context_chars=100).messages[-1]["content"]
    assert user.startswith("Context: Rome won .") and "<<Milan>>" in user
    user = span_request(ent, labels, [FewShot("Roma lost", 0, 4, "ORG")], 0).messages[-1]
    assert "Context" not in user["content"]


@pytest.mark.parametrize("n_words", [10, 199, 1000])
def test_a_long_doc_without_sentences_is_shown_around_the_entity(n_words):
    from spacy_ember.linkner.labels import LabelSet
    from spacy_ember.linkner.routing import MAX_UNSPLIT_TOKENS, WINDOW_TOKENS, span_request

    nlp = spacy.blank("en")
    words = [f"w{i}" for i in range(n_words)]
    words[n_words // 2] = "Milan"
    doc = Doc(nlp.vocab, words=words)
    ent = doc[n_words // 2 : n_words // 2 + 1]
    labels = LabelSet.from_dict({"ORG": "a team", "LOC": "a place"}, "toy")
    user = span_request(ent, labels, [], context_chars=50).messages[-1]["content"]
    sentence = user.split("Sentence: ", 1)[1].split("\nSpan:")[0]
    assert "<<Milan>>" in sentence
    shown = len(sentence.split())
    if n_words <= MAX_UNSPLIT_TOKENS:
        assert shown == n_words and "Context" not in user
    else:
        assert shown == 2 * WINDOW_TOKENS + 1 and user.startswith("Context: ")
        assert len(user.split("\n")[0]) <= len("Context: ") + 50
