"""Run the frozen LM over texts in windows and batches, and extract probe features."""

import os
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from spacy.tokens import Doc

from .alignment import align_pieces, token_char_spans
from .cache import FeatureCache
from .features import LMFeatures, RawFeatures
from .loaders import LoadedLM
from .malloc import hold_freed_memory
from .taps import LMTaps

FEATURE_DTYPES = {"float16": np.float16, "float32": np.float32}
FLOAT16_MAX = float(np.finfo(np.float16).max)


def _one_thread_after_fork() -> None:
    # A forked child that enters torch's inherited OpenMP pool deadlocks (nlp.pipe with
    # n_process > 1 after the parent ran the LM); one thread per process avoids the pool,
    # as torch's own DataLoader workers do.
    torch.set_num_threads(1)


os.register_at_fork(after_in_child=_one_thread_after_fork)


@dataclass
class Window:
    """One LM input sequence: [start token] + pieces[ctx:stop] (+ [lookahead token])."""

    text_idx: int
    ctx: int  # first piece given to the LM (left context begins here)
    start: int  # first piece whose features this window provides
    stop: int  # one past the last such piece
    last: bool  # the text ends in this window: append the lookahead token


def plan_windows(n_pieces: int, max_length: int, context: int, text_idx: int = 0) -> list[Window]:
    """Cover pieces 0..n with windows of at most max_length tokens (specials included).

    Each window after the first repeats `context` pieces of left context, so every
    piece is computed with at least that much history, and the attention window of
    every kept query lies inside its LM input.
    """
    first = max_length - 2
    step = max_length - 2 - context
    windows = [Window(text_idx, 0, 0, min(n_pieces, first), n_pieces <= first)]
    while not windows[-1].last:
        start = windows[-1].stop
        stop = min(n_pieces, start + step)
        windows.append(Window(text_idx, start - context, start, stop, stop == n_pieces))
    return windows


def context_size(lm: LoadedLM) -> int | None:
    """The longest input the LM's position embeddings allow, if its config says."""
    config = lm.model.config
    return getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", None)


