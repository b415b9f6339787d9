"""Streaming NER during generation, with the tiny random LM."""

import os
import threading

import pytest
import spacy
import torch
from transformers import LogitsProcessor, LogitsProcessorList

from spacy_ember.generate.incremental import IncrementalNER
from spacy_ember.generate.streaming import stream

from ..helpers import tiny_lm_config, tiny_pipeline

TEXT = "Angela Merkel visited Berlin, and met Tim Cook in Paris."


class Force(LogitsProcessor):
    """Make greedy generation produce exactly `ids` (teacher forcing through generate)."""

    def __init__(self, ids: list[int], prompt_len: int) -> None:
        self.ids, self.prompt_len = ids, prompt_len

    def __call__(self, input_ids, scores):
        step = input_ids.shape[1] - self.prompt_len
        forced = torch.full_like(scores, float("-inf"))
        forced[:, self.ids[step] if step < len(self.ids) else self.ids[-1]] = 0.0
        return forced


def forced_stream(nlp, text: str, eos: bool = True, **kwargs):
    extractor = nlp.get_pipe("causal_lm").extractor
    ids = extractor.tokenize([text])[0][0]
    if eos:
        ids = ids + [extractor.lookahead_token_id]
    force = Force(ids, prompt_len=1)  # the prompt "" is the start token alone
    processors = LogitsProcessorList([force])
    return list(
        stream(nlp, "", max_new_tokens=len(ids), chat=False, logits_processor=processors, **kwargs)
    )


def ents(doc):
    return [(e.start_char, e.end_char, e.label_) for e in doc.ents]


SETTINGS = [
    {"threshold": 0.4, "reject_o": False, "type_rule": "last"},
    {"threshold": 0.35, "reject_o": False, "type_rule": "mean"},
    {"threshold": 0.3, "reject_o": True, "type_rule": "last"},
    {"threshold": 0.3, "reject_o": True, "type_rule": "first"},
    {"threshold": 0.3, "reject_o": True, "type_rule": "mean"},
]


@pytest.mark.parametrize("cfg", SETTINGS)
def test_streaming_equals_batch_on_the_same_token_ids(architecture, cfg):
    nlp = tiny_pipeline(architecture, **cfg)
    events = forced_stream(nlp, TEXT)
    doc = events[-1].doc
    assert events[-1].kind == "end" and doc.text == TEXT
    batch = nlp(TEXT)
    assert len(batch.ents) > 0
    assert ents(doc) == ents(batch)
    assert doc.spans["ember"].attrs["scores"] == pytest.approx(
        batch.spans["ember"].attrs["scores"], abs=1e-4
    )


@pytest.mark.parametrize("eos", [True, False])
def test_events_are_well_formed(architecture, eos):
    nlp = tiny_pipeline(architecture, threshold=0.4, reject_o=False)
    events = forced_stream(nlp, TEXT, eos=eos)
    end = events[-1]
    assert [e.kind for e in events].count("end") == 1 and end.kind == "end"
    text = end.doc.text
    assert text == TEXT
    tokens = [e for e in events if e.kind == "token"]
    assert "".join(t.text for t in tokens) == text
    assert [t.token_id for t in tokens] == nlp.get_pipe("causal_lm").extractor.tokenize([TEXT])[0][
        0
    ]
    assert all(a.end_char == b.start_char for a, b in zip(tokens, tokens[1:]))
    labels = ("O", *nlp.get_pipe("ember_ner").labels)
    # Without EOS the last piece is cut off: with reject_o=False a span may always be
    # open, so it is read together with the EOS lookahead.
    assert all(t.label in labels for t in tokens)
    live = {}
    for i, e in enumerate(events):
        if e.kind in ("entity", "retract"):
            assert 0 <= e.start_char < e.end_char <= len(text)
            assert e.text == text[e.start_char : e.end_char] and e.label in labels[1:]
            # An entity is announced once the piece after it has been read, just before
            # that piece's token event.
            read = [t for t in events[i:] if t.kind == "token"][:1]
            # (or by the end-of-text lookahead, after the last token event)
            assert not read or read[0].start_char >= e.end_char
            key = (e.start_char, e.end_char)
            if e.kind == "entity":
                live[key] = e.label
            else:
                assert live.pop(key) == e.label
    assert sorted((s, e, label) for (s, e), label in live.items()) == ents(end.doc)


