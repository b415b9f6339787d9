"""Property-based tests (hypothesis) over hostile unicode text.

Random text mixing emoji (ZWJ sequences, skin tones, flags), combining marks, RTL
scripts and marks, CJK, control and zero-width characters, very long tokens, runs of
whitespace and newline-only texts goes through `causal_lm` + `ember_ner`, through
`linkner_router` against a loopback server answering random strings, and through
streaming generation. The tiny random pipeline accepts nearly every candidate span
(threshold 1e-6, no O rejection), so the entity checks are not vacuous.
"""

import json
import os
import threading
import warnings
import zlib

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from hypothesis import HealthCheck, event, example, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from spacy_ember import GenerationSettings, generate_with_entities, stream  # noqa: E402
from spacy_ember.linkner import NONE_LABEL, parse_answer  # noqa: E402

from ..helpers import tiny_pipeline  # noqa: E402
from ..linkner_server import FakeLLMServer, Reply, completion, json_label_tokens  # noqa: E402

DEFINITIONS = {"LOC": "a place", "ORG": "an organisation", "PER": "a person"}
WATCHDOG_SECONDS = 60.0
# FUZZ_SCALE=10 python -m pytest tests/test_fuzz.py runs ten times as many examples.
SCALE = float(os.environ.get("FUZZ_SCALE", "1"))
FUZZ = settings(
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def examples(n: int) -> int:
    """n examples, times FUZZ_SCALE."""
    return max(1, round(n * SCALE))


# ---- text strategy: explicit fragments of every awkward class, mixed with st.text()

EMOJI = [
    "😀",
    "🎉🎉",
    "👍🏽",  # skin-tone modifier
    "👨🏿‍💻",  # skin tone inside a ZWJ sequence
    "👩‍👩‍👧",  # ZWJ family
    "🏳️‍🌈",  # variation selector + ZWJ
    "🇫🇷🇩🇪",  # regional-indicator flags
    "1️⃣",  # keycap
]
COMBINING = ["e\u0301", "\u0301", "a\u0308\u0323", "Z\u0334\u0321\u031b\u0356", "\u20dd"]
RTL = ["שלום", "مرحبا بالعالم", "\u200fעברית\u200f", "\u202eabc\u202c", "Ali علي 12"]
CJK = ["北京市", "東京タワー", "한국어", "ｶﾀｶﾅ", "習近平", "〇〇"]
CONTROL = [chr(i) for i in range(0x20)] + [
    "\x7f",
    "\x85",
    "\u200b",
    "\u200c",
    "\u200d",
    "\u200e",
    "\ufeff",
    "\u2028",
    "\u2029",
    "\ufffd",
]
LONG_TOKENS = [  # one token each, no spaces; the LM reads one piece per byte of most
    "x" * 301,
    "Donaudampfschifffahrtsgesellschaftskapitänsmützenabzeichen" * 6,
    "🎉" * 40,
    "e\u0301" * 60,
    "北" * 50,
]
WHITESPACE = ["   ", "\t\t\t", " \t \t ", "\u00a0\u00a0", "\u3000", "          " * 4]
NEWLINES = ["\n", "\n\n\n", "\r\n", "\r\n\r\n"]
WORDS = ["Angela", " Merkel", " met", " Tim Cook", " in", " Berlin", ".", ",", " U.S.", "-"]
WHOLE_TEXTS = ["", "\n\n\n", "   ", "\t \n", *LONG_TOKENS, "".join(CONTROL)]

fragments = st.sampled_from(EMOJI + COMBINING + RTL + CJK + CONTROL + WHITESPACE + NEWLINES + WORDS)
# Short mixtures of fragments and arbitrary unicode.
mixed = st.lists(st.one_of(fragments, fragments, st.text(max_size=12)), max_size=10).map("".join)
# A long token inside a mixture (the LM reads it in many windows, so these cost most).
with_long_token = st.builds(lambda a, t, b: a + t + b, mixed, st.sampled_from(LONG_TOKENS), mixed)
texts = st.one_of(
    st.sampled_from(WHOLE_TEXTS),
    *[mixed] * 4,
    st.text(max_size=60),
    with_long_token,
)
# Prompts: mostly short enough for the tiny LM's context of 256 tokens.
short_mixed = st.lists(st.one_of(fragments, st.text(max_size=8)), max_size=5).map("".join)
prompts = st.one_of(
    st.sampled_from(["", "\n\n\n", "   ", "\x00"]),
    short_mixed,
    short_mixed,
    short_mixed,
    st.text(max_size=30),
    texts,
)
# The router's behaviour depends on the entities and the replies, not on text length;
# plain words among the fragments make entities likely (a token of more than
# attn_window = 4 pieces, as most non-ASCII words are here, is never a candidate).
words = st.sampled_from(WORDS)
worded = st.lists(st.one_of(words, words, fragments, st.text(max_size=8)), min_size=2, max_size=10)
router_texts = st.one_of(
    st.sampled_from(["", "\n\n\n", " \t "]), mixed, worded.map("".join), worded.map("".join)
)


# ---- pipeline and server, built once per module (hypothesis reruns a test body many
# times; function-scoped fixtures would not be reset between examples)


@pytest.fixture(scope="module")
def nlp():
    """causal_lm (tiny random Llama) + ember_ner that accepts nearly every candidate."""
    return tiny_pipeline(threshold=1e-6, reject_o=False)


class Replies:
    """What the loopback server answers: the reply for a request is chosen by a hash of
    its last user message (the marked span), so each entity's reply is known."""

    def __init__(self) -> None:
        self.replies: list[Reply] = [Reply()]
        self.seen: dict[str, Reply] = {}
        self.lock = threading.Lock()

    def set(self, replies: list[Reply]) -> None:
        with self.lock:
            self.replies, self.seen = list(replies), {}

    def for_content(self, content: str) -> Reply:
        key = zlib.crc32(content.encode("utf-8", "surrogatepass"))
        return self.replies[key % len(self.replies)]

    def __call__(self, body: dict, n: int) -> Reply:
        content = body["messages"][-1]["content"]
        reply = self.for_content(content)
        with self.lock:
            self.seen[content] = reply
        return reply


@pytest.fixture(scope="module")
def llm():
    """A loopback OpenAI-compatible server answering with the current `Replies`."""
    replies = Replies()
    server = FakeLLMServer(replies)
    yield server, replies
    server.stop()


def add_router(nlp, base_url: str, **config):
    """(Re)add linkner_router pointed at `base_url`: every entity routed by default, no
    retries (no backoff sleeps), the tiny pipeline's labels with definitions."""
    settings_ = {
        "model": "fake",
        "base_url": base_url,
        "threshold": 0.0,
        "timeout": 5.0,
        "max_retries": 0,
        "label_set": {"@misc": "spacy-ember.label_definitions.v1", "definitions": DEFINITIONS},
    }
    if "linkner_router" in nlp.pipe_names:
        nlp.remove_pipe("linkner_router")
    return nlp.add_pipe("linkner_router", config={**settings_, **config})


# ---- checks


def check_span(doc, span, labels) -> None:
    text = doc.text
    assert 0 <= span.start < span.end <= len(doc)
    assert 0 <= span.start_char < span.end_char <= len(text)
    assert span.start_char == doc[span.start].idx
    assert span.end_char == doc[span.end - 1].idx + len(doc[span.end - 1].text)
    assert span.text == text[span.start_char : span.end_char]
    same = doc.char_span(span.start_char, span.end_char)  # strict: token boundaries only
    assert same is not None and (same.start, same.end) == (span.start, span.end)
    assert span.label_ in labels
    assert not span[0].is_space and not span[-1].is_space  # whitespace is never an edge


def check_doc(doc, labels, text: str | None = None) -> None:
    """doc.ents valid: in range, sorted, disjoint, on token boundaries, known labels,
    token IOB tags agreeing; doc.spans['ember'] consistent with its attrs."""
    if text is not None:
        assert doc.text == text
    previous_end = 0
    for ent in doc.ents:
        check_span(doc, ent, labels)
        assert ent.start >= previous_end, "entities overlap or are out of order"
        previous_end = ent.end
    iob = ["O"] * len(doc)
    for ent in doc.ents:
        iob[ent.start] = "B"
        iob[ent.start + 1 : ent.end] = ["I"] * (len(ent) - 1)
    assert [t.ent_iob_ for t in doc] == iob
    if "ember" in doc.spans:
        group = doc.spans["ember"]
        spans = sorted(group, key=lambda s: s.start)
        for a, b in zip(spans, spans[1:]):
            assert a.end <= b.start, "doc.spans['ember'] overlap"
        for span in group:
            check_span(doc, span, labels)
        scores = np.asarray(group.attrs["scores"])
        probs = np.asarray(group.attrs["label_probs"])
        assert list(group.attrs["labels"]) == list(labels)
        assert scores.shape == (len(group),) and probs.shape == (len(group), len(labels))
        assert np.isfinite(scores).all() and ((scores >= 0) & (scores <= 1)).all()
        assert np.isfinite(probs).all() and ((probs >= 0) & (probs <= 1 + 1e-6)).all()


def ent_tuples(doc) -> list[tuple[int, int, int, int, str]]:
    return [(e.start, e.end, e.start_char, e.end_char, e.label_) for e in doc.ents]


def labels_of(nlp) -> tuple[str, ...]:
    return tuple(nlp.get_pipe("ember_ner").labels)


# ---- causal_lm + ember_ner


SANITY_TEXTS = [
    "Angela Merkel met Tim Cook in Berlin.",
    "Met 👩‍🔬 Marie Curie 🇫🇷 in Paris 🎉🎉",
    "Müller traf 東京 und שלום in Zürich, e\u0301.",
]


def test_sanity_entities_are_predicted(nlp, llm):
    """The settings make entities plentiful (so the properties below are not vacuous),
    and the router really calls the server and changes labels."""
    labels = labels_of(nlp)
    for text in SANITY_TEXTS:
        doc = nlp(text)
        check_doc(doc, labels, text)
        assert len(doc.ents) >= 2, text
    server, replies = llm
    replies.set([Reply('{"label": "LOC"}')])
    add_router(nlp, server.base_url)
    try:
        doc = nlp(SANITY_TEXTS[0])
    finally:
        nlp.remove_pipe("linkner_router")
    assert doc.ents and all(e.label_ == "LOC" for e in doc.ents if e._.routed)
    assert len(replies.seen) == sum(e._.routed for e in doc.ents) > 0


@settings(FUZZ, max_examples=examples(40))
@given(text=texts)
@example(text="")
@example(text="\n\n\n")
@example(text="x" * 301)
@example(text="👩‍👩‍👧 שלום مرحبا 北京市 \x00\x07\u200b\u200e\ufeff e\u0301 \t\t  ")
def test_pipeline_on_random_text(nlp, text):
    """No exception; doc.ents and doc.spans['ember'] are valid, on token boundaries,
    with known labels, and doc.spans['ember'] holds exactly the entities."""
    doc = nlp(text)
    event("with entities" if doc.ents else "no entities")
    check_doc(doc, labels_of(nlp), text)
    assert sorted((s.start, s.end, s.label_) for s in doc.spans["ember"]) == [
        (e.start, e.end, e.label_) for e in doc.ents
    ]


@settings(FUZZ, max_examples=examples(8))
@given(batch=st.lists(texts, min_size=1, max_size=4))
def test_batches_equal_single_docs(nlp, batch):
    """nlp.pipe over a batch of random texts gives valid docs with the same entities
    as processing each text on its own."""
    labels = labels_of(nlp)
    docs = list(nlp.pipe(batch, batch_size=3))
    assert len(docs) == len(batch)
    for doc, text in zip(docs, batch):
        check_doc(doc, labels, text)
        assert ent_tuples(doc) == ent_tuples(nlp(text))


# ---- linkner_router against a server answering random strings

LABEL_WORDS = ["PER", "LOC", "ORG", "NONE", "none", "per", "Loc", "MISC", "DATE", "O", "", "null"]
label_words = st.sampled_from(LABEL_WORDS)
reply_texts = st.one_of(
    st.text(max_size=40),
    st.text(st.characters(exclude_categories=()), max_size=20),  # lone surrogates too
    label_words,
    label_words.map(lambda label: json.dumps({"label": label})),
    st.text(max_size=20).map(lambda label: json.dumps({"label": label}, ensure_ascii=False)),
    st.builds(
        lambda a, b: json.dumps({"label": a}) + json.dumps({"label": b}), label_words, label_words
    ),
    st.builds(lambda w, n: (w + " ") * n, label_words, st.integers(500, 3000)),  # very long
    st.sampled_from(
        [
            '```json\n{"label": "LOC"}\n```',
            '{"label": ',
            '{"label": ["PER"]}',
            '{"label": null}',
            '{"Label": "org", "label": "PER"}',
            "It is PER or ORG.",
            "{oops",
            "\ufffd\ufffd\x00",
            "\ud800\udfff",
        ]
    ),
)


def broken_utf8(text: str) -> Reply:
    """A chat completion whose content bytes are not valid UTF-8."""
    body = json.dumps(completion("fake", 0, Reply("\x01\x02")))
    return Reply(body=body.encode().replace(b"\\u0001\\u0002", text.encode() + b"\xff\xc3("))


plain_replies = reply_texts.map(Reply)
logprob = st.floats(max_value=0.0) | st.floats()  # NaN, inf and positive values too
alternatives = st.lists(st.tuples(label_words | st.text(max_size=6), logprob), max_size=5)
with_logprobs = st.one_of(
    st.builds(  # a JSON answer with the label token's alternatives
        lambda label, lp, top: Reply(
            json.dumps({"label": label}), logprobs=json_label_tokens(label, [(label, lp), *top])
        ),
        label_words,
        logprob,
        alternatives,
    ),
    st.builds(  # any text with any tokens
        lambda text, tokens: Reply(text, logprobs=tokens),
        reply_texts,
        st.lists(st.tuples(st.text(max_size=6), logprob, alternatives), max_size=6),
    ),
)
replies_any = st.one_of(
    plain_replies,
    plain_replies,
    with_logprobs,
    st.binary(max_size=64).map(lambda b: Reply(body=b)),  # not JSON, often not UTF-8
    st.sampled_from([400, 404, 429, 500, 503]).map(lambda s: Reply(status=s)),
    label_words.map(broken_utf8),
    st.just(Reply(body=b'{"choices": []}')),
)


def route_and_check(nlp, llm, text, replies, *, sentences=False, **config) -> None:
    """Run the pipeline with the router (and a sentencizer before it if `sentences`);
    with remove_none off, every entity is kept (same count, tokens and char offsets),
    labels stay known, each routed entity's request reached the server, the answer it
    got is the one recorded on it, and the label follows that answer."""
    server, box = llm
    labels = labels_of(nlp)
    with nlp.select_pipes(enable=["causal_lm", "ember_ner"]):
        before = nlp(text)
    box.set(replies)
    router = add_router(nlp, server.base_url, mc_samples=3, **config)
    threshold, fuse_weight = router.threshold, router.fuse_weight
    if sentences:
        nlp.add_pipe("sentencizer", before="linkner_router")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            doc = nlp(text)
    finally:
        for name in ("linkner_router", "sentencizer"):
            if name in nlp.pipe_names:
                nlp.remove_pipe(name)
    check_doc(doc, labels, text)
    assert [t[:4] for t in ent_tuples(doc)] == [t[:4] for t in ent_tuples(before)]
    prompt_labels = router.prompt_labels
    routed = 0
    for ent, (*_, local) in zip(doc.ents, ent_tuples(before)):
        assert 0.0 <= ent._.uncertainty <= 1.0 and ent._.local_label == local
        assert ent._.routed == (ent._.uncertainty > threshold)
        if not ent._.routed:
            assert ent.label_ == local and ent._.llm_label is None
            continue
        routed += 1
        content = router.request(ent).messages[-1]["content"]
        assert content in box.seen  # this entity's request reached the server
        answer = ent._.llm_label
        assert (answer is None) == (ent._.llm_error is not None)
        assert answer is None or answer in (NONE_LABEL, *labels)
        reply = box.seen[content]
        if reply.status == 200 and reply.body is None:
            assert answer == parse_answer(reply.content, prompt_labels, True)
        if answer is None or (fuse_weight is None and answer == NONE_LABEL):
            assert ent.label_ == local
        elif fuse_weight is None:
            assert ent.label_ == answer
    event(f"routed: {'some' if routed else 'none'}")
    assert len(box.seen) == routed  # one request per routed entity, none for others
    if "ember" in doc.spans:  # ember_ner's own output is left as it was
        assert [(s.start, s.end) for s in doc.spans["ember"]] == [
            (s.start, s.end) for s in before.spans["ember"]
        ]


@settings(FUZZ, max_examples=examples(25))
@given(
    text=router_texts,
    replies=st.lists(replies_any, min_size=1, max_size=4),
    threshold=st.sampled_from([0.0, 0.0, 0.5]),
    fuse_weight=st.sampled_from([None, None, 0.5]),
    logprobs=st.booleans(),
    uncertainty=st.sampled_from(["entropy", "confidence", "mc_dropout"]),
)
@example(
    text=SANITY_TEXTS[1],
    replies=[Reply('{"label": "NONE"}')],
    threshold=0.0,
    fuse_weight=None,
    logprobs=False,
    uncertainty="entropy",
)
@example(
    text=SANITY_TEXTS[0],
    replies=[Reply('{"label": "ORG"}', logprobs=[("{", float("nan"), [("}", float("inf"))])])],
    threshold=0.0,
    fuse_weight=0.5,
    logprobs=True,
    uncertainty="mc_dropout",
)
def test_router_never_loses_an_entity(
    nlp, llm, text, replies, threshold, fuse_weight, logprobs, uncertainty
):
    """Whatever the server answers (garbage, empty, unknown labels, very long text,
    broken UTF-8, HTTP errors, odd logprobs), under each uncertainty method, replacing
    or fusing labels, the router keeps every entity and no exception escapes."""
    route_and_check(
        nlp,
        llm,
        text,
        replies,
        threshold=threshold,
        fuse_weight=fuse_weight,
        logprobs=logprobs,
        uncertainty=uncertainty,
    )


@settings(FUZZ, max_examples=examples(15))
@given(text=router_texts, replies=st.lists(replies_any, min_size=1, max_size=4))
@example(text=". Merkel", replies=[Reply()])  # one entity, ". Merkel", over two sentences
@example(text="Hi. Tim Cook met Angela. Merkel! Berlin? Paris. Yes.", replies=[Reply()])
def test_router_with_sentence_boundaries_never_loses_an_entity(nlp, llm, text, replies):
    """With sentence boundaries set (the prompt then shows the entity's sentence), the
    router keeps every entity too, also one that crosses a sentence boundary
    (ember_ner does not read sentences)."""
    route_and_check(nlp, llm, text, replies, sentences=True)


@settings(FUZZ, max_examples=examples(15))
@given(text=router_texts, replies=st.lists(plain_replies, min_size=1, max_size=4))
@example(text=SANITY_TEXTS[0], replies=[Reply('{"label": "NONE"}'), Reply("PER")])
def test_router_remove_none_drops_exactly_the_none_answers(nlp, llm, text, replies):
    """With remove_none on (the one documented way to lose an entity), exactly the
    routed entities whose answer parses to NONE are dropped; the rest keep their
    offsets, and take the LLM's label when it names one."""
    server, box = llm
    labels = labels_of(nlp)
    with nlp.select_pipes(enable=["causal_lm", "ember_ner"]):
        before = nlp(text)
    box.set(replies)
    router = add_router(nlp, server.base_url, remove_none=True)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            doc = nlp(text)
    finally:
        nlp.remove_pipe("linkner_router")
    check_doc(doc, labels, text)
    prompt_labels = router.prompt_labels
    expected = []
    for ent in before.ents:
        content = router.request(ent).messages[-1]["content"]
        answer = (
            parse_answer(box.seen[content].content, prompt_labels) if content in box.seen else None
        )
        if answer == NONE_LABEL:
            continue
        expected.append((ent.start_char, ent.end_char, answer if answer in labels else ent.label_))
    assert [(e.start_char, e.end_char, e.label_) for e in doc.ents] == expected


# ---- streaming generation


def watchdog(fn, seconds: float = WATCHDOG_SECONDS):
    """fn() in a daemon thread; fails the test if it has not finished in `seconds`.
    Returns (result, exception)."""
    out: dict = {}

    def run() -> None:
        try:
            out["result"] = fn()
        except BaseException as err:  # handed to the test
            out["error"] = err

    thread = threading.Thread(target=run, name="fuzz-watchdog", daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        pytest.fail(f"streaming hung for more than {seconds:.0f} s")
    return out.get("result"), out.get("error")


def check_events(events, labels) -> None:
    """One final "end" event; token events rebuild its text; entity and retract events
    slice the text as it stands after the next token event, retract only live
    entities, and the final doc is valid."""
    kinds = [e.kind for e in events]
    assert kinds.count("end") == 1 and kinds[-1] == "end"
    end = events[-1]
    final = end.text
    assert (end.start_char, end.end_char) == (0, len(final))
    running, pending, live = "", [], {}

    def settle(text: str) -> None:
        for e in pending:
            assert 0 <= e.start_char < e.end_char <= len(text)
            assert e.text == text[e.start_char : e.end_char]
        pending.clear()

    for e in events[:-1]:
        assert e.kind in ("token", "entity", "retract"), e.kind
        if e.kind == "token":
            assert 0 <= e.start_char <= len(running) and e.start_char <= e.end_char
            running = running[: e.start_char] + e.text
            assert len(running) == e.end_char
            assert isinstance(e.token_id, int)
            assert e.label is None or e.label in ("O", *labels)
            settle(running)
            continue
        assert e.label in labels and e.score is not None and 0.0 <= e.score <= 1.0
        key = (e.start_char, e.end_char)
        if e.kind == "entity":
            assert key not in live
            live[key] = e.label
        else:
            assert live.pop(key, None) == e.label, "retracted an entity that was not live"
        pending.append(e)
    settle(final)
    assert running == final
    for key in live:
        assert key[1] <= len(final)
    check_doc(end.doc, labels, final)
    assert len(end.doc.ents) <= len(live)


def fits(nlp, prompt: str, max_new_tokens: int) -> bool:
    """Whether start token + prompt + new tokens + lookahead fit the LM's context."""
    lm = nlp.get_pipe("causal_lm").extractor.lm
    n_prompt = 1 + len(lm.tokenizer(prompt, add_special_tokens=False)["input_ids"])
    return n_prompt + max_new_tokens + 2 <= lm.model.config.max_position_embeddings


@settings(FUZZ, max_examples=examples(40))
@given(
    prompt=prompts,
    max_new_tokens=st.integers(1, 8),
    seed=st.none() | st.integers(0, 2**16),
    api=st.sampled_from(["stream", "callback", "close_early"]),
)
@example(prompt="", max_new_tokens=8, seed=None, api="stream")
@example(prompt="", max_new_tokens=4, seed=1, api="callback")
@example(prompt="🎉" * 90, max_new_tokens=8, seed=None, api="stream")  # too long
def test_streaming_never_hangs(nlp, prompt, max_new_tokens, seed, api):
    """Generation from a random prompt finishes within the watchdog with well-formed
    events, or refuses a prompt too long for the context with a ValueError; closing
    the iterator early stops the generation thread."""
    labels = labels_of(nlp)
    sampling = {"do_sample": seed is not None, "seed": seed}

    def run():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if api == "callback":
                events = []
                options = GenerationSettings(max_new_tokens=max_new_tokens, chat=False, **sampling)
                doc = generate_with_entities(nlp, prompt, events.append, options)
                assert doc is events[-1].doc
                return events
            iterator = stream(nlp, prompt, max_new_tokens=max_new_tokens, chat=False, **sampling)
            if api == "close_early":
                first = [e for _, e in zip(range(2), iterator)]
                iterator.close()
                return first
            return list(iterator)

    events, error = watchdog(run)
    if not fits(nlp, prompt, max_new_tokens):
        event("prompt longer than the context")
        assert isinstance(error, ValueError) and "context" in str(error)
        return
    if error is not None:
        raise error
    if api == "close_early":
        assert all(e.kind in ("token", "entity", "retract", "end") for e in events)
        assert not [t for t in threading.enumerate() if t.name == "spacy-ember-stream"]
        return
    event("entity events" if any(e.kind == "entity" for e in events) else "no entity events")
    check_events(events, labels)


def test_streaming_sanity_finds_entities(nlp):
    """Streamed generations do announce entities with these settings (not vacuous)."""
    found = 0
    for prompt in ["", "Angela Merkel", "北京市 🎉"]:
        events, error = watchdog(
            lambda p=prompt: list(stream(nlp, p, max_new_tokens=8, chat=False))
        )
        assert error is None
        check_events(events, labels_of(nlp))
        found += sum(e.kind == "entity" for e in events) + len(events[-1].doc.ents)
    assert found > 0
