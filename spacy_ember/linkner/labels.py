"""Entity label definitions shown to the LLM: what each label means, in one line.

LinkNER asks an LLM to type a span; a short definition per label (from the corpus's
annotation guidelines) tells it where the boundaries between labels lie.
"""

import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from spacy.util import registry

NONE_LABEL = "NONE"  # the answer "not a named entity"

CONLL2003 = {
    "PER": "Person: names of people, including fictional characters, family names and aliases.",
    "LOC": "Location: names of countries, cities, states, regions, natural features, roads, "
    "buildings and other named places.",
    "ORG": "Organisation: names of companies, government bodies, political parties, sports "
    "teams, institutions, publications and other named groups of people.",
    "MISC": "Miscellaneous: other names, such as nationalities and adjectives derived from "
    "names (e.g. 'German'), languages, religions, ideologies, events, wars, titles of works, "
    "awards and product types.",
}

WNUT17 = {
    "person": "Names of people, real or fictional, referred to by their own name "
    "(not words like 'the driver').",
    "location": "Names of places you can visit, real or fictional, used as a location "
    "(a city's name used for its sports team is not a location).",
    "corporation": "Names of companies: something you can buy shares in or that has employees.",
    "group": "Names of groups that are not companies: bands, sports teams, political "
    "parties, organisations.",
    "creative-work": "Names of works created by people, referred to by their title: songs, "
    "films, books, TV shows, albums, games, artworks.",
    "product": "Official names of products you can touch and buy (e.g. 'iPhone'), "
    "real or fictional.",
}


@dataclass(frozen=True)
class LabelSet:
    """Ordered entity labels, each with a one-line definition for the prompt."""

    items: tuple[tuple[str, str], ...]  # (label, definition)
    name: str = "custom"

    def __post_init__(self) -> None:
        if not self.items:
            raise ValueError("A LabelSet needs at least one label.")
        seen: set[str] = set()
        for label, definition in self.items:
            if not isinstance(label, str) or not label.strip() or label != label.strip():
                raise ValueError(
                    f"Invalid label {label!r}: use a non-empty name without "
                    "leading or trailing spaces."
                )
            if not isinstance(definition, str):
                raise ValueError(f"The definition of label '{label}' must be a string.")
            if label.upper() == NONE_LABEL:
                raise ValueError(
                    f"'{label}' is reserved for 'not a named entity'; rename the label."
                )
            if label.lower() in seen:
                raise ValueError(
                    f"Duplicate label '{label}' (labels are matched case-insensitively)."
                )
            seen.add(label.lower())

    @classmethod
    def from_dict(cls, definitions: Mapping[str, str], name: str = "custom") -> "LabelSet":
        return cls(tuple((label, definitions[label]) for label in definitions), name)

    @property
    def labels(self) -> tuple[str, ...]:
        return tuple(label for label, _ in self.items)

    def definition(self, label: str) -> str:
        for name, definition in self.items:
            if name == label:
                return definition
        raise KeyError(f"Label '{label}' is not in the label set {self.labels}.")

    def options(self, allow_none: bool) -> tuple[str, ...]:
        """The answers the LLM may give: the labels, then NONE if allowed."""
        return self.labels + ((NONE_LABEL,) if allow_none else ())

    def canonical(self, text: str, allow_none: bool) -> str | None:
        """The option matching `text` case-insensitively (surrounding spaces ignored), or None."""
        wanted = text.strip().lower()
        return next((o for o in self.options(allow_none) if o.lower() == wanted), None)

    def reordered(self, labels: Sequence[str]) -> "LabelSet":
        """The same definitions in the order of `labels` (exactly the same set of labels)."""
        missing = [label for label in labels if label not in self.labels]
        extra = [label for label in self.labels if label not in labels]
        if missing or extra:
            raise ValueError(
                f"Label definitions {self.labels} do not match the pipeline's "
                f"labels {tuple(labels)}: missing {missing}, unused {extra}."
            )
        return LabelSet(tuple((label, self.definition(label)) for label in labels), self.name)

    def __len__(self) -> int:
        return len(self.items)


DEFAULTS = {
    "conll2003": LabelSet.from_dict(CONLL2003, "conll2003"),
    "wnut17": LabelSet.from_dict(WNUT17, "wnut17"),
}


def labels_for(pipeline_labels: Iterable[str], label_set: LabelSet | None = None) -> LabelSet:
    """The label set for a pipeline's labels, in the pipeline's order.

    With `label_set`, it must define exactly those labels. Without, a default whose labels
    are exactly that set is used; failing that, each label's definition is its bare name
    (with a warning: the LLM then has to guess what the labels mean).
    """
    labels = tuple(pipeline_labels)
    if label_set is not None:
        return label_set.reordered(labels)
    for default in DEFAULTS.values():
        if set(default.labels) == set(labels):
            return default.reordered(labels)
    warnings.warn(
        f"No label definitions for the labels {labels}: the LLM prompt lists the bare label "
        "names. Give definitions with spacy-ember.label_definitions.v1 for better answers.",
        UserWarning,
        stacklevel=2,
    )
    return LabelSet(tuple((label, label) for label in labels), "bare")


@registry.misc("spacy-ember.conll2003_labels.v1")
def conll2003_labels() -> LabelSet:
    """CoNLL-2003's PER, LOC, ORG, MISC with definitions from its annotation guidelines."""
    return DEFAULTS["conll2003"]


@registry.misc("spacy-ember.wnut17_labels.v1")
def wnut17_labels() -> LabelSet:
    """WNUT-17's six labels with definitions from its annotation guidelines."""
    return DEFAULTS["wnut17"]


@registry.misc("spacy-ember.label_definitions.v1")
def label_definitions(definitions: dict[str, str]) -> LabelSet:
    """Your own labels: {label: one-line definition}, in prompt order."""
    return LabelSet.from_dict(definitions)
