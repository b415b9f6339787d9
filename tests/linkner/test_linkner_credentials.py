"""The API key is sent, never shown or stored; openai is imported only for a client."""

import pickle
import subprocess
import sys

import pytest

from spacy_ember.linkner import LLMClient

from .clients import header, make_client, make_requests

SECRET = "sk-test-secret-4f9a1c"


# ---- openai is imported only where a client is made


def test_importing_linkner_does_not_import_openai():
    code = (
        "import sys, spacy_ember.linkner, spacy_ember.pipeline.linkner_router; "
        "print('openai' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stdout.strip() == "False", result.stderr


# ---- credentials


def test_api_key_is_sent_but_never_shown_or_stored(serve, tmp_path):
    server = serve()
    client = make_client(server.base_url, api_key=SECRET, cache_dir=tmp_path)
    client.classify(make_requests(2))
    assert header(server, 0, "Authorization") == f"Bearer {SECRET}"
    assert SECRET not in repr(client) and SECRET not in str(client.__getstate__())
    assert SECRET.encode() not in pickle.dumps(client)
    assert len(client.cache.disk) == 2
    files = [f for f in tmp_path.rglob("*") if f.is_file()]
    assert files and all(SECRET.encode() not in f.read_bytes() for f in files)


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
