import json

import pytest
from spacy.util import registry

from spacy_ember.linkner import (
    NONE_LABEL,
    FewShot,
    LabelSet,
    answer_schema,
    build_messages,
    labels_for,
    parse_answer,
    sample_examples,
)
from spacy_ember.linkner.prompt import mark_span

from ..helpers import CONLL, WNUT

# ---- labels


def test_registered_label_sets():
    conll = registry.misc.get("spacy-ember.conll2003_labels.v1")()
    wnut = registry.misc.get("spacy-ember.wnut17_labels.v1")()
    own = registry.misc.get("spacy-ember.label_definitions.v1")({"DRUG": "A medication."})
    assert conll.labels == ("PER", "LOC", "ORG", "MISC")
    assert wnut.labels == ("person", "location", "corporation", "group", "creative-work", "product")
    assert own.labels == ("DRUG",) and own.definition("DRUG") == "A medication."
    assert all(len(d) > 20 for _, d in conll.items + wnut.items)


@pytest.mark.parametrize(
    "definitions,message",
    [
        ({}, "at least one"),
        ({"PER": "x", "per": "y"}, "Duplicate"),
        ({"none": "x"}, "reserved"),
        ({" PER": "x"}, "Invalid label"),
        ({"": "x"}, "Invalid label"),
    ],
)
def test_bad_label_sets(definitions, message):
    with pytest.raises(ValueError, match=message):
        LabelSet.from_dict(definitions)


def test_labels_for_picks_default_in_pipeline_order():
    labels = labels_for(("ORG", "MISC", "PER", "LOC"))
    assert labels.name == "conll2003" and labels.labels == ("ORG", "MISC", "PER", "LOC")
    assert labels.definition("PER") == CONLL.definition("PER")
    assert labels_for(reversed(WNUT.labels)).name == "wnut17"


def test_labels_for_unknown_labels_warns_and_uses_bare_names():
    with pytest.warns(UserWarning, match="No label definitions"):
        labels = labels_for(("PER", "LOC"))  # a subset of CoNLL is not CoNLL
    assert labels.items == (("PER", "PER"), ("LOC", "LOC"))
    system = build_messages("Anna", 0, 4, labels)[0]["content"]
    assert "- PER\n" in system and "PER: PER" not in system


def test_labels_for_checks_given_definitions():
    own = LabelSet.from_dict({"A": "a thing", "B": "b thing"})
    assert labels_for(("B", "A"), own).labels == ("B", "A")
    with pytest.raises(ValueError, match=r"missing \['C'\], unused \['B'\]"):
        labels_for(("A", "C"), own)


# ---- prompts


@pytest.mark.parametrize(
    "sentence,start,end,marked",
    [
        ("I flew to Paris yesterday.", 10, 15, "I flew to <<Paris>> yesterday."),
        ("Paris is big.", 0, 5, "<<Paris>> is big."),
        ("I love Paris", 7, 12, "I love <<Paris>>"),
        ("Paris", 0, 5, "<<Paris>>"),
        ("Wir fahren nach Köln-Süd 🚆 heute.", 16, 24, "Wir fahren nach <<Köln-Süd>> 🚆 heute."),
        ("東京に行きました。", 0, 2, "<<東京>>に行きました。"),
        ("🙂 Zoë", 2, 5, "🙂 <<Zoë>>"),
    ],
)
def test_span_marked_in_context(sentence, start, end, marked):
    messages = build_messages(sentence, start, end, CONLL)
    assert [m["role"] for m in messages] == ["system", "user"]
    user = messages[-1]["content"]
    assert f"Sentence: {marked}\n" in user
    assert user.endswith(f"Span: {json.dumps(sentence[start:end], ensure_ascii=False)}")


@pytest.mark.parametrize("start,end", [(3, 3), (4, 2), (-1, 2), (0, 6)])
def test_bad_span(start, end):
    with pytest.raises(ValueError, match="Invalid span"):
        mark_span("Paris", start, end)


@pytest.mark.parametrize("labels", [CONLL, WNUT], ids=["conll", "wnut"])
@pytest.mark.parametrize("allow_none", [True, False])
def test_system_prompt_lists_definitions_and_none(labels, allow_none):
    system = build_messages("Anna", 0, 4, labels, allow_none=allow_none)[0]
    assert system["role"] == "system"
    text = system["content"]
    for label, definition in labels.items:
        assert f"- {label}: {definition}" in text
    assert (f"- {NONE_LABEL}: the span is not a named entity" in text) == allow_none
    options = ", ".join(labels.labels + ((NONE_LABEL,) if allow_none else ()))
    assert f'{{"label": "<one of {options}>"}}' in text


