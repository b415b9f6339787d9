"""Command line for LinkNER: serve the local LLM, calibrate the threshold, evaluate."""

import json
import os
from itertools import islice
from pathlib import Path

import numpy as np
import typer

from ..cli import app
from ..loaders import EMBEDDED_MODEL
from ..requirements import add_requirements
from .evaluate import (
    Collected,
    ask,
    calibrate,
    collect,
    expected_calibration_error,
    final_spans,
    prf,
    risk_coverage,
    routed_keys,
)
from .labels import NONE_LABEL
from .report import plot_risk_coverage, results_table

ROUTER = "linkner_router"


@app.command("serve-llm")
def serve_llm(
    model: str = typer.Option(EMBEDDED_MODEL, help="GGUF file, or package/file.gguf"),
    host: str = typer.Option("127.0.0.1"),
    port: int = typer.Option(8080),
) -> None:
    """Serve a GGUF model over the OpenAI API with llama.cpp (linkner_router's local LLM)."""
    from .server import server_command

    try:
        command = server_command(model, host, port)
    except (RuntimeError, ValueError) as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(1) from err
    typer.echo(f"serving {command[4]} at http://{host}:{port}/v1")
    os.execv(command[0], command)


def _load(model: Path, router_config: dict):
    import spacy

    spacy.util.fix_random_seed(0)  # MC dropout masks: reproducible evaluations
    nlp = spacy.load(model)
    if ROUTER in nlp.pipe_names:
        config = {**nlp.config["components"][ROUTER], **router_config}
        config.pop("factory", None)
        nlp.remove_pipe(ROUTER)
    else:
        config = router_config
    nlp.add_pipe(ROUTER, config=config)
    return nlp


def _gold(nlp, path: Path, limit: int | None):
    from spacy.tokens import DocBin

    return list(islice(DocBin().from_disk(path).get_docs(nlp.vocab), limit))


def _methods(nlp) -> list[str]:
    from .uncertainty import METHODS

    evidential = nlp.get_pipe("ember_ner").cfg.get("typing_loss") == "evidential"
    return [m for m in METHODS if m != "evidential" or evidential]


def _top_keys(collected: Collected, method: str, fraction: float) -> set:
    ranked = sorted(collected.predicted, key=lambda p: -p.uncertainty[method])
    return {p.key for p in ranked[: int(round(fraction * len(ranked)))]}


def _router_options(base_url, llm, cache_dir, logprobs=True) -> dict:
    options = {"model": llm, "logprobs": logprobs, "cache_dir": str(cache_dir)}
    if base_url:
        options["base_url"] = base_url
    return options


@app.command("calibrate")
def calibrate_cmd(
    model: Path = typer.Argument(..., exists=True, file_okay=False, help="Trained pipeline"),
    dev_path: Path = typer.Argument(..., exists=True, dir_okay=False, help="Dev data (.spacy)"),
    output: Path = typer.Argument(..., help="Save the pipeline with linkner_router here"),
    method: str = typer.Option("entropy", help="Uncertainty method"),
    max_routed: float = typer.Option(0.3, help="Most entities the LLM may get (fraction)"),
    objective: str = typer.Option("f1", help="f1: best dev F1; fraction: route max_routed"),
    base_url: str = typer.Option(None, help="OpenAI-compatible endpoint (or OPENAI_BASE_URL)"),
    llm: str = typer.Option("local", help="Model name sent to the endpoint"),
    cache_dir: Path = typer.Option(Path("cache/llm"), help="LLM response cache"),
    limit: int = typer.Option(None, help="Use only the first N dev docs"),
) -> None:
    """Pick linkner_router's threshold on dev and write it into the saved pipeline."""
    nlp = _load(model, {**_router_options(base_url, llm, cache_dir), "uncertainty": method})
    collected = collect(nlp, _gold(nlp, dev_path, limit), [method], ROUTER)
    router = nlp.get_pipe(ROUTER)
    if objective == "fraction":
        values = [p.uncertainty[method] for p in collected.predicted]
        threshold = float(np.quantile(values, 1 - max_routed)) if values else 1.0
        answers, _ = ask(
            nlp, ROUTER, collected, routed_keys(collected.predicted, method, threshold)
        )
    elif objective == "f1":
        answers, _ = ask(nlp, ROUTER, collected, _top_keys(collected, method, max_routed))
        labels = router.ner.labels  # type: ignore[attr-defined]
        threshold, f = calibrate(
            collected,
            answers,
            method,
            labels,
            router.remove_none,
            max_routed=max_routed,  # type: ignore[attr-defined]
        )
        typer.echo(f"dev F1 {f:.4f} at threshold {threshold}")
    else:
        typer.echo(f"error: objective must be f1 or fraction, not {objective!r}", err=True)
        raise typer.Exit(1)
    routed = len(routed_keys(collected.predicted, method, threshold))
    typer.echo(
        f"threshold {threshold:.4f}: routes {routed} of {len(collected.predicted)} dev entities"
    )
    config = {**nlp.config["components"][ROUTER], "threshold": threshold}
    config.pop("factory", None)
    nlp.remove_pipe(ROUTER)
    nlp.add_pipe(ROUTER, config=config)
    add_requirements(nlp)  # `spacy package` then requires the backbone's package
    nlp.to_disk(output)
    typer.echo(f"saved {output}")


