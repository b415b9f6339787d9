import math
import pickle
import socket
import threading
import time
import warnings
from contextlib import contextmanager

import pytest

from spacy_ember.linkner import (
    CachedResponse,
    LabelSet,
    LLMClient,
    LLMWarning,
    Request,
    ResponseCache,
    answer_schema,
    build_messages,
    label_scores,
)

from .helpers import CONLL, WNUT
from .linkner_server import FakeLLMServer, Reply, json_label_tokens

SECRET = "sk-test-secret-4f9a1c"
ln = math.log


def make_client(base_url: str, **settings) -> LLMClient:
    defaults = {"timeout": 0.5, "max_retries": 2, "backoff": 0.01, "max_backoff": 0.05}
    return LLMClient("fake-model", base_url=base_url, **{**defaults, **settings})


def make_requests(n: int, labels: LabelSet = CONLL) -> list[Request]:
    sentences = [f"Anna met Bob {i} times." for i in range(n)]
    return [Request(build_messages(s, 0, 4, labels), labels) for s in sentences]


@contextmanager
def no_llm_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error", LLMWarning)
        yield


def header(server: FakeLLMServer, i: int, name: str) -> str | None:
    return next((v for k, v in server.headers[i].items() if k.lower() == name.lower()), None)


# ---- label scores from logprobs


def test_scores_first_label_token():
    tokens = json_label_tokens("LOC", [("LOC", ln(0.7)), ("PER", ln(0.2)), ("Paris", ln(0.1))])
    scores = label_scores(tokens, CONLL)
    assert list(scores) == ["PER", "LOC", "ORG", "MISC", "NONE"]
    assert scores == pytest.approx({"PER": 2 / 9, "LOC": 7 / 9, "ORG": 0, "MISC": 0, "NONE": 0})


def test_scores_token_with_quote_and_case():
    top = [(' "LOC', ln(0.5)), (' "per', ln(0.2)), ("LOC", ln(0.1)), (' "N', ln(0.2))]
    tokens = [('{"label":', 0.0, [('{"label":', 0.0)]), (' "LOC', ln(0.5), top), ('"}', 0.0, [])]
    scores = label_scores(tokens, CONLL)
    assert scores == pytest.approx({"PER": 0.2, "LOC": 0.6, "ORG": 0, "MISC": 0, "NONE": 0.2})


def test_scores_follow_chosen_tokens_while_ambiguous():
    tokens = [
        ('{"label": "', 0.0, [('{"label": "', 0.0)]),
        ("p", ln(0.6), [("p", ln(0.6)), ("c", ln(0.3)), ("l", ln(0.1))]),
        ("erson", ln(0.5), [("erson", ln(0.5)), ("roduct", ln(0.5))]),
        ('"}', 0.0, [('"}', 0.0)]),
    ]
    scores = label_scores(tokens, WNUT)
    expected = {"person": 0.3, "product": 0.3, "location": 0.1}
    expected |= {"corporation": 0.15, "creative-work": 0.15, "group": 0.0, "NONE": 0.0}
    assert scores == pytest.approx(expected)


def test_scores_label_that_prefixes_another():
    labels = LabelSet.from_dict({"PER": "a", "PERSONA": "b"})
    tokens = [
        ('{"label": "', 0.0, [('{"label": "', 0.0)]),
        ("PER", ln(0.8), [("PER", ln(0.8)), ("NONE", ln(0.2))]),
        ('"}', ln(0.75), [('"}', ln(0.75)), ("SONA", ln(0.25))]),
    ]
    scores = label_scores(tokens, labels)
    assert scores == pytest.approx({"PER": 0.6, "PERSONA": 0.2, "NONE": 0.2})


@pytest.mark.parametrize("bad", [710.0, 0.5, float("nan"), float("inf"), float("-inf")])
def test_scores_none_when_logprobs_are_not_log_probabilities(bad):
    """A server's NaN, infinite or positive "logprobs" give no scores (the answer text
    still counts), not an overflow."""
    tokens = json_label_tokens("PER", [("PER", bad), ("LOC", ln(0.2))])
    assert label_scores(tokens, CONLL) is None


def test_scores_bare_label_and_without_none():
    tokens = [("LOC", ln(0.5), [("LOC", ln(0.5)), ("NONE", ln(0.3)), ("ORG", ln(0.2))])]
    assert label_scores(tokens, CONLL)["NONE"] == pytest.approx(0.3)
    assert label_scores(tokens, CONLL, allow_none=False) == pytest.approx(
        {"PER": 0, "LOC": 0.5 / 0.7, "ORG": 0.2 / 0.7, "MISC": 0}
    )