def test_few_shot_turns():
    shots = [FewShot("Anna went home.", 0, 4, "PER"), ("It rained.", 0, 2, NONE_LABEL)]
    messages = build_messages("Bob met Carl.", 8, 12, CONLL, examples=shots)
    roles = ["system", "user", "assistant", "user", "assistant", "user"]
    assert [m["role"] for m in messages] == roles
    assert "<<Anna>> went home." in messages[1]["content"]
    assert json.loads(messages[2]["content"]) == {"label": "PER"}
    assert "<<It>> rained." in messages[3]["content"]
    assert json.loads(messages[4]["content"]) == {"label": "NONE"}
    assert "Bob met <<Carl>>." in messages[5]["content"]


@pytest.mark.parametrize("label,allow_none", [("DATE", True), (NONE_LABEL, False)])
def test_few_shot_label_must_be_an_option(label, allow_none):
    with pytest.raises(ValueError, match="Few-shot example label"):
        build_messages("a b", 0, 1, CONLL, [FewShot("x y", 0, 1, label)], allow_none)


@pytest.mark.parametrize("allow_none", [True, False])
def test_answer_schema(allow_none):
    schema = answer_schema(WNUT, allow_none)
    enum = schema["properties"]["label"]["enum"]
    assert enum == list(WNUT.labels) + (["NONE"] if allow_none else [])
    assert schema["required"] == ["label"] and schema["additionalProperties"] is False


# ---- parsing answers


@pytest.mark.parametrize(
    "text,expected",
    [
        ('{"label": "LOC"}', "LOC"),
        ('{"label":"ORG"}\n', "ORG"),
        ('  {"label": "MISC"}  ', "MISC"),
        ('```json\n{"label": "PER"}\n```', "PER"),
        ('```\n{"label": "LOC"}\n```', "LOC"),
        ('Sure! Here is the answer: {"label": "ORG"}. Hope this helps.', "ORG"),
        ('{"label": "loc"}', "LOC"),
        ('{"Label": "Per"}', "PER"),
        ('{"label": " LOC "}', "LOC"),
        ('{"answer": {"label": "ORG"}}', "ORG"),
        ('{"label": "NONE"}', "NONE"),
        ('{"label": "none"}', "NONE"),
        ('{"label": "PER', "PER"),  # cut off by max_tokens
        ('{"label": "PE', None),
        ("{'label': 'LOC'}", "LOC"),
        ("LOC", "LOC"),
        ("loc", "LOC"),
        (' "MISC". ', "MISC"),
        ("**ORG**", "ORG"),
        ("NONE", "NONE"),
        ("The marked span is a location, so the answer is LOC.", "LOC"),
        ("This refers to an organisation (ORG).", "ORG"),
        ("It is NONE of these: not a named entity.", "NONE"),
        ("I'd say it is none other than an ORG.", "ORG"),  # lowercase "none" is prose
        ("Either PER or ORG.", None),
        ('{"label": "PER"} or maybe {"label": "ORG"}', None),
        ('{"label": "PER"} {"label": "per"}', "PER"),
        ('{"label": "DATE"}', None),
        ('{"label": "LOCATION"}', None),
        ('{"label": null}', None),
        ('{"label": 3}', None),
        ("DATE", None),
        ("", None),
        ("   \n", None),
        (None, None),
        ("I don't know.", None),
        ("The PERSON is here", None),  # not the label PER
        ("MISC-like", None),
    ],
)
def test_parse_answer_conll(text, expected):
    assert parse_answer(text, CONLL) == expected


@pytest.mark.parametrize(
    "text,expected",
    [
        ('{"label": "NONE"}', None),
        ("NONE", None),
        ("It is NONE of them; maybe PER.", "PER"),
        ('{"label": "PER"}', "PER"),
    ],
)
def test_parse_answer_without_none(text, expected):
    assert parse_answer(text, CONLL, allow_none=False) == expected


@pytest.mark.parametrize(
    "text,expected",
    [
        ('{"label": "creative-work"}', "creative-work"),
        ('{"label": "Creative-Work"}', "creative-work"),
        ("It is the title of a song, so: creative-work", "creative-work"),
        ("a person", "person"),
        ("The group plays a product", None),
        ("work", None),
    ],
)
def test_parse_answer_wnut(text, expected):
    assert parse_answer(text, WNUT) == expected


# ---- few-shot sampling

TRAIN = [(f"s{i}", 0, 2, label) for i, label in enumerate("PER LOC ORG MISC".split() * 5)]


def test_sample_examples_deterministic_and_balanced():
    a = sample_examples(TRAIN, 4, seed=1)
    assert a == sample_examples(TRAIN, 4, seed=1)
    assert a != sample_examples(TRAIN, 4, seed=2)
    assert sorted(e.label for e in a) == ["LOC", "MISC", "ORG", "PER"]
    assert all(isinstance(e, FewShot) and tuple(e) in TRAIN for e in a)
    assert len(set(sample_examples(TRAIN, 9, seed=0))) == 9


@pytest.mark.parametrize("k,expected", [(0, 0), (-1, 0), (3, 3), (100, len(TRAIN))])
def test_sample_examples_count(k, expected):
    assert len(sample_examples(TRAIN, k)) == expected
    assert sample_examples([], k) == []
