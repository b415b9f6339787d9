"""Helpers shared by the benchmark scripts: corpora and scoring with the package's code."""

import json
import os
import platform
import subprocess
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from spacy.scorer import Scorer  # noqa: E402
from spacy.tokens import Doc  # noqa: E402
from spacy.training import Example  # noqa: E402
from spacy.vocab import Vocab  # noqa: E402

from spacy_ember.workflow.corpora import read_bio, sentence_to_doc  # noqa: E402

DATA = Path(
    os.environ.get("SPACY_EMBER_DATA", Path(__file__).parent.parent.parent / "shared" / "data")
)
CONLL = DATA / "conll2003_en" / "iob2"


def load_conll(split: str, vocab: Vocab, limit: int = 0) -> list[Doc]:
    """Gold docs of a CoNLL-2003 split ('train', 'dev', 'test'), one sentence each."""
    docs = []
    for words, tags in read_bio(CONLL / f"{split}.txt"):
        docs.append(sentence_to_doc(vocab, words, tags))
        if limit and len(docs) >= limit:
            break
    return docs


def ents_f(predicted: Sequence[Doc], gold: Sequence[Doc]) -> dict:
    """spaCy's entity scores of predicted docs against gold docs."""
    return Scorer.score_spans([Example(p, g) for p, g in zip(predicted, gold)], "ents")


def lm_tokens(tokenizer, texts: Sequence[str]) -> int:
    """How many LM tokens the texts make (the unit of the benchmarks' ms/token)."""
    return sum(len(ids) for ids in tokenizer(list(texts))["input_ids"])


def git_commit() -> str:
    """The checkout's short commit id, recorded in each result file."""
    root = Path(__file__).resolve().parents[1]
    run = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=root
    )
    return run.stdout.strip()


def machine_info(**extra: object) -> dict:
    """The machine a result came from (cores, platform, Python), plus the script's own facts."""
    return {
        "cpu_count": os.cpu_count(),
        **extra,
        "platform": platform.platform(),
        "python": platform.python_version(),
    }


def write_report(report: dict, output: Path, keys: Iterable[str]) -> None:
    """Write a benchmark's JSON report and print its headline keys."""
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(report, indent=2) + "\n")
    keys = list(keys)
    width = max(len(key) for key in keys)
    for key in keys:
        print(f"{key:>{width}}: {report[key]}")
    print(f"wrote {output}")


def spacy_train(
    output: Path, corpus: Path, model: str, feature_cache: Path, overrides: Mapping[str, object]
) -> Path:
    """`spacy train configs/ember.cfg` on corpus/conll2003-{train,dev}.spacy with `model`,
    the feature cache and config overrides (values as JSON); returns model-best."""
    root = Path(__file__).resolve().parents[1]
    command = [
        sys.executable, "-m", "spacy", "train", str(root / "configs" / "ember.cfg"),
        "--output", str(output),
        "--paths.train", str(corpus / "conll2003-train.spacy"),
        "--paths.dev", str(corpus / "conll2003-dev.spacy"),
        "--paths.model", model,
        "--paths.feature_cache", str(feature_cache),
        "--training.logger.progress_bar", "false",
    ]  # fmt: skip
    for key, value in overrides.items():
        command += [f"--{key}", json.dumps(value)]
    print("$", " ".join(command), flush=True)
    subprocess.run(command, check=True, cwd=root)
    return output / "model-best"