@pytest.mark.parametrize(
    "text", [TEXT, "Müller traf 東京 und 🎉🎉 in Zürich, é.", "naïve café 👩‍👩‍👧 Ελλάδα, 北京市."]
)
def test_incremental_decoding_equals_decoding_the_whole_text(architecture, text):
    """Each piece's character range is what decoding the whole text after it gives,
    also where multi-byte characters span several pieces (they do with the tiny BPE)."""
    nlp = tiny_pipeline(architecture, threshold=0.4, reject_o=False)
    events = forced_stream(nlp, text)
    tokens = [e for e in events if e.kind == "token"]
    assert len(tokens) > 20  # longer than the decoding window
    tokenizer = nlp.get_pipe("causal_lm").extractor.lm.tokenizer
    ids = [t.token_id for t in tokens]
    previous = ""
    for k, token in enumerate(tokens):
        whole = tokenizer.decode(
            ids[: k + 1], skip_special_tokens=True, clean_up_tokenization_spaces=False
        )
        assert (token.start_char, token.end_char) == (
            len(os.path.commonprefix([previous, whole])),
            len(whole),
        )
        previous = whole
    assert events[-1].doc.text == previous == text


def test_eos_closes_a_span_at_the_end(architecture):
    # A tiny threshold and no O rejection: every candidate is an entity, including the
    # ones ending at the last word, which only the end-of-text lookahead can close.
    nlp = tiny_pipeline(architecture, threshold=1e-6, reject_o=False)
    for eos in (True, False):
        doc = forced_stream(nlp, TEXT, eos=eos)[-1].doc
        assert doc.ents and doc.ents[-1].end == len(doc)
        assert ents(doc) == ents(nlp(TEXT))


@pytest.mark.parametrize("span_may_be_open", [True, False])
@pytest.mark.parametrize("eos", [True, False])
def test_extra_pass_only_when_needed(architecture, monkeypatch, span_may_be_open, eos):
    nlp = tiny_pipeline(architecture)
    monkeypatch.setattr(IncrementalNER, "needs_band", lambda self: span_may_be_open)
    monkeypatch.setattr(IncrementalNER, "lookahead_can_close", lambda self: span_may_be_open)
    model = nlp.get_pipe("causal_lm").extractor.lm.model
    calls = []
    handle = model.base_model.register_forward_pre_hook(lambda *args: calls.append(1))
    try:
        events = forced_stream(nlp, TEXT, eos=eos)
    finally:
        handle.remove()
    tokens = [e for e in events if e.kind == "token"]
    # generate runs the prompt plus every sampled token but the last (the EOS, or the
    # last piece when max_new_tokens ends the text). One more pass reads the last piece
    # if it was never read, and the end-of-text lookahead, only when needed.
    sampled = len(tokens) + (1 if eos else 0)
    assert len(calls) == sampled + (1 if span_may_be_open or not eos else 0)
    # Every piece is typed, the last included: an entity may be a text's last word.
    assert all(t.label is not None for t in tokens)
    if eos and not span_may_be_open:
        assert not [e for e in events if e.kind == "entity"]


def test_closing_the_stream_early_stops_generation(architecture):
    nlp = tiny_pipeline(architecture)
    events = stream(nlp, "Angela", max_new_tokens=200, chat=False)
    first = [next(events) for _ in range(3)]
    events.close()
    assert all(e.kind in ("token", "entity", "retract") for e in first)
    assert not [t for t in threading.enumerate() if t.name == "spacy-ember-stream"]


def generated_ids(nlp, n: int = 24, **kwargs) -> list[int | None]:
    """The ids of `n` generated tokens (EOS held back until then)."""
    events = stream(nlp, "Tim", max_new_tokens=n, min_new_tokens=n, chat=False, **kwargs)
    return [e.token_id for e in events if e.kind == "token"]


