"""Requirements a saved pipeline needs that `spacy package` cannot find on its own.

`spacy package` lists the distributions of the registered functions a config names, so
spacy-ember itself is found through its factories' entry points. A GGUF backbone
shipped inside a Python package (`package/file.gguf`, the embedded default) or in
part wheels (a `download-llm` name such as gemma3-270m) is named only by a string, so
its distributions are added to `nlp.meta["requirements"]`, which `nlp.to_disk` writes
to meta.json and `spacy package` copies into the wheel.
"""

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from spacy import util
from spacy.language import Language
from thinc.api import Config

from ..linkner.llms import LLMS
from ..lm.gguf import PIP_NAMES

HF_LOADER = "spacy-ember.HFCausalLM.v1"


def _loader_names(node: Any) -> Iterator[str]:
    """Every `name` given to an HFCausalLM loader without `gguf_file`, anywhere in a config."""
    if isinstance(node, dict):
        name = node.get("name")
        if node.get("@misc") == HF_LOADER and isinstance(name, str) and not node.get("gguf_file"):
            yield name
        for value in node.values():
            yield from _loader_names(value)


def _packaged_gguf_module(name: str) -> str | None:
    """The Python package of a `package/file.gguf` name; None for any other source."""
    path = Path(name)
    if path.suffix != ".gguf" or path.is_absolute() or len(path.parts) != 2 or path.is_file():
        return None
    package = path.parts[0]
    return package if package.isidentifier() else None


def backbone_requirements(config: Config) -> list[str]:
    """pip requirements of the packages shipping the config's backbones: the packages of a
    `download-llm` name as that pins them, a `package/file.gguf`'s package versioned like
    spaCy's own requirements (`>=x.y.z,<x.(y+1).0`) when installed here, else bare."""
    components = config.interpolate().get("components", {})
    distributions = util.packages_distributions()
    requirements: list[str] = []
    for name in _loader_names(components):
        if name in LLMS:
            parts = [part.requirement for part in LLMS[name].parts]
            requirements += [r for r in parts if r not in requirements]
            continue
        module = _packaged_gguf_module(name)
        if module is None:
            continue
        dists = distributions.get(module)
        if dists:
            version = util.get_package_version(dists[0])
            requirement = dists[0] + (util.get_minor_version_range(version) if version else "")
        else:
            requirement = PIP_NAMES.get(module, module.replace("_", "-"))
        if requirement not in requirements:
            requirements.append(requirement)
    return requirements


def add_requirements(nlp: Language) -> list[str]:
    """Add the backbone packages to `nlp.meta["requirements"]` before saving; returns them.

    Requirements already listed (by name) are kept as they are.
    """
    requirements = list(nlp.meta.get("requirements") or [])
    listed = {util.split_requirement(r)[0] for r in requirements}
    for requirement in backbone_requirements(nlp.config):
        if util.split_requirement(requirement)[0] not in listed:
            requirements.append(requirement)
    nlp.meta["requirements"] = requirements
    return requirements