@app.command("evaluate-linkner")
def evaluate_linkner(
    model: Path = typer.Argument(..., exists=True, file_okay=False, help="Trained pipeline"),
    dev_path: Path = typer.Argument(..., exists=True, dir_okay=False, help="Dev data (.spacy)"),
    test_path: Path = typer.Argument(..., exists=True, dir_okay=False, help="Test data"),
    output_dir: Path = typer.Argument(..., help="Writes linkner-<name>.json/.md/.png here"),
    name: str = typer.Option(..., help="Dataset name for the file names"),
    evidential_model: Path = typer.Option(
        None, help="The same pipeline trained with typing_loss evidential, for that method"
    ),
    base_url: str = typer.Option(None, help="OpenAI-compatible endpoint (or OPENAI_BASE_URL)"),
    llm: str = typer.Option("local", help="Model name sent to the endpoint"),
    cache_dir: Path = typer.Option(Path("cache/llm"), help="LLM response cache"),
    max_routed: float = typer.Option(0.3, help="Most entities calibration may route"),
    fixed_fraction: float = typer.Option(0.2, help="Also report routing this fraction"),
    fuse_weight: float = typer.Option(0.5, help="LLM weight when fusing"),
    limit: int = typer.Option(None, help="Use only the first N docs of each split"),
    dev_limit: int = typer.Option(
        None, help="Calibrate on only the first N dev docs (default: --limit)"
    ),
) -> None:
    """Per uncertainty method: threshold calibrated on dev (best F1), then on test the
    probe F1, routed fraction, LLM accuracy on routed spans, F1 after replace / fuse,
    oracle F1, ECE; plus a risk-coverage plot."""
    import time

    started = time.perf_counter()
    options = _router_options(base_url, llm, cache_dir)
    dev_limit = dev_limit or limit
    settings = (dev_path, test_path, dev_limit, limit, max_routed, fixed_fraction, fuse_weight)
    runs = [(model, lambda m: m != "evidential")]
    if evidential_model is not None:
        runs.append((evidential_model, lambda m: m == "evidential"))
    results: dict = {}
    curves: dict = {}
    stats: dict = {"calls": 0, "requests": 0, "cache_hits": 0, "prompt_tokens": 0}
    failures: dict = {}
    for path, wanted in runs:
        nlp = _load(path, options)
        methods = [m for m in _methods(nlp) if wanted(m)]
        found, test, client = _evaluate_methods(nlp, methods, *settings)
        results.update(found)
        for m in methods:
            u = np.array([p.uncertainty[m] for p in test.predicted])
            curves[m] = risk_coverage(
                u, np.array([float(p.label == p.gold) for p in test.predicted])
            )
        for key in stats:
            stats[key] += getattr(client.stats, key)
        for kind, n in client.stats.failures.items():
            failures[kind] = failures.get(kind, 0) + n
    run = {
        "llm": llm,
        "llm_calls": stats["calls"],
        "llm_requests": stats["requests"],
        "cache_hits": stats["cache_hits"],
        "failures": failures,
        "prompt_tokens": stats["prompt_tokens"],
        "wall_seconds": round(time.perf_counter() - started, 1),
        "docs_per_split": limit,
        "dev_docs": dev_limit,
        "max_routed": max_routed,
        "fuse_weight": fuse_weight,
    }
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / f"linkner-{name}.json").write_text(
        json.dumps({**results, "_run": run}, indent=2), encoding="utf8"
    )
    table = results_table(name, results, run, fixed_fraction)
    (output_dir / f"linkner-{name}.md").write_text(table, encoding="utf8")
    plot_risk_coverage(curves, output_dir / f"linkner-{name}-risk-coverage.png", name)
    typer.echo(table)


