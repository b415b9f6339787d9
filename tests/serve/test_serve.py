"""`spacy_ember serve` on the tiny pipeline: every endpoint, OpenAI chunk shapes (parsed
by the openai client itself), entity events, disconnects, a full queue, bad requests."""

import json
import threading
import time

import httpx
import openai
import pytest

from spacy_ember.generate.settings import GenerationSettings
from spacy_ember.generate.streaming import generate_with_entities
from spacy_ember.serve import engine as engine_module
from spacy_ember.serve.engine import THREAD_NAME

from ..helpers import tiny_pipeline
from ..linkner_server import Reply
from .server import running

PROMPT = "Angela Merkel met Tim Cook in Paris."
MESSAGES = [{"role": "user", "content": PROMPT}]
DEFINITIONS = {"LOC": "a place", "ORG": "an organisation", "PER": "a person"}


@pytest.fixture(scope="module")
def nlp():
    return tiny_pipeline(threshold=0.3, reject_o=False)


@pytest.fixture(scope="module")
def server(nlp):
    with running(nlp, max_tokens=400, max_prompt_tokens=64) as (url, engine):
        yield url, engine


def client(url: str, **kwargs) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{url}/v1", api_key="-", max_retries=0, **kwargs)


def replay(events: list[dict]) -> dict[tuple[int, int], dict]:
    """The entities a stream's events leave (entity, retract, relabel in order)."""
    live: dict[tuple[int, int], dict] = {}
    for e in events:
        key = (e["start_char"], e["end_char"])
        if e["type"] == "retract":
            del live[key]
        else:
            assert e["type"] == "entity" or key in live
            live[key] = e
    return live


def spans(entities) -> list[tuple[int, int, str]]:
    return sorted((e["start_char"], e["end_char"], e["label"]) for e in entities)


