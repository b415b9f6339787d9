"""Shared by the LLM client tests: a client for a loopback server, requests, replies."""

import warnings
from contextlib import contextmanager

from spacy_ember.linkner import LabelSet, LLMClient, LLMWarning, Request, build_messages

from ..helpers import CONLL
from ..linkner_server import FakeLLMServer, Reply, json_label_tokens


def make_client(base_url: str, **settings) -> LLMClient:
    defaults = {"timeout": 0.5, "max_retries": 2}
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


def label_by_sentence(body, n):
    i = int(body["messages"][-1]["content"].split("Bob ")[1].split()[0])
    label = ("PER", "LOC", "ORG")[i % 3]
    return Reply(
        f'{{"label": "{label}"}}', delay=0.15, logprobs=json_label_tokens(label, [(label, -0.1)])
    )
