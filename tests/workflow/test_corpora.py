import pytest
import spacy
from spacy.tokens import DocBin
from typer.testing import CliRunner

from spacy_ember.cli.app import app
from spacy_ember.workflow.corpora import (
    CorpusFormatError,
    convert,
    document_to_doc,
    read_bio,
    read_documents,
    sentence_to_doc,
)

CONLL = """-DOCSTART- -X- -X- O

EU NNP B-NP B-ORG
rejects VBZ B-VP O
German JJ B-NP B-MISC
call NN I-NP O
. . O O

Peter NNP B-NP B-PER
Blackburn NNP I-NP I-PER

-DOCSTART- -X- -X- O

New NNP B-NP B-LOC
York NNP I-NP I-LOC
"""

# WNUT-17: TAB separated, whitespace-only lines (a lone TAB) separate sentences
WNUT = (
    "@paul\tO\nsaw\tO\nStar\tB-creative-work\nWars\tI-creative-work\n"
    "\t\nin\tO\nLondon\tB-location\n\nok\tO\n"
)


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text, encoding="utf8")
    return path


def test_conll2003(tmp_path):
    sents = list(read_bio(write(tmp_path, "c.txt", CONLL)))
    assert [w for w, _ in sents] == [
        ["EU", "rejects", "German", "call", "."],
        ["Peter", "Blackburn"],
        ["New", "York"],
    ]
    doc = sentence_to_doc(spacy.blank("en").vocab, *sents[0])
    assert [(e.text, e.label_) for e in doc.ents] == [("EU", "ORG"), ("German", "MISC")]
    assert doc.text == "EU rejects German call ."


def test_wnut17_tab_lines_split_sentences(tmp_path):
    sents = list(read_bio(write(tmp_path, "w.conll", WNUT)))
    assert len(sents) == 3
    doc = sentence_to_doc(spacy.blank("en").vocab, *sents[0])
    assert [(e.text, e.label_) for e in doc.ents] == [("Star Wars", "creative-work")]


def test_i_tag_starting_an_entity_counts_as_b():
    doc = sentence_to_doc(
        spacy.blank("en").vocab, ["in", "Paris", "France"], ["O", "I-LOC", "B-LOC"]
    )
    assert [(e.text, e.label_) for e in doc.ents] == [("Paris", "LOC"), ("France", "LOC")]


@pytest.mark.parametrize(
    "text,lineno",
    [("EU NNP B-NP B-ORG\nrejects\n", 2), ("a O\nb X-PER\n", 2), ("a O\n\nb B-\n", 3)],
)
def test_malformed_lines_name_the_line(tmp_path, text, lineno):
    path = write(tmp_path, "bad.txt", text)
    with pytest.raises(CorpusFormatError, match=f"bad.txt:{lineno}:"):
        list(read_bio(path))


@pytest.mark.parametrize("unit,n_docs", [("sentences", 3), ("documents", 2)])
def test_convert_writes_docbin_and_counts(tmp_path, unit, n_docs):
    nlp = spacy.blank("en")
    path = write(tmp_path, "c.txt", CONLL)
    counts = convert(path, tmp_path / "out.spacy", nlp.vocab, unit, show_progress=False)
    assert counts == {
        "docs": n_docs,
        "sentences": 3,
        "tokens": 9,
        "entities": {"LOC": 1, "MISC": 1, "ORG": 1, "PER": 1},
    }
    docs = list(DocBin().from_disk(tmp_path / "out.spacy").get_docs(nlp.vocab))
    assert len(docs) == n_docs
    assert [e.text for d in docs for e in d.ents] == ["EU", "German", "Peter Blackburn", "New York"]
    assert [s.text for d in docs for s in d.sents] == [
        "EU rejects German call .",
        "Peter Blackburn",
        "New York",
    ]


def test_documents_follow_docstart_lines(tmp_path):
    documents = list(read_documents(write(tmp_path, "c.txt", CONLL)))
    assert [[words for words, _ in d] for d in documents] == [
        [["EU", "rejects", "German", "call", "."], ["Peter", "Blackburn"]],
        [["New", "York"]],
    ]


def test_a_file_without_docstart_has_one_document_per_sentence(tmp_path):
    assert [len(d) for d in read_documents(write(tmp_path, "w.conll", WNUT))] == [1, 1, 1]
    # sentences before the first -DOCSTART- stand alone; a DOCSTART right after a
    # sentence (no blank line) still ends it
    text = "a O\n\nb O\n-DOCSTART- -X- -X- O\nc B-PER\n\nd O\n"
    documents = list(read_documents(write(tmp_path, "m.txt", text)))
    assert [[words for words, _ in d] for d in documents] == [[["a"]], [["b"]], [["c"], ["d"]]]


def test_document_doc_keeps_sentence_starts_and_entities():
    doc = document_to_doc(
        spacy.blank("en").vocab,
        [(["Leeds", "won"], ["I-ORG", "O"]), (["in", "New", "York"], ["O", "B-LOC", "I-LOC"])],
    )
    assert doc.text == "Leeds won in New York"
    assert [t.is_sent_start for t in doc] == [True, False, True, False, False]
    assert [(e.text, e.label_) for e in doc.ents] == [("Leeds", "ORG"), ("New York", "LOC")]


def test_an_entity_never_runs_across_sentences():
    doc = document_to_doc(
        spacy.blank("en").vocab, [(["Real"], ["B-ORG"]), (["Madrid", "won"], ["I-ORG", "O"])]
    )
    assert [(e.text, e.label_) for e in doc.ents] == [("Real", "ORG"), ("Madrid", "ORG")]


def test_unknown_unit_is_refused(tmp_path):
    with pytest.raises(ValueError, match="documents, sentences"):
        convert(
            write(tmp_path, "c.txt", CONLL), tmp_path / "o.spacy", spacy.blank("en").vocab, "pages"
        )


def test_cli_convert(tmp_path):
    result = CliRunner().invoke(
        app, ["convert", str(write(tmp_path, "w.conll", WNUT)), str(tmp_path / "w.spacy")]
    )
    assert result.exit_code == 0, result.output
    assert "3 docs, 3 sentences" in result.output and "location 1" in result.output
    docs = CliRunner().invoke(
        app,
        [
            "convert",
            str(write(tmp_path, "c.txt", CONLL)),
            str(tmp_path / "c.spacy"),
            "--unit",
            "documents",
        ],
    )
    assert docs.exit_code == 0 and "2 docs, 3 sentences" in docs.output, docs.output
    bad = CliRunner().invoke(
        app, ["convert", str(write(tmp_path, "b.txt", "a\n")), str(tmp_path / "b.spacy")]
    )
    assert bad.exit_code == 1 and "b.txt:1:" in bad.output