class FeatureExtractor:
    """Owns the frozen LM (loaded on first use) and turns docs into `LMFeatures`."""

    def __init__(
        self,
        loader: Callable[[], LoadedLM],
        layers: Sequence[int],
        attn_window: int,
        max_length: int,
        context: int,
        batch_size: int,
        cache: FeatureCache | None,
        feature_dtype: str = "float16",
    ) -> None:
        if attn_window < 1:
            raise ValueError(f"attn_window must be at least 1, got {attn_window}.")
        if context < attn_window:
            raise ValueError(
                f"context ({context}) must be at least attn_window ({attn_window}), so that "
                "every query in a window sees its whole attention window."
            )
        if max_length - 2 - context < 1:
            raise ValueError(
                f"max_length ({max_length}) must exceed context + 2 ({context + 2}): each "
                "window holds a start token, the left context, new pieces and a lookahead token."
            )
        if feature_dtype not in FEATURE_DTYPES:
            raise ValueError(f"feature_dtype must be one of {sorted(FEATURE_DTYPES)}.")
        if not layers:
            raise ValueError("layers must name at least one hidden layer.")
        self.loader = loader
        self.layers = list(layers)
        self.attn_window = attn_window
        self.max_length = max_length
        self.context = context
        self.batch_size = batch_size
        self.cache = cache
        self.feature_dtype = FEATURE_DTYPES[feature_dtype]
        self._lm: LoadedLM | None = None

    @property
    def lm(self) -> LoadedLM:
        """The LM, loaded on first use and checked against the settings."""
        if self._lm is None:
            lm = self.loader()
            n_layers = lm.model.config.num_hidden_layers
            for layer in self.layers:
                if not -n_layers - 1 <= layer <= n_layers:
                    raise ValueError(
                        f"Layer {layer} does not exist in '{lm.name}': hidden layers are "
                        f"0 (embeddings) to {n_layers}, or negative from the end."
                    )
            model_max = context_size(lm)
            if model_max is not None and self.max_length > model_max:
                raise ValueError(
                    f"max_length ({self.max_length}) exceeds the context size of '{lm.name}' "
                    f"({model_max})."
                )
            if lm.tokenizer.eos_token_id is None:
                raise ValueError(
                    f"The tokenizer of '{lm.name}' has no EOS token to use as lookahead."
                )
            if lm.device.type == "cpu":
                hold_freed_memory()
            self._lm = lm
        return self._lm

    @property
    def n_layers(self) -> int:
        return int(self.lm.model.config.num_hidden_layers)

    @property
    def n_heads(self) -> int:
        return int(self.lm.model.config.num_attention_heads)

    @property
    def width(self) -> int:
        return int(self.lm.model.config.hidden_size)

    @property
    def start_token_id(self) -> int:
        """The token before every text: the tokenizer's BOS, or its EOS (GPT-2 style).

        A causal LM's first position is an attention sink with atypical states; a fixed
        start token keeps the first word's features like every other word's.
        """
        tok = self.lm.tokenizer
        return tok.bos_token_id if tok.bos_token_id is not None else tok.eos_token_id

    @property
    def lookahead_token_id(self) -> int:
        """Appended after each text so spans ending at its last word have a lookahead."""
        return int(self.lm.tokenizer.eos_token_id)

    @property
    def pad_token_id(self) -> int:
        """Padding for batched inputs: the tokenizer's pad token, else the lookahead (EOS)."""
        pad = self.lm.tokenizer.pad_token_id
        return self.lookahead_token_id if pad is None else int(pad)

    @property
    def signature(self) -> str:
        """Identifies everything that determines the features (the cache key prefix)."""
        return (
            f"{self.lm.name}|layers={self.layers}|W={self.attn_window}|len={self.max_length}"
            f"|ctx={self.context}|{np.dtype(self.feature_dtype).name}|v1"
        )

    def __call__(self, docs: Sequence[Doc]) -> list[LMFeatures]:
        raws = self.raw_features([doc.text for doc in docs])
        out = []
        for doc, raw in zip(docs, raws):
            align = align_pieces(token_char_spans(doc), raw.offsets)
            usable = np.array([not token.is_space for token in doc], dtype=bool)
            out.append(LMFeatures(raw=raw, align=align, usable=usable))
        return out

    def raw_features(self, texts: Sequence[str]) -> list[RawFeatures]:
        """LM features of each text, from the cache where possible."""
        results: list[RawFeatures | None] = [None] * len(texts)
        cache = self.cache
        keys = [FeatureCache.key(self.signature, t) for t in texts] if cache is not None else []
        todo = []
        for i in range(len(texts)):
            hit = cache.get(keys[i]) if cache is not None else None
            if hit is None:
                todo.append(i)
            else:
                results[i] = hit
        if todo:
            computed = self._compute([texts[i] for i in todo])
            for i, raw in zip(todo, computed):
                results[i] = raw
                if cache is not None:
                    cache.put(keys[i], raw)
        return [r for r in results if r is not None]

    def prefill(self, texts: Iterable[str], chunk: int = 1024) -> None:
        """Compute and cache the features of many texts, with a progress bar."""
        from tqdm import tqdm

        unique = list(dict.fromkeys(texts))
        with tqdm(total=len(unique), desc="LM features", unit="text", leave=False) as bar:
            for start in range(0, len(unique), chunk):
                part = unique[start : start + chunk]
                self.raw_features(part)
                bar.update(len(part))
        cache = self.cache
        if cache is not None and cache.directory is None and len(cache) < len(unique):
            warnings.warn(
                f"The feature cache holds {len(cache)} of {len(unique)} training texts; raise "
                "its max_mb or give it a directory, or the LM reruns every epoch.",
                stacklevel=2,
            )

    def tokenize(self, texts: Sequence[str]) -> tuple[list[list[int]], list[list[tuple[int, int]]]]:
        """Piece ids and character offsets of each text, without special tokens."""
        enc = self.lm.tokenizer(
            list(texts),
            add_special_tokens=False,
            return_offsets_mapping=True,
            return_attention_mask=False,
        )
        return enc["input_ids"], enc["offset_mapping"]

    def _compute(self, texts: Sequence[str]) -> list[RawFeatures]:
        lm = self.lm
        ids, offsets = self.tokenize(texts) if texts else ([], [])
        n_layers_sel, W = len(self.layers), self.attn_window
        LH = self.n_layers * self.n_heads
        hidden = [np.zeros((len(p) + 1, n_layers_sel, self.width), self.feature_dtype) for p in ids]
        attn = [np.zeros((len(p) + 1, W + 1, LH), self.feature_dtype) for p in ids]
        windows = [
            w
            for i, p in enumerate(ids)
            for w in plan_windows(len(p), self.max_length, self.context, i)
        ]
        windows.sort(key=lambda w: w.stop - w.ctx)
        pad_id = self.pad_token_id
        for b in range(0, len(windows), self.batch_size):
            batch = windows[b : b + self.batch_size]
            seqs = [
                [self.start_token_id]
                + ids[w.text_idx][w.ctx : w.stop]
                + ([self.lookahead_token_id] if w.last else [])
                for w in batch
            ]
            T = max(len(s) for s in seqs)
            input_ids = torch.full((len(seqs), T), pad_id, dtype=torch.long)
            mask = torch.zeros((len(seqs), T), dtype=torch.long)
            for j, seq in enumerate(seqs):
                input_ids[j, : len(seq)] = torch.tensor(seq, dtype=torch.long)
                mask[j, : len(seq)] = 1
            h, a = self._forward(input_ids.to(lm.device), mask.to(lm.device))
            for j, w in enumerate(batch):
                # Sequence position of piece k is 1 + k - w.ctx; kept rows end with the
                # lookahead token in a text's last window.
                lo = 1 + w.start - w.ctx
                hi = 1 + w.stop - w.ctx + (1 if w.last else 0)
                rows = slice(w.start, w.stop + (1 if w.last else 0))
                hidden[w.text_idx][rows] = h[j, lo:hi]
                attn[w.text_idx][rows] = a[j, lo:hi]
        return [
            RawFeatures(np.asarray(off, dtype=np.int32).reshape(-1, 2), hid, att)
            for off, hid, att in zip(offsets, hidden, attn)
        ]

    @torch.no_grad()
    def _forward(self, input_ids: torch.Tensor, mask: torch.Tensor):
        with LMTaps(self.lm.model, self.layers, self.attn_window) as taps:
            self.lm.model.base_model(input_ids=input_ids, attention_mask=mask, use_cache=False)
            hidden, band = taps.states(), taps.recorder.stacked()
        hidden = hidden.float()
        if self.feature_dtype == np.float16:
            self._check_float16_range(hidden, mask)
            # Kept rows are in range (checked); clamping spares the dropped ones a warning.
            hidden = hidden.clamp(-FLOAT16_MAX, FLOAT16_MAX)
        return (
            hidden.cpu().numpy().astype(self.feature_dtype),
            band.float().cpu().numpy().astype(self.feature_dtype),
        )

    def _check_float16_range(self, hidden: torch.Tensor, mask: torch.Tensor) -> None:
        """Refuse hidden states that float16 storage would turn into inf. The start token
        (an attention sink, far beyond float16 in Gemma-3) and padding are not kept."""
        kept = hidden[:, 1:][mask[:, 1:].bool().to(hidden.device)]
        peak = kept.abs().max().item() if kept.numel() else 0.0
        if peak > FLOAT16_MAX:
            raise ValueError(
                f"The hidden states of '{self.lm.name}' at layers {self.layers} reach "
                f"{peak:.3g}, beyond float16's range ({FLOAT16_MAX:.0f}), so float16 features "
                'would be inf. Set feature_dtype = "float32" in [components.causal_lm.model].'
            )