def test_health_models_and_page(server):
    url, _ = server
    assert httpx.get(f"{url}/health").json()["status"] == "ok"
    assert [m.id for m in client(url).models.list()] == ["ember"]
    page = httpx.get(f"{url}/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert '"PER": "#f4a261"' in page.text and "__" not in page.text.split("<script>")[1][:200]


def test_ner_equals_nlp(server, nlp):
    url, _ = server
    texts = [PROMPT, "Reuters reported from Brussels.", ""]
    data = httpx.post(f"{url}/v1/ner", json={"texts": texts}).json()["data"]
    for text, item in zip(texts, data):
        doc = nlp(text)
        assert item["text"] == text
        assert spans(item["entities"]) == [(e.start_char, e.end_char, e.label_) for e in doc.ents]
        for e in item["entities"]:
            assert text[e["start_char"] : e["end_char"]] == e["text"]


def test_completion_equals_direct_generation(server, nlp):
    url, _ = server
    reply = client(url).chat.completions.create(model="ember", messages=MESSAGES, max_tokens=30)
    settings = GenerationSettings(max_new_tokens=30)
    doc = generate_with_entities(nlp, MESSAGES, lambda e: None, settings)
    text = reply.choices[0].message.content
    assert text == doc.text and reply.choices[0].finish_reason in ("stop", "length")
    assert reply.usage.completion_tokens <= 30
    entities = reply.model_extra["entities"]
    assert spans(entities) == [(e.start_char, e.end_char, e.label_) for e in doc.ents]
    assert all(text[e["start_char"] : e["end_char"]] == e["text"] for e in entities)


def test_stream_chunks_text_and_entity_events(server):
    url, _ = server
    api = client(url)
    whole = api.chat.completions.create(model="x", messages=MESSAGES, max_tokens=40)
    chunks = list(
        api.chat.completions.create(
            model="x",
            messages=MESSAGES,
            max_tokens=40,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    text_chunks = [c for c in chunks if c.choices]
    assert text_chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in text_chunks)
    assert text == whole.choices[0].message.content
    assert [c.choices[0].finish_reason for c in text_chunks][-1] == whole.choices[0].finish_reason
    assert chunks[-1].usage.completion_tokens == whole.usage.completion_tokens
    events = [e for c in chunks for e in (c.model_extra.get("entities") or [])]
    assert events and {e["type"] for e in events} <= {"entity", "retract"}
    # Each event indexes text already sent, and the same in the final text.
    sent = ""
    for c in text_chunks:
        sent += c.choices[0].delta.content or ""
        for e in c.model_extra.get("entities") or []:
            assert e["end_char"] <= len(sent) and text[e["start_char"] : e["end_char"]] == e["text"]
    assert spans(replay(events).values()) == spans(whole.model_extra["entities"])


def stream_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == THREAD_NAME]


@pytest.fixture
def slow_tokens(monkeypatch):
    """Each generated token waits until `go` is set, then 10 ms (the LM is busy)."""
    go = threading.Event()

    def slow(nlp, prompt, emit, *args, **kwargs):
        def wait(event):
            if event.kind == "token":
                go.wait(30)
                time.sleep(0.01)
            emit(event)

        return generate_with_entities(nlp, prompt, wait, *args, **kwargs)

    monkeypatch.setattr(engine_module, "generate_with_entities", slow)
    return go


def test_disconnect_stops_generation(server, slow_tokens):
    url, engine = server
    slow_tokens.set()
    before = engine.records[-1] if engine.records else None
    body = {"messages": MESSAGES, "max_tokens": 200, "stream": True}
    with httpx.stream("POST", f"{url}/v1/chat/completions", json=body, timeout=30) as response:
        # Leave after the first generated text, not the role chunk (sent before the LM starts).
        for line in response.iter_lines():
            if line.startswith("data:") and json.loads(line[5:])["choices"][0]["delta"].get(
                "content"
            ):
                break
    deadline = time.monotonic() + 10
    while stream_threads() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not stream_threads()
    record = engine.records[-1]
    assert record is not before  # this request's generation started
    assert record.finish_reason is None and 0 < record.completion_tokens < 200
    assert engine.gate.admitted == 0


def test_full_queue_is_503_with_retry_after(nlp, slow_tokens):
    with running(nlp, queue_size=0, max_tokens=400) as (url, engine):
        body = {"messages": MESSAGES, "max_tokens": 20, "stream": True}
        with httpx.stream("POST", f"{url}/v1/chat/completions", json=body, timeout=30) as first:
            lines = first.iter_lines()
            next(lines)  # the role chunk: the first request holds the LM
            second = httpx.post(f"{url}/v1/chat/completions", json=body, timeout=30)
            ner = httpx.post(f"{url}/v1/ner", json={"texts": ["a"]}, timeout=30)
            slow_tokens.set()
            assert [line for line in lines if line][-1] == "data: [DONE]"
        assert second.status_code == ner.status_code == 503
        assert int(second.headers["retry-after"]) >= 1
        assert second.json()["error"]["type"] == "server_busy"
        deadline = time.monotonic() + 10
        while engine.gate.admitted and time.monotonic() < deadline:
            time.sleep(0.02)
        after = httpx.post(f"{url}/v1/chat/completions", json={**body, "stream": False})
        assert after.status_code == 200


BAD = [
    (b'{"messages": [', "json"),
    (json.dumps({"messages": "hello"}), "messages"),
    (json.dumps({"messages": []}), "messages"),
    (json.dumps({}), "messages"),
    (json.dumps({"messages": [{"role": "user", "content": "  "}]}), "messages"),
    (json.dumps({"messages": [{"role": "robot", "content": "hi"}]}), "messages"),
    (json.dumps({"messages": [{"role": "user", "content": 5}]}), "messages"),
    (json.dumps({"messages": MESSAGES, "max_tokens": "5"}), "max_tokens"),
    (json.dumps({"messages": MESSAGES, "max_tokens": 0}), "max_tokens"),
    (json.dumps({"messages": MESSAGES, "max_tokens": 401}), "max_tokens"),
    (json.dumps({"messages": MESSAGES, "temperature": "hot"}), "temperature"),
    (json.dumps({"messages": MESSAGES, "stream": "yes"}), "stream"),
    (json.dumps({"messages": [{"role": "user", "content": "word " * 100}]}), "messages"),
    (json.dumps([1, 2]), None),
]


@pytest.mark.parametrize("body,param", BAD)
def test_bad_chat_requests_are_400_json(server, body, param):
    url, _ = server
    response = httpx.post(
        f"{url}/v1/chat/completions",
        content=body,
        headers={"content-type": "application/json"},
        timeout=30,
    )
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error" and error["message"]
    if param and param != "json":
        assert param in (error["param"] or "") or param in error["message"]


def test_context_window_is_400(nlp):
    """A prompt that fits the server's limit but not the LM's context (256 positions)."""
    with running(nlp, max_tokens=400, max_prompt_tokens=1000) as (url, _):
        body = {"messages": MESSAGES, "max_tokens": 300}
        response = httpx.post(f"{url}/v1/chat/completions", json=body)
    assert response.status_code == 400 and "context" in response.json()["error"]["message"]


@pytest.mark.parametrize(
    "body",
    [
        {"texts": "one"},
        {"texts": []},
        {"texts": [1]},
        {"texts": ["x" * 101]},
        {"texts": ["a"] * 3},
    ],
)
def test_bad_ner_requests_are_400_json(nlp, body):
    with running(nlp, max_texts=2, max_text_chars=100) as (url, _):
        response = httpx.post(f"{url}/v1/ner", json=body)
    assert response.status_code == 400 and response.json()["error"]["message"]


def test_unknown_fields_are_ignored(server):
    url, _ = server
    body = {"messages": MESSAGES, "max_tokens": 3, "frequency_penalty": 0.5, "user": "me"}
    assert httpx.post(f"{url}/v1/chat/completions", json=body).status_code == 200


def test_api_key(nlp):
    with running(nlp, api_key="s3cret") as (url, _):
        assert httpx.get(f"{url}/health").status_code == 200
        assert httpx.get(f"{url}/v1/models").status_code == 401
        assert httpx.get(f"{url}/").status_code == 401
        assert httpx.get(f"{url}/?api_key=s3cret").status_code == 200
        with pytest.raises(openai.AuthenticationError):
            client(url).models.list()
        good = openai.OpenAI(base_url=f"{url}/v1", api_key="s3cret", max_retries=0)
        assert [m.id for m in good.models.list()] == ["ember"]
        bad = httpx.post(f"{url}/v1/ner", json={"texts": ["a"]}, headers={"Authorization": "x"})
        assert bad.status_code == 401 and bad.json()["error"]["type"] == "authentication_error"


def routed_pipeline(base_url: str, **config):
    nlp = tiny_pipeline(threshold=0.3, reject_o=False)
    settings = {"model": "fake", "base_url": base_url, "threshold": 0.0, "timeout": 2.0}
    settings["label_set"] = {
        "@misc": "spacy-ember.label_definitions.v1",
        "definitions": DEFINITIONS,
    }
    nlp.add_pipe("linkner_router", config={**settings, "max_retries": 0, **config})
    return nlp


@pytest.mark.parametrize("uncertainty", ["entropy", "mc_dropout"])
def test_stream_routes_entities_to_the_llm(serve, uncertainty):
    llm = serve([Reply('{"label": "ORG"}', delay=0.05)])
    nlp = routed_pipeline(llm.base_url, uncertainty=uncertainty)
    with running(nlp) as (url, _):
        chunks = list(
            client(url).chat.completions.create(
                model="x", messages=MESSAGES, max_tokens=20, stream=True
            )
        )
    events = [e for c in chunks for e in (c.model_extra.get("entities") or [])]
    relabels = [e for e in events if e["type"] == "relabel"]
    asked = [e for e in events if e["type"] == "entity" and e.get("routed")]
    # entropy routes each entity as it is announced (an answer for one withdrawn since is
    # not sent); mc_dropout routes the finished text's entities.
    assert relabels and len(relabels) <= llm.count
    assert llm.count == (len(asked) if uncertainty == "entropy" else len(relabels))
    assert all(e["label"] == "ORG" and e["llm_label"] == "ORG" for e in relabels)
    assert all(e["routed"] and e["local_label"] and e["uncertainty"] >= 0 for e in relabels)
    final = [e for e in replay(events).values() if e.get("llm_label")]
    assert final and all(e["label"] == "ORG" for e in final)
    # The finish chunk comes after every answer.
    assert chunks[-1].choices[0].finish_reason is not None


def test_failed_llm_calls_keep_local_labels(serve):
    llm = serve([Reply(status=500)])
    nlp = routed_pipeline(llm.base_url)
    with running(nlp) as (url, _):
        api = client(url)
        reply = api.chat.completions.create(model="x", messages=MESSAGES, max_tokens=20)
    with nlp.select_pipes(disable=["linkner_router"]):
        local = generate_with_entities(nlp, MESSAGES, lambda e: None, GenerationSettings(20))
    entities = reply.model_extra["entities"]
    assert spans(entities) == [(e.start_char, e.end_char, e.label_) for e in local.ents]
    assert all(e["llm_error"] and e["label"] == e["local_label"] for e in entities)
