"""LLMClient against a loopback server: answers, retries, failures, concurrency."""

import math
import socket
import time

import pytest

from spacy_ember.linkner import LLMWarning, answer_schema

from ..helpers import CONLL
from ..linkner_server import Reply, json_label_tokens
from .clients import label_by_sentence, make_client, make_requests, no_llm_warnings

ln = math.log


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
    client = make_client(server.base_url)
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


def test_concurrency_bounded_and_order_kept(serve):
    server = serve(label_by_sentence)
    client = make_client(server.base_url, max_concurrency=3)
    answers = client.classify(make_requests(12))
    assert [a.label for a in answers] == ["PER", "LOC", "ORG"] * 4
    assert server.max_in_flight == 3


@pytest.mark.parametrize("max_concurrency", [1, 3])
def test_progress_counts_every_answer(serve, max_concurrency):
    server = serve(label_by_sentence)
    done: list[int] = []
    with no_llm_warnings():
        answers = make_client(server.base_url, max_concurrency=max_concurrency).classify(
            make_requests(7), progress=done.append
        )
    assert len(answers) == 7 and done == [1] * 7
