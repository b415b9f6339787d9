import ctypes

import pytest

from spacy_ember.lm import malloc


def _is_glibc() -> bool:
    return hasattr(ctypes.CDLL(None), "gnu_get_libc_version")


@pytest.fixture
def fresh(monkeypatch):
    monkeypatch.setattr(malloc, "_applied", False)
    return malloc


def test_opt_out_leaves_glibc_alone(fresh, monkeypatch):
    monkeypatch.setenv(malloc.OPT_OUT_ENV, "default")
    assert fresh.hold_freed_memory() is False
    assert fresh._applied is False


@pytest.mark.skipif(not _is_glibc(), reason="glibc only")
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
