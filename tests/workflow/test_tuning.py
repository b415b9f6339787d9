import spacy
from spacy.tokens import DocBin
from typer.testing import CliRunner

from spacy_ember.cli.app import app
from spacy_ember.workflow.tuning import tune_decoding

from ..helpers import make_examples


def test_tune_decoding_ranks_settings_and_restores_cfg(ember_nlp):
    ner = ember_nlp.get_pipe("ember_ner")
    before = dict(ner.cfg)
    gold = [eg.reference for eg in make_examples(ember_nlp)]
    results = tune_decoding(ember_nlp, gold, thresholds=(0.01, 0.5), type_rules=("last", "mean"))
    assert len(results) == 2 * 2 * 2
    assert [r["ents_f"] for r in results] == sorted((r["ents_f"] for r in results), reverse=True)
    assert ner.cfg == before


def test_cli_saves_the_best_setting(ember_nlp, tmp_path):
    ember_nlp.to_disk(tmp_path / "model")
    db = DocBin(docs=[eg.reference for eg in make_examples(ember_nlp)])
    db.to_disk(tmp_path / "dev.spacy")
    result = CliRunner().invoke(
        app,
        [
            "tune-decoding",
            str(tmp_path / "model"),
            str(tmp_path / "dev.spacy"),
            "-o",
            str(tmp_path / "tuned"),
        ],
    )
    assert result.exit_code == 0, result.output
    best = result.output.splitlines()[2].split("|")
    tuned = spacy.load(tmp_path / "tuned").get_pipe("ember_ner").cfg
    assert tuned["threshold"] == float(best[1]) and tuned["type_rule"] == best[2].strip()