def _evaluate_methods(
    nlp, methods, dev_path, test_path, dev_limit, limit, max_routed, fixed_fraction, fuse_weight
):
    """Calibrate each method on dev, then score it on test; the LLM sees each entity once."""
    router = nlp.get_pipe(ROUTER)
    labels, remove_none = router.ner.labels, router.remove_none
    dev = collect(nlp, _gold(nlp, dev_path, dev_limit), methods, ROUTER)
    dev_answers, _ = ask(
        nlp, ROUTER, dev, set().union(*(_top_keys(dev, m, max_routed) for m in methods))
    )
    chosen = {
        m: calibrate(dev, dev_answers, m, labels, remove_none, max_routed=max_routed)[0]
        for m in methods
    }
    test = collect(nlp, _gold(nlp, test_path, limit), methods, ROUTER)
    need = set().union(
        *(routed_keys(test.predicted, m, chosen[m]) for m in methods),
        *(_top_keys(test, m, fixed_fraction) for m in methods),
    )
    answers, _ = ask(nlp, ROUTER, test, need)
    settings = (fixed_fraction, labels, remove_none, fuse_weight)
    found = {m: _scores(test, answers, m, chosen[m], *settings) for m in methods}
    for m in methods:  # replace vs fuse, compared on dev too
        routed = routed_keys(dev.predicted, m, chosen[m])
        for mode in ("replace", "fuse"):
            spans = final_spans(dev, routed, dev_answers, mode, labels, remove_none, fuse_weight)
            found[m][f"dev_{mode}_f"] = prf(spans, dev.gold)[2]
        found[m]["dev_probe_f"] = prf(
            final_spans(dev, set(), {}, "replace", labels, remove_none), dev.gold
        )[2]
    return found, test, router.client


def _scores(test, answers, method, threshold, fixed, labels, remove_none, fuse_weight) -> dict:
    def f1(routed, mode):
        spans = final_spans(test, routed, answers, mode, labels, remove_none, fuse_weight)
        return prf(spans, test.gold)[2]

    def accuracy(routed):
        got = [answers[k].label for k in routed if answers.get(k) and answers[k].label]
        gold = {p.key: p.gold for p in test.predicted}
        right = [label == gold[k] for k, label in zip(routed, got)]
        return sum(right) / len(right) if right else None

    routed = sorted(routed_keys(test.predicted, method, threshold))
    top = sorted(_top_keys(test, method, fixed))
    u = np.array([p.uncertainty[method] for p in test.predicted])
    correct = np.array([float(p.label == p.gold) for p in test.predicted])
    n = max(len(test.predicted), 1)
    return {
        "threshold": threshold,
        "probe_f": f1([], "replace"),
        "routed_fraction": len(routed) / n,
        "routed_llm_accuracy": accuracy(routed),
        "replace_f": f1(routed, "replace"),
        "fuse_f": f1(routed, "fuse"),
        "oracle_f": f1(routed, "oracle"),
        "ece": expected_calibration_error(1 - u, correct),
        "at_fixed_fraction": {
            "fraction": len(top) / n,
            "llm_accuracy": accuracy(top),
            "replace_f": f1(top, "replace"),
            "fuse_f": f1(top, "fuse"),
            "oracle_f": f1(top, "oracle"),
        },
        "non_entities_among_predicted": float(
            np.mean([p.gold == NONE_LABEL for p in test.predicted])
        )
        if test.predicted
        else 0.0,  # fmt: skip
    }