def test_sampling_follows_the_seed(architecture):
    """Sampled runs repeat with their seed and differ across seeds and from greedy.

    At temperature 3 the tiny random LM's next-token distribution is nearly uniform over
    its vocabulary, so two 24-token runs agree by chance with negligible probability: the
    test fails if sampling or the seed is ignored.
    """
    nlp = tiny_pipeline(architecture)
    greedy = generated_ids(nlp)
    sampled = {
        seed: [generated_ids(nlp, do_sample=True, temperature=3.0, seed=seed) for _ in range(2)]
        for seed in (1, 2)
    }
    assert all(len(run) == 24 for runs in sampled.values() for run in [greedy, *runs])
    assert sampled[1][0] == sampled[1][1] and sampled[2][0] == sampled[2][1]
    assert sampled[1][0] != sampled[2][0]
    assert greedy not in (sampled[1][0], sampled[2][0])


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"max_new_tokens": 0}, "max_new_tokens must be at least 1"),
        ({"max_new_tokens": 250}, "exceeds the LM's context of 256 tokens"),
        ({"chat": True}, "has no chat template"),
    ],
)
def test_bad_generation_requests(kwargs, message):
    nlp = tiny_pipeline("llama")
    with pytest.raises(ValueError, match=message):
        list(stream(nlp, "Angela Merkel " * 3, chat=kwargs.pop("chat", False), **kwargs))


def test_prompt_longer_than_the_context():
    nlp = tiny_pipeline("llama")
    with pytest.raises(ValueError, match="Shorten the prompt"):
        list(stream(nlp, "Angela Merkel " * 200, max_new_tokens=5, chat=False))


def test_pipeline_without_ember_ner():
    nlp = spacy.blank("en")
    nlp.add_pipe("causal_lm", config=tiny_lm_config("llama"))
    with pytest.raises(ValueError, match="needs a trained 'ember_ner'"):
        list(stream(nlp, "Hello"))


@pytest.mark.parametrize("prompt", ["", "   ", "\n\n"])
def test_empty_prompts_generate_from_the_start_token(prompt):
    nlp = tiny_pipeline("llama")
    events = list(stream(nlp, prompt, max_new_tokens=8))
    assert events[-1].kind == "end" and len(events[-1].doc.text) > 0


def test_generate_cli_prints_and_writes_html(tmp_path):
    import subprocess
    import sys

    nlp = tiny_pipeline("llama", threshold=0.4, reject_o=False)
    nlp.to_disk(tmp_path / "model")
    html = tmp_path / "out.html"
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "spacy_ember",
            "generate",
            str(tmp_path / "model"),
            "Angela",
            "-n",
            "12",
            "--no-chat",
            "--html",
            str(html),
        ],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert "displaCy page" in run.stdout and 'class="entities' in html.read_text()
    assert "\x1b[1;38" not in run.stdout  # no colour codes when not printing to a terminal


def test_live_printer_colours_entities():
    import io

    from spacy_ember.generate.streaming import StreamEvent
    from spacy_ember.generate.terminal import LivePrinter

    out = io.StringIO()
    printer = LivePrinter(out, color=True)
    events = [
        StreamEvent("token", "Hi", 0, 2, "O"),
        StreamEvent("token", " Tim", 2, 6, "PER"),
        StreamEvent("token", " Cook", 6, 11, "PER"),
        StreamEvent("entity", " Tim Cook"[1:], 3, 11, "PER", 0.9),
        StreamEvent("token", "!", 11, 12, "O"),
        StreamEvent("end", "Hi Tim Cook!", 0, 12),
    ]
    seen = []
    for event in events:
        printer(event)
        seen.append(out.getvalue())
    assert seen[1] == seen[2] == "Hi"  # entity-typed pieces are held back
    assert "Tim Cook" in seen[4] and "[PER]" in seen[4] and "\x1b[" in seen[4]
    assert out.getvalue().endswith("!\n")


def test_streaming_with_a_scalar_mix_equals_batch(architecture):
    cfg = {**SETTINGS[0], "model": {"typing_probe": {"scalar_mix": True}}}
    nlp = tiny_pipeline(architecture, **cfg)
    doc = forced_stream(nlp, TEXT)[-1].doc
    batch = nlp(TEXT)
    assert len(batch.ents) > 0 and ents(doc) == ents(batch)
    assert doc.spans["ember"].attrs["scores"] == pytest.approx(
        batch.spans["ember"].attrs["scores"], abs=1e-4
    )
