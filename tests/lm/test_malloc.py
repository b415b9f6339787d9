import pytest
import spacy

from spacy_ember.lm import extractor, malloc

from ..helpers import tiny_lm_config


@pytest.fixture
def fresh(monkeypatch):
    monkeypatch.setattr(malloc, "_applied", False)
    return malloc


def test_opt_out_leaves_glibc_alone(fresh, monkeypatch):
    monkeypatch.setenv(malloc.OPT_OUT_ENV, "default")
    assert fresh.hold_freed_memory() is False
    assert fresh._applied is False


@pytest.mark.skipif(malloc.glibc_mallopt() is None, reason="glibc only")
def test_thresholds_set_once_on_glibc(fresh, monkeypatch):
    monkeypatch.delenv(malloc.OPT_OUT_ENV, raising=False)
    assert fresh.hold_freed_memory() is True
    assert fresh._applied is True
    assert fresh.hold_freed_memory() is True


def test_other_c_libraries_are_left_alone(fresh, monkeypatch):
    monkeypatch.delenv(malloc.OPT_OUT_ENV, raising=False)

    class NoGlibc:
        """A C library without glibc's symbols (musl, macOS)."""

    monkeypatch.setattr(malloc.ctypes, "CDLL", lambda name: NoGlibc())
    assert fresh.hold_freed_memory() is False


def test_loading_the_lm_on_cpu_holds_freed_memory(monkeypatch):
    calls = []
    monkeypatch.setattr(extractor, "hold_freed_memory", lambda: calls.append(1) or True)
    nlp = spacy.blank("en")
    nlp.add_pipe("causal_lm", config=tiny_lm_config())
    lm = nlp.get_pipe("causal_lm").extractor.lm
    assert lm.device.type == "cpu" and calls == [1]
