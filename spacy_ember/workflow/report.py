"""Markdown tables of `spacy evaluate` metrics for the project's reports."""

import json
from collections.abc import Sequence
from pathlib import Path


def metrics_table(paths: Sequence[Path]) -> str:
    """One row per `spacy evaluate` JSON file: entity P/R/F and F per type, in percent."""
    rows = [(Path(p).stem, json.loads(Path(p).read_text(encoding="utf8"))) for p in paths]
    labels = sorted({label for _, m in rows for label in m.get("ents_per_type") or {}})
    lines = [
        "| " + " | ".join(["run", "P", "R", "F", *(f"{label} F" for label in labels)]) + " |",
        "|" + "---|" * (4 + len(labels)),
    ]
    for name, m in rows:
        per_type = m.get("ents_per_type") or {}
        cells = [f"{100 * m[k]:.2f}" for k in ("ents_p", "ents_r", "ents_f")]
        cells += [
            f"{100 * per_type[label]['f']:.2f}" if label in per_type else "-" for label in labels
        ]
        lines.append("| " + " | ".join([name, *cells]) + " |")
    return "\n".join(lines) + "\n"
