"""displaCy pages comparing predicted entities (with scores) to gold entities."""

from collections.abc import Sequence
from html import escape

from spacy import displacy
from spacy.language import Language
from spacy.tokens import Doc

# One colour per label of the corpora spacy-ember ships settings for (CoNLL-2003, WNUT-17).
LABEL_COLORS = {
    "PER": "#f4a261",
    "ORG": "#8ecae6",
    "LOC": "#90be6d",
    "MISC": "#cdb4db",
    "person": "#f4a261",
    "corporation": "#8ecae6",
    "location": "#90be6d",
    "group": "#ffd166",
    "creative-work": "#cdb4db",
    "product": "#e5989b",
}


def displacy_colors() -> dict[str, str]:
    """Registered through the `spacy_displacy_colors` entry point."""
    return dict(LABEL_COLORS)


def _ents(doc: Doc, with_scores: bool) -> dict:
    ents = []
    for ent in doc.ents:
        item = {"start": ent.start_char, "end": ent.end_char, "label": ent.label_}
        score = ent._.ember_score if with_scores else None
        if score is not None:
            item.update(kb_id=f"{score:.2f}", kb_url="#")
        ents.append(item)
    return {"text": doc.text, "ents": ents, "title": None}


def render_comparison(nlp: Language, gold_docs: Sequence[Doc], title: str) -> str:
    """An HTML page: for each doc, predicted entities (span score beside each label)
    above the gold entities."""
    predicted = list(nlp.pipe(gold.text for gold in gold_docs))
    options = {"colors": displacy_colors()}
    parts = [f"<h1>{escape(title)}</h1>"]
    for i, (pred, gold) in enumerate(zip(predicted, gold_docs), start=1):
        parts.append(f"<h3>{i}. predicted (span score next to each label)</h3>")
        parts.append(displacy.render(_ents(pred, True), style="ent", manual=True, options=options))
        parts.append("<h3>gold</h3>")
        parts.append(displacy.render(_ents(gold, False), style="ent", manual=True, options=options))
        parts.append("<hr>")
    body = "\n".join(parts)
    head = f"<head><meta charset='utf-8'><title>{escape(title)}</title></head>"
    style = "font-family: sans-serif; margin: 2em"
    return f"<!DOCTYPE html><html>{head}<body style='{style}'>{body}</body></html>\n"