@pytest.mark.parametrize(
    "tokens",
    [
        [],
        json_label_tokens("Paris", [("Paris", ln(0.9)), ("Berlin", ln(0.1))]),
        [("LOC", ln(0.9), [])],  # no top_logprobs
        [("I think LOC", ln(0.9), [("I think LOC", ln(0.9))])],  # prose
    ],
    ids=["empty", "no-label-matches", "no-top", "prose"],
)
def test_scores_impossible(tokens):
    assert label_scores(tokens, CONLL) is None


# ---- response cache

RECORD = CachedResponse('{"label": "PER"}', [("PER", -0.1, [("PER", -0.1), ("LOC", -2.5)])], 50, 6)
MESSAGES = [{"role": "system", "content": "s"}, {"role": "user", "content": "u"}]
OPTIONS = {"temperature": 0.0, "max_tokens": 32}


def test_cache_round_trip(tmp_path):
    cache = ResponseCache(tmp_path)
    key = cache.key("m", MESSAGES, OPTIONS)
    assert cache.get(key) is None
    cache.put(key, RECORD)
    assert cache.get(key) == RECORD
    assert ResponseCache(tmp_path).get(key) == RECORD  # another instance (process) reads it
    assert [p.name for p in tmp_path.rglob("*")] == [key[:2], f"{key}.json"]  # no temp files


@pytest.mark.parametrize(
    "model,messages,options",
    [
        ("m2", MESSAGES, OPTIONS),
        ("m", [MESSAGES[0], {"role": "user", "content": "u2"}], OPTIONS),
        ("m", [MESSAGES[0], {"role": "assistant", "content": "u"}], OPTIONS),
        ("m", MESSAGES[1:], OPTIONS),
        ("m", MESSAGES, {**OPTIONS, "max_tokens": 33}),
        ("m", MESSAGES, {**OPTIONS, "logprobs": True}),
    ],
)
def test_cache_key_sensitive(model, messages, options):
    assert ResponseCache.key(model, messages, options) != ResponseCache.key("m", MESSAGES, OPTIONS)


def test_cache_key_ignores_dict_order():
    reordered = {"max_tokens": 32, "temperature": 0.0}
    assert ResponseCache.key("m", MESSAGES, reordered) == ResponseCache.key("m", MESSAGES, OPTIONS)


def test_cache_disabled_and_corrupt(tmp_path):
    off = ResponseCache(None)
    off.put("ab" * 32, RECORD)
    assert off.get("ab" * 32) is None
    cache = ResponseCache(tmp_path)
    key = cache.key("m", MESSAGES, OPTIONS)
    cache.put(key, RECORD)
    next(tmp_path.rglob("*.json")).write_text('{"text": ')
    assert cache.get(key) is None


