"""The markdown metrics table built from `spacy evaluate` JSON files."""

import json

import pytest

from spacy_ember.workflow.report import metrics_table


@pytest.mark.parametrize("with_types", [True, False])
def test_metrics_table(tmp_path, with_types):
    per_type = {"LOC": {"p": 0.9, "r": 0.8, "f": 0.847}, "PER": {"p": 1.0, "r": 0.5, "f": 0.6667}}
    dev = {"ents_p": 0.91, "ents_r": 0.82, "ents_f": 0.8626, "ents_per_type": per_type}
    test = {
        "ents_p": 0.5,
        "ents_r": 0.25,
        "ents_f": 0.3333,
        "ents_per_type": {"LOC": per_type["LOC"]},
    }
    if not with_types:
        dev["ents_per_type"] = test["ents_per_type"] = None
    paths = []
    for name, metrics in (("x-dev", dev), ("x-test", test)):
        paths.append(tmp_path / f"{name}.json")
        paths[-1].write_text(json.dumps(metrics))
    lines = metrics_table(paths).splitlines()
    if with_types:
        assert lines[0] == "| run | P | R | F | LOC F | PER F |"
        assert lines[2] == "| x-dev | 91.00 | 82.00 | 86.26 | 84.70 | 66.67 |"
        assert lines[3] == "| x-test | 50.00 | 25.00 | 33.33 | 84.70 | - |"
    else:
        assert lines[0] == "| run | P | R | F |"
        assert lines[3] == "| x-test | 50.00 | 25.00 | 33.33 |"
    assert len(lines) == 4
