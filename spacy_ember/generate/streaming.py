"""Named-entity recognition while the pipeline's LM generates text (EMBER's streaming).

`stream(nlp, prompt)` runs transformers' `generate` on the LM that `causal_lm` loaded
(KV cache on, attention through SDPA) and yields events as it goes: a "token" event
for each piece once the LM has read it, "entity" as soon as the piece after a span
arrives, "retract" if a later overlapping span scores higher, and a final "end" event
whose `doc` holds the generated text with its entities. Batch size 1.
"""

import inspect
import queue
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import cast

import numpy as np
import torch
from spacy.language import Language
from spacy.tokens import Doc
from transformers import StoppingCriteriaList
from transformers.generation.streamers import BaseStreamer

from ..lm.taps import LMTaps
from .incremental import EntityChange, IncrementalNER
from .request import Prompt, StopFlag, check_request, prompt_ids, stop_ids
from .settings import GenerationSettings


def cache_argument(decoder: torch.nn.Module) -> str:
    """The forward argument taking the KV cache: `cache` (transformers >= 5.2x), before
    that `past_key_values` (deprecated since)."""
    params = inspect.signature(decoder.forward).parameters
    return "cache" if "cache" in params else "past_key_values"


# Fewest earlier pieces decoded with each new one to find its text (see add_token).
DECODE_WINDOW = 8


@dataclass
class StreamEvent:
    """kind: "token" | "entity" | "retract" | "end". Offsets index the generated text.

    token: `text` is the piece, `token_id` its id, `label` its typing-probe label ("O"
    if none; None for a final piece the LM never read). entity / retract: the span, its
    label, score and `label_probs` (the typing distribution over the component's labels).
    end: `doc` is the generated text as a Doc with entities (doc.ents, doc.spans).
    """

    kind: str
    text: str = ""
    start_char: int = 0
    end_char: int = 0
    label: str | None = None
    score: float | None = None
    token_id: int | None = None
    doc: Doc | None = field(default=None, repr=False)
    label_probs: np.ndarray | None = field(default=None, repr=False)


class _EntityStreamer(BaseStreamer):
    """Called by `generate` with each new token, between forward passes: reads the
    features of the piece the LM has just read, then registers the new token."""

    def __init__(self, run: "_StreamRun") -> None:
        self.run = run
        self.prompt_seen = False

    def put(self, value: torch.Tensor) -> None:
        if not self.prompt_seen:
            self.prompt_seen = True
            return
        self.run.read_last()
        self.run.add_token(int(value.reshape(-1)[0]))

    def end(self) -> None:
        pass


class _StreamRun:
    """The state of one generation: token ids, text, and the incremental NER."""

    def __init__(self, nlp: Language, component: str, emit: Callable[[StreamEvent], None]):
        self.ner = IncrementalNER(nlp, component)
        self.extractor = self.ner.extractor
        self.lm = self.extractor.lm
        self.emit = emit
        self.ids: list[int] = []
        self.text = ""
        self.ranges: list[tuple[int, int]] = []  # char range of each generated piece
        # The decoded text of the pieces from window_start on (see add_token).
        self.window_start, self.window_text = 0, ""
        self.stop_ids = stop_ids(self.lm.model, self.lm.tokenizer)
        self.taps = LMTaps(self.lm.model, self.extractor.layers, self.extractor.attn_window)

    def add_token(self, token_id: int) -> None:
        """A sampled token, not yet read by the LM. A stop token ends the text; other
        special tokens are pieces without text."""
        if token_id in self.stop_ids:
            return
        self.ids.append(token_id)
        # Decode only the last pieces, before and after the new one (decoding the whole
        # text each step costs more as it grows): the text from where the two decodings
        # first differ is replaced. A multi-byte character that the new piece completes
        # changes earlier text; at least DECODE_WINDOW pieces before the new one cover any
        # character (at most 4 bytes) and a decoder's special first-piece handling. The
        # window's start moves on in steps, so "before" is mostly the last "after".
        before = self.window_text
        if len(self.ids) - 1 - self.window_start > 2 * DECODE_WINDOW:
            self.window_start = len(self.ids) - 1 - DECODE_WINDOW
            before = self._decode(self.ids[self.window_start : -1])
        after = self.window_text = self._decode(self.ids[self.window_start :])
        diff = (i for i, (a, b) in enumerate(zip(before, after)) if a != b)
        common = len(self.text) - len(before) + next(diff, min(len(before), len(after)))
        self.text = self.text[:common] + after[common - len(self.text) + len(before) :]
        self.ranges.append((common, len(self.text)))
        self.taps.recorder.active = self.ner.needs_band()

    def _decode(self, ids: list[int]) -> str:
        text = self.lm.tokenizer.decode(
            ids, skip_special_tokens=True, clean_up_tokenization_spaces=False
        )
        return cast(str, text)  # one sequence of ids decodes to one string

    def _unread(self) -> int:
        return len(self.ranges) - len(self.ner.offsets)

    def read_last(self) -> None:
        """Read the features of the last piece, which the LM has just processed."""
        band = self.taps.band()
        if self._unread() > 0:
            self._read_rows(self.taps.hidden()[-1:], None if band is None else band[-1:])

    def _read_rows(self, hidden: np.ndarray, band: np.ndarray | None) -> None:
        for k in range(len(hidden)):
            b = None if band is None else band[k]
            if self._unread() > 0:
                start, end = self.ranges[len(self.ner.offsets)]
                changes = self.ner.read(self.text, start, end, hidden[k], b)
                self._emit_changes(changes)
                labels = ("O", *self.ner.labels)
                label = labels[int(np.argmax(self.ner.type_logits.array[-1]))]
                token_id = self.ids[len(self.ner.offsets) - 1]
                self.emit(
                    StreamEvent("token", self.text[start:end], start, end, label, None, token_id)
                )
            else:
                self._emit_changes(self.ner.read_lookahead(hidden[k], b))

    def _emit_changes(self, changes: list[EntityChange]) -> None:
        for c in changes:
            kind = "entity" if c.added else "retract"
            text = self.text[c.start_char : c.end_char]
            event = StreamEvent(kind, text, c.start_char, c.end_char, c.label, c.score)
            event.label_probs = c.label_probs
            self.emit(event)

    def finish(self, cache) -> Doc:
        """Close spans still open: read the last piece if the LM never read it (generation
        stopped at max_new_tokens), then the end-of-text lookahead.

        One more forward pass of the decoder (no LM head) over those one or two tokens,
        spent only when needed: when the last piece is unread, or a span the lookahead
        closes may be an entity (`lookahead_can_close`). Otherwise nothing runs.
        """
        self.ner.text = self.text
        unread = self._unread() > 0
        if cache is not None and (unread or self.ner.lookahead_can_close()):
            feed = [self.ids[-1]] if unread else []
            feed.append(self.extractor.lookahead_token_id)
            self.taps.recorder.active = True
            decoder = self.lm.model.base_model
            with torch.no_grad():
                decoder(
                    input_ids=torch.tensor([feed], device=self.lm.device),
                    use_cache=True,
                    **{cache_argument(decoder): cache},
                )
            self._read_rows(self.taps.hidden(), self.taps.band())
        for k in range(len(self.ner.offsets), len(self.ranges)):
            start, end = self.ranges[k]
            self.emit(
                StreamEvent("token", self.text[start:end], start, end, None, None, self.ids[k])
            )
        doc = self.ner.to_doc()
        self.emit(StreamEvent("end", self.text, 0, len(self.text), doc=doc))
        return doc


