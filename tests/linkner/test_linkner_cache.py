"""The LLM response cache and the shared size-bounded disk cache under it."""

import pickle
import subprocess
import sys
import threading

import diskcache
import pytest

from spacy_ember.cache import DiskCache, cache_key
from spacy_ember.linkner import CachedResponse, LLMWarning, ResponseCache

from ..linkner_server import Reply
from .clients import label_by_sentence, make_client, make_requests

RECORD = CachedResponse('{"label": "PER"}', [("PER", -0.1, [("PER", -0.1), ("LOC", -2.5)])], 50, 6)
MESSAGES = [{"role": "system", "content": "s"}, {"role": "user", "content": "u"}]
OPTIONS = {"temperature": 0.0, "max_tokens": 32}
DATABASE = {"cache.db", "cache.db-wal", "cache.db-shm"}  # diskcache's SQLite files
READ_BACK = """
import json, sys
from spacy_ember.cache import DiskCache
print(json.loads(DiskCache(sys.argv[1], 1024, "test").get(sys.argv[2]))["text"])
"""


def test_cache_round_trip(tmp_path):
    cache = ResponseCache(tmp_path)
    key = cache.key("m", MESSAGES, OPTIONS)
    assert cache.get(key) is None
    cache.put(key, RECORD)
    assert cache.get(key) == RECORD
    assert ResponseCache(tmp_path).get(key) == RECORD  # another instance reads it
    other = subprocess.run(
        [sys.executable, "-c", READ_BACK, str(tmp_path), key], capture_output=True, text=True
    )
    assert other.stdout.strip() == RECORD.text, other.stderr  # and another process
    assert {p.name for p in tmp_path.rglob("*")} <= DATABASE  # no temp files left


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


@pytest.mark.parametrize(
    "base_url,served",
    [("http://127.0.0.1:8081/v1", "a.gguf"), ("http://127.0.0.1:8080/v1", "b.gguf"), (None, None)],
)
def test_cache_key_includes_the_endpoint(base_url, served):
    """The same request to another server, or to one now serving another model, is
    another record."""
    reference = ResponseCache.key("m", MESSAGES, OPTIONS, "http://127.0.0.1:8080/v1", "a.gguf")
    assert ResponseCache.key("m", MESSAGES, OPTIONS, base_url, served) != reference


def test_cache_key_ignores_dict_order():
    reordered = {"max_tokens": 32, "temperature": 0.0}
    assert ResponseCache.key("m", MESSAGES, reordered) == ResponseCache.key("m", MESSAGES, OPTIONS)


def test_cache_key_is_sha256_and_takes_any_text():
    key = cache_key("signature", "text \udc80 with a lone surrogate")
    assert len(key) == 64 and int(key, 16) >= 0
    assert key != cache_key("signature", "text")


def test_cache_disabled_and_corrupt(tmp_path):
    off = ResponseCache(None)
    off.put("ab" * 32, RECORD)
    assert off.get("ab" * 32) is None
    cache = ResponseCache(tmp_path)
    key = cache.key("m", MESSAGES, OPTIONS)
    cache.put(key, RECORD)
    with diskcache.Cache(str(tmp_path)) as raw:
        raw.set(key, b'{"text": ')  # a record cut short
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
    assert cache.disk is not None and len(cache.disk) == 1


def test_cache_is_bounded(tmp_path):
    """Past max_mb the oldest records go; the newest stay readable."""
    cache = ResponseCache(tmp_path, max_mb=0.25)
    big = CachedResponse("x" * 20_000)
    keys = [cache.key(f"m{i}", MESSAGES, OPTIONS) for i in range(60)]
    for key in keys:
        cache.put(key, big)
    assert cache.disk is not None and len(cache.disk) < len(keys)
    assert cache.get(keys[0]) is None and cache.get(keys[-1]) == big


def test_failed_write_warns_and_reads_miss(tmp_path):
    blocked = tmp_path / "a-file"
    blocked.write_text("not a directory")
    cache = ResponseCache(blocked)
    key = cache.key("m", MESSAGES, OPTIONS)
    with pytest.warns(UserWarning, match="Could not write to the LLM response cache"):
        cache.put(key, RECORD)
    assert cache.get(key) is None


def test_disk_cache_pickles_as_its_settings(tmp_path):
    disk = DiskCache(tmp_path, 1.0, "test")
    disk.put("k", b"value")
    restored = pickle.loads(pickle.dumps(disk))
    assert restored.get("k") == b"value" and repr(restored) == repr(disk)
    with pytest.raises(ValueError, match="size bound"):
        DiskCache(tmp_path, 0, "test")


def test_feature_cache_shares_the_disk_cache(tmp_path):
    """The LM feature cache stores through the same DiskCache, with the same sha256 keys
    and the same failure policy: a failed write warns and the features are still used."""
    import numpy as np

    from spacy_ember.lm.cache import FeatureCache
    from spacy_ember.lm.features import RawFeatures

    raw = RawFeatures(
        np.array([[0, 4]]), np.ones((2, 1, 3), "float16"), np.zeros((2, 2, 1), "float32")
    )
    key = FeatureCache.key("signature", "text")
    assert key == cache_key("signature", "text")
    FeatureCache(directory=str(tmp_path), max_disk_mb=1).put(key, raw)
    stored = FeatureCache(directory=str(tmp_path)).get(key)  # from disk
    assert stored is not None and stored.hidden.dtype == np.float16
    assert all(np.array_equal(a, b) for a, b in zip(vars(stored).values(), vars(raw).values()))
    blocked = tmp_path / "a-file"
    blocked.write_text("not a directory")
    cache = FeatureCache(directory=str(blocked))
    with pytest.warns(UserWarning, match="Could not write to the LM feature cache"):
        cache.put(key, raw)
    assert cache.get(key) is raw  # still served from memory


# ---- the client's cache


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


def test_endpoints_with_one_model_name_do_not_share_answers(serve, tmp_path):
    """Two local servers both called "fake-model" are two LLMs: no answer of one is
    reused for the other."""
    first, second = serve([Reply('{"label": "LOC"}')]), serve([Reply('{"label": "ORG"}')])
    requests = make_requests(2)
    make_client(first.base_url, cache_dir=tmp_path).classify(requests)
    client = make_client(second.base_url, cache_dir=tmp_path)
    answers = client.classify(requests)
    assert second.count == 2 and [(a.label, a.cached) for a in answers] == [("ORG", False)] * 2
    assert make_client(first.base_url, cache_dir=tmp_path).classify(requests)[0].cached


def test_swapping_the_served_model_misses_the_cache(serve, tmp_path):
    """/v1/models names the file a server serves: asked once per client, it is part of
    the key, so restarting the server on another model does not reuse old answers."""
    server = serve([Reply('{"label": "LOC"}')])
    server.served_model = "first.gguf"
    before = make_client(server.base_url, cache_dir=tmp_path)
    before.classify(make_requests(3))
    assert server.model_listings == 1 and server.count == 3
    assert make_client(server.base_url, cache_dir=tmp_path).classify(make_requests(1))[0].cached
    server.served_model = "second.gguf"
    after = make_client(server.base_url, cache_dir=tmp_path)
    [answer] = after.classify(make_requests(1))
    assert not answer.cached and server.count == 4
    assert (after.stats.calls, after.stats.requests) == (1, 1)  # the listing is no call


def test_no_model_listing_without_a_cache(serve):
    server = serve()
    server.served_model = "model.gguf"
    make_client(server.base_url).classify(make_requests(2))
    assert server.model_listings == 0