def test_cache_concurrent_writers(tmp_path):
    cache = ResponseCache(tmp_path)
    key = cache.key("m", MESSAGES, OPTIONS)
    threads = [threading.Thread(target=cache.put, args=(key, RECORD)) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert cache.get(key) == RECORD
    assert len(list(tmp_path.rglob("*"))) == 2


# ---- client against a loopback server


def test_ok_answer(serve):
    server = serve([Reply('{"label": "LOC"}')])
    client = make_client(server.base_url)
    with no_llm_warnings():
        [answer] = client.classify(make_requests(1))
    assert (answer.label, answer.error, answer.cached) == ("LOC", None, False)
    assert answer.text == '{"label": "LOC"}' and answer.label_scores is None
    assert (answer.prompt_tokens, answer.completion_tokens) == (50, 6) and answer.latency > 0
    body = server.bodies[0]
    assert body["model"] == "fake-model" and body["messages"] == make_requests(1)[0].messages
    assert body["temperature"] == 0 and body["max_tokens"] == 32 and "logprobs" not in body
    stats = client.stats
    assert (stats.requests, stats.calls, stats.retries, stats.failures) == (1, 1, 0, {})
    assert (stats.prompt_tokens, stats.completion_tokens) == (50, 6)
    assert stats.latency == pytest.approx(answer.latency)
    assert client.classify([]) == []


SCHEMA = answer_schema(CONLL)
OPENAI_FORMAT = {"name": "entity_label", "strict": True, "schema": SCHEMA}


@pytest.mark.parametrize(
    "constrain,response_format",
    [
        ("json_schema_llamacpp", {"type": "json_object", "schema": SCHEMA}),
        ("json_schema_openai", {"type": "json_schema", "json_schema": OPENAI_FORMAT}),
        ("json_object", {"type": "json_object"}),
        ("none", None),
    ],
)
def test_constrain_modes(serve, constrain, response_format):
    server = serve()
    make_client(server.base_url, constrain=constrain).classify(make_requests(1))
    assert server.bodies[0].get("response_format") == response_format


def test_logprobs_give_label_scores(serve):
    top = [("ORG", ln(0.6)), ("LOC", ln(0.3)), ("NONE", ln(0.05)), ("Paris", ln(0.05))]
    server = serve([Reply('{"label": "ORG"}', logprobs=json_label_tokens("ORG", top))])
    [answer] = make_client(server.base_url, logprobs=True, top_logprobs=5).classify(
        make_requests(1)
    )
    assert server.bodies[0]["logprobs"] is True and server.bodies[0]["top_logprobs"] == 5
    assert answer.label == "ORG"
    expected = {"PER": 0, "LOC": 0.3 / 0.95, "ORG": 0.6 / 0.95, "MISC": 0, "NONE": 0.05 / 0.95}
    assert answer.label_scores == pytest.approx(expected)


def test_rate_limit_then_ok_is_retried(serve):
    server = serve([Reply(status=429), Reply(status=503), Reply('{"label": "MISC"}')])
    client = make_client(server.base_url)
    with no_llm_warnings():
        [answer] = client.classify(make_requests(1))
    assert (answer.label, answer.error) == ("MISC", None)
    assert (client.stats.calls, client.stats.retries, server.count) == (3, 2, 3)


def test_retry_after_header_is_honoured(serve):
    server = serve([Reply(status=429, headers={"Retry-After": "0.3"}), Reply()])
    client = make_client(server.base_url, max_backoff=1.0)
    started = time.perf_counter()
    [answer] = client.classify(make_requests(1))
    assert answer.label == "PER" and time.perf_counter() - started >= 0.3


def test_server_error_always(serve):
    server = serve([Reply(status=500)])
    client = make_client(server.base_url, max_retries=2)
    with pytest.warns(LLMWarning, match=r"failed for 2 of 2 spans \(http 500: 2\)"):
        answers = client.classify(make_requests(2))
    assert [(a.label, a.error, a.text) for a in answers] == [(None, "http 500", None)] * 2
    assert (server.count, client.stats.calls, client.stats.retries) == (6, 6, 4)
    assert client.stats.failures == {"http 500": 2}


@pytest.mark.parametrize("status", [400, 401, 404])
def test_client_errors_are_not_retried(serve, status):
    server = serve([Reply(status=status)])
    with pytest.warns(LLMWarning, match=f"http {status}: 1"):
        [answer] = make_client(server.base_url).classify(make_requests(1))
    assert answer.error == f"http {status}" and server.count == 1


@pytest.mark.parametrize(
    "reply,error",
    [
        (Reply("I think it might be a city or a company."), "malformed answer"),
        (Reply('{"label": "DATE"}'), "malformed answer"),
        (Reply(""), "malformed answer"),
        (Reply(body=b"<html>gateway</html>"), "bad response"),
        (Reply(body=b'{"choices": []}'), "bad response"),
    ],
)
def test_unusable_answers(serve, reply, error):
    server = serve([reply])
    client = make_client(server.base_url)
    with pytest.warns(LLMWarning, match=error):
        [answer] = client.classify(make_requests(1))
    assert (answer.label, answer.error) == (None, error)
    assert answer.text == (reply.content if reply.body is None else None)
    assert server.count == 1 and client.stats.retries == 0


def test_timeout(serve):
    server = serve([Reply(delay=5.0)])
    client = make_client(server.base_url, timeout=0.4, max_retries=1)
    started = time.perf_counter()
    with pytest.warns(LLMWarning, match="timeout: 2"):
        answers = client.classify(make_requests(2))
    assert time.perf_counter() - started < 2.0
    assert [(a.label, a.error) for a in answers] == [(None, "timeout")] * 2
    assert (server.count, client.stats.retries) == (4, 2)


def test_connection_refused():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    client = make_client(f"http://127.0.0.1:{port}/v1", max_retries=1)
    with pytest.warns(LLMWarning, match="connection: 3"):
        answers = client.classify(make_requests(3))
    assert [a.error for a in answers] == ["connection"] * 3 and client.stats.calls == 6


def test_server_dies_mid_run(serve):
    server = serve([Reply(), Reply('{"label": "LOC"}', die=True)])
    client = make_client(server.base_url, max_concurrency=1, max_retries=1)
    with pytest.warns(LLMWarning, match=r"failed for 2 of 4 spans \(connection: 2\)"):
        answers = client.classify(make_requests(4))
    assert [a.label for a in answers] == ["PER", "LOC", None, None]
    assert [a.error for a in answers] == [None, None, "connection", "connection"]
    assert server.count == 2 and client.stats.calls == 6


def label_by_sentence(body, n):
    i = int(body["messages"][-1]["content"].split("Bob ")[1].split()[0])
    label = ("PER", "LOC", "ORG")[i % 3]
    return Reply(
        f'{{"label": "{label}"}}', delay=0.15, logprobs=json_label_tokens(label, [(label, -0.1)])
    )


def test_concurrency_bounded_and_order_kept(serve):
    server = serve(label_by_sentence)
    client = make_client(server.base_url, max_concurrency=3)
    answers = client.classify(make_requests(12))
    assert [a.label for a in answers] == ["PER", "LOC", "ORG"] * 4
    assert server.max_in_flight == 3


def test_cache_second_run_makes_no_requests(serve, tmp_path):
    server = serve(label_by_sentence)
    requests = make_requests(3)
    first = make_client(server.base_url, cache_dir=tmp_path, logprobs=True).classify(requests)
    assert server.count == 3 and not any(a.cached for a in first)
    again = make_client(server.base_url, cache_dir=tmp_path, logprobs=True)
    second = again.classify(requests)
    assert server.count == 3
    assert all(a.cached and a.latency == 0 for a in second)
    assert [(a.label, a.label_scores, a.text) for a in second] == [
        (a.label, a.label_scores, a.text) for a in first
    ]
    assert (again.stats.calls, again.stats.cache_hits, again.stats.prompt_tokens) == (0, 3, 0)
    make_client(server.base_url, cache_dir=tmp_path).classify(requests)  # other options
    assert server.count == 6


def test_failures_are_not_cached(serve, tmp_path):
    down = serve([Reply(status=500)])
    with pytest.warns(LLMWarning):
        make_client(down.base_url, cache_dir=tmp_path, max_retries=0).classify(make_requests(1))
    up = serve([Reply()])
    [answer] = make_client(up.base_url, cache_dir=tmp_path).classify(make_requests(1))
    assert (answer.label, answer.cached, up.count) == ("PER", False, 1)


# ---- credentials


def test_api_key_is_sent_but_never_shown_or_stored(serve, tmp_path):
    server = serve()
    client = make_client(server.base_url, api_key=SECRET, cache_dir=tmp_path)
    client.classify(make_requests(2))
    assert header(server, 0, "Authorization") == f"Bearer {SECRET}"
    assert SECRET not in repr(client) and SECRET not in str(client.__getstate__())
    assert SECRET.encode() not in pickle.dumps(client)
    files = list(tmp_path.rglob("*.json"))
    assert len(files) == 2 and all(SECRET not in f.read_text() for f in files)


def test_api_key_from_env_and_pickling(serve, monkeypatch):
    server = serve()
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
    client = LLMClient("fake-model", timeout=0.5)
    assert client.base_url == server.base_url
    restored = pickle.loads(pickle.dumps(client))
    assert restored.classify(make_requests(1))[0].label == "PER"
    assert header(server, 0, "Authorization") == f"Bearer {SECRET}"


def test_placeholder_key_for_local_server(serve):
    server = serve()
    make_client(server.base_url).classify(make_requests(1))
    assert header(server, 0, "Authorization") == "Bearer sk-no-key"


def test_no_key_and_no_server_is_an_error():
    with pytest.raises(ValueError, match="No API key"):
        LLMClient("gpt-4o-mini")


@pytest.mark.parametrize(
    "settings,message",
    [
        ({"model": ""}, "model name"),
        ({"constrain": "grammar"}, "Unknown constrain mode"),
        ({"timeout": 0}, "timeout > 0"),
        ({"max_concurrency": 0}, "max_concurrency >= 1"),
        ({"logprobs": True, "top_logprobs": 0}, "top_logprobs"),
    ],
)
def test_bad_settings(settings, message):
    with pytest.raises(ValueError, match=message):
        LLMClient(**{"model": "m", "base_url": "http://127.0.0.1:9/v1", **settings})