def generate_with_entities(
    nlp: Language,
    prompt: Prompt,
    emit: Callable[[StreamEvent], None],
    settings: GenerationSettings | None = None,
    component: str = "ember_ner",
    stop: threading.Event | None = None,
    **generate_kwargs,
) -> Doc:
    """Generate from `prompt` (a text or chat messages), calling `emit` with each event;
    returns the finished Doc.

    generate_kwargs: passed on to transformers' `generate` (e.g. repetition_penalty,
        logits_processor).
    """
    settings = settings or GenerationSettings()
    if component not in nlp.pipe_names:
        raise ValueError(
            f"Streaming needs a trained '{component}' component; the pipeline has {nlp.pipe_names}."
        )
    ids = prompt_ids(nlp, prompt, settings.chat, component)
    check_request(nlp, component, len(ids), settings)
    run = _StreamRun(nlp, component, emit)
    lm = run.lm
    if settings.seed is not None:
        torch.manual_seed(settings.seed)
    sampling = (
        {"do_sample": True, "temperature": settings.temperature, "top_p": settings.top_p}
        if settings.do_sample
        else {"do_sample": False, "temperature": None, "top_p": None, "top_k": None}
    )
    input_ids = torch.tensor([ids], device=lm.device)
    with run.taps:
        run.taps.recorder.active = False
        with torch.no_grad():
            out = lm.model.generate(  # type: ignore[operator]
                input_ids,
                attention_mask=torch.ones_like(input_ids),
                max_new_tokens=settings.max_new_tokens,
                streamer=_EntityStreamer(run),
                stopping_criteria=StoppingCriteriaList([StopFlag(stop or threading.Event())]),
                return_dict_in_generate=True,
                pad_token_id=run.extractor.pad_token_id,
                **sampling,
                **generate_kwargs,
            )
        return run.finish(getattr(out, "cache", None) or getattr(out, "past_key_values", None))


_DEFAULTS = GenerationSettings()  # stream()'s keyword defaults


def stream(
    nlp: Language,
    prompt: str,
    *,
    max_new_tokens: int = _DEFAULTS.max_new_tokens,
    do_sample: bool = _DEFAULTS.do_sample,
    temperature: float = _DEFAULTS.temperature,
    top_p: float = _DEFAULTS.top_p,
    seed: int | None = _DEFAULTS.seed,
    chat: bool | None = _DEFAULTS.chat,
    component: str = "ember_ner",
    **generate_kwargs,
) -> Iterator[StreamEvent]:
    """Generate text from `prompt` and yield token, entity and end events as they happen.

    chat: apply the tokenizer's chat template (None: if it has one); otherwise the raw
        prompt is continued after the start token, as batch mode reads a text.
    generate_kwargs: passed on to transformers' `generate`.
    Generation runs in a background thread; closing the iterator early stops it.
    """
    settings = GenerationSettings(max_new_tokens, do_sample, temperature, top_p, seed, chat)
    events: queue.SimpleQueue = queue.SimpleQueue()  # C queue: the cheapest hand-over
    stop = threading.Event()
    done = object()

    def work() -> None:
        try:
            generate_with_entities(
                nlp, prompt, events.put, settings, component, stop, **generate_kwargs
            )
        except BaseException as err:  # re-raised in the consumer
            events.put(err)
        finally:
            events.put(done)

    thread = threading.Thread(target=work, name="spacy-ember-stream", daemon=True)
    thread.start()
    try:
        while True:
            item = events.get()
            if item is done:
                break
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        thread.join()
