from spacy import displacy
from spacy.tokens import DocBin
from spacy.util import registry
from typer.testing import CliRunner

from spacy_ember.cli.app import app

from ..helpers import make_examples


def test_visualize_writes_predicted_and_gold(ember_nlp, tmp_path):
    ember_nlp.get_pipe("ember_ner").cfg.update(threshold=1e-6, reject_o=False)
    ember_nlp.to_disk(tmp_path / "model")
    DocBin(docs=[eg.reference for eg in make_examples(ember_nlp)]).to_disk(tmp_path / "d.spacy")
    out = tmp_path / "vis" / "page.html"
    result = CliRunner().invoke(
        app, ["visualize", str(tmp_path / "model"), str(tmp_path / "d.spacy"), str(out), "-n", "2"]
    )
    assert result.exit_code == 0, result.output
    html = out.read_text()
    assert html.count("<h3>gold</h3>") == 2
    assert "Angela Merkel" in html and "PER" in html
    # the colour of every label comes from the spacy_displacy_colors entry point
    assert "spacy-ember" in registry.displacy_colors.get_all()
    assert "#f4a261" in displacy.render(
        {"text": "Tim", "ents": [{"start": 0, "end": 3, "label": "PER"}]}, style="ent", manual=True
    )
