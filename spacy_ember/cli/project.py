"""Commands of the `spacy project` workflow: convert, tune, visualise, report, benchmark."""

from pathlib import Path

import typer

from ..workflow.corpora import DEFAULT_UNIT, UNITS
from .app import app

UNIT_OPTION = typer.Option(
    DEFAULT_UNIT, help=f"One Doc per: {' or '.join(UNITS)} (documents: -DOCSTART- marks them)"
)


@app.command()
def convert(
    input_path: Path = typer.Argument(
        ..., exists=True, dir_okay=False, help="CoNLL-2003 or WNUT-17 BIO file"
    ),
    output_path: Path = typer.Argument(..., help="Where to write the .spacy file"),
    lang: str = typer.Option("en", help="Language of the blank vocab"),
    unit: str = UNIT_OPTION,
) -> None:
    """Convert a BIO file (CoNLL-2003 columns or WNUT-17 TAB-separated) to .spacy."""
    import spacy

    from ..workflow.corpora import CorpusFormatError
    from ..workflow.corpora import convert as convert_file

    try:
        counts = convert_file(input_path, output_path, spacy.blank(lang).vocab, unit)
    except (CorpusFormatError, ValueError) as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(1) from err
    total = sum(counts["entities"].values())
    per_type = ", ".join(f"{k} {v}" for k, v in counts["entities"].items())
    typer.echo(
        f"{output_path}: {counts['docs']} docs, {counts['sentences']} sentences, "
        f"{counts['tokens']} tokens, "
        f"{total} entities ({per_type})"
    )


@app.command("convert-dataset")
def convert_dataset(
    dataset: str = typer.Argument(..., help="conll2003 or wnut17"),
    data_dir: Path = typer.Argument(
        ..., exists=True, file_okay=False, help="Folder with the corpora"
    ),
    output_dir: Path = typer.Argument(..., help="Where to write <dataset>-<split>.spacy"),
    lang: str = typer.Option("en", help="Language of the blank vocab"),
    unit: str = UNIT_OPTION,
) -> None:
    """Convert the train, dev and test splits of a known corpus to .spacy files."""
    from ..workflow.corpora import DATASETS

    if dataset not in DATASETS:
        typer.echo(f"error: unknown dataset '{dataset}'; known: {', '.join(DATASETS)}", err=True)
        raise typer.Exit(1)
    for split, relative in DATASETS[dataset].items():
        source = data_dir / relative
        if not source.is_file():
            typer.echo(f"error: {source} not found (the {dataset} {split} split)", err=True)
            raise typer.Exit(1)
        convert(source, output_dir / f"{dataset}-{split}.spacy", lang, unit)


@app.command("tune-decoding")
def tune_decoding_cmd(
    model: Path = typer.Argument(..., exists=True, file_okay=False, help="Trained pipeline"),
    dev_path: Path = typer.Argument(..., exists=True, dir_okay=False, help="Dev data (.spacy)"),
    output: Path = typer.Option(
        None, "--output", "-o", help="Save the pipeline with the best setting here"
    ),
    component: str = typer.Option("ember_ner", help="Name of the ember_ner component"),
) -> None:
    """Pick threshold, type rule and reject_o on dev data; optionally save the best."""
    import spacy
    from spacy.tokens import DocBin

    from ..workflow.tuning import DECODING_SETTINGS, tune_decoding

    nlp = spacy.load(model)
    gold = list(DocBin().from_disk(dev_path).get_docs(nlp.vocab))
    results = tune_decoding(nlp, gold, component)
    typer.echo("| threshold | type_rule | reject_o | F1 | P | R |\n|---|---|---|---|---|---|")
    for r in results[:10]:
        typer.echo(
            f"| {r['threshold']} | {r['type_rule']} | {r['reject_o']} | {r['ents_f']:.4f} "
            f"| {r['ents_p']:.4f} | {r['ents_r']:.4f} |"
        )
    for rule in dict.fromkeys(r["type_rule"] for r in results):
        top = next(r for r in results if r["type_rule"] == rule)
        f1, threshold = top["ents_f"], top["threshold"]
        typer.echo(f"best with type_rule={rule}: F1 {f1:.4f} (threshold {threshold})")
    best = results[0]
    if output is not None:
        from ..workflow.requirements import add_requirements

        nlp.get_pipe(component).cfg.update(  # type: ignore[attr-defined]
            {k: best[k] for k in DECODING_SETTINGS}
        )
        add_requirements(nlp)  # `spacy package` then requires the backbone's package
        nlp.to_disk(output)
        chosen = ", ".join(f"{k}={best[k]}" for k in DECODING_SETTINGS)
        typer.echo(f"saved {output} with {chosen}")


@app.command("evaluate-case")
def evaluate_case(
    model: Path = typer.Argument(..., exists=True, file_okay=False, help="Trained pipeline"),
    dev_path: Path = typer.Argument(..., exists=True, dir_okay=False, help="Dev data (.spacy)"),
    output: Path = typer.Option(None, "--output", "-o", help="JSON file to write"),
) -> None:
    """Entity P/R/F on dev as written, lower-cased and upper-cased."""
    import json

    import spacy
    from spacy.tokens import DocBin

    from ..workflow.case import case_scores

    nlp = spacy.load(model)
    scores = case_scores(nlp, list(DocBin().from_disk(dev_path).get_docs(nlp.vocab)))
    typer.echo(" ".join(f"{k} {v:.4f}" for k, v in scores.items() if k.endswith("_f")))
    if output is not None:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(json.dumps(scores, indent=2) + "\n", encoding="utf8")


@app.command()
def visualize(
    model: Path = typer.Argument(..., exists=True, file_okay=False, help="Trained pipeline"),
    data_path: Path = typer.Argument(..., exists=True, dir_okay=False, help="Gold docs (.spacy)"),
    output: Path = typer.Argument(..., help="HTML file to write"),
    n_docs: int = typer.Option(50, "--n-docs", "-n", help="How many docs to show"),
) -> None:
    """Write a displaCy page of predicted entities (with scores) next to gold ones."""
    from itertools import islice

    import spacy
    from spacy.tokens import DocBin

    from ..workflow.visualize import render_comparison

    nlp = spacy.load(model)
    gold = list(islice(DocBin().from_disk(data_path).get_docs(nlp.vocab), n_docs))
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(render_comparison(nlp, gold, f"{model} on {data_path.name}"), encoding="utf8")
    typer.echo(f"{output}: {len(gold)} docs")


@app.command()
def report(
    metrics: list[Path] = typer.Argument(..., exists=True, help="spacy evaluate JSON files"),
    output: Path = typer.Option(None, "--output", "-o", help="Markdown file to write"),
) -> None:
    """Print (and write) a markdown table of entity P/R/F and per-type F."""
    from ..workflow.report import metrics_table

    table = metrics_table(metrics)
    typer.echo(table)
    if output is not None:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(table, encoding="utf8")


@app.command()
def benchmark(
    model: Path = typer.Argument(..., exists=True, file_okay=False, help="Trained pipeline"),
    data_path: Path = typer.Argument(..., exists=True, dir_okay=False, help="Docs (.spacy)"),
    output: Path = typer.Option(None, "--output", "-o", help="JSON file to write"),
    n_docs: int = typer.Option(300, "--n-docs", "-n", help="How many docs to run"),
    repeats: int = typer.Option(3, help="Interleaved rounds; medians are reported"),
    batch_size: int = typer.Option(64, help="nlp.pipe batch size"),
) -> None:
    """Throughput (words/s) with and without ember_ner: what the probes add to the LM."""
    import json
    from itertools import islice

    import spacy
    from spacy.tokens import DocBin

    from ..workflow.benchmark import pipeline_throughput

    nlp = spacy.load(model)
    texts = [doc.text for doc in islice(DocBin().from_disk(data_path).get_docs(nlp.vocab), n_docs)]
    result = pipeline_throughput(nlp, texts, repeats=repeats, batch_size=batch_size)
    typer.echo(
        f"{result['n_words']} words: {result['words_per_s_with_ember_ner']:.0f} words/s with "
        f"ember_ner, {result['words_per_s_without_ember_ner']:.0f} without; probes add "
        f"{100 * result['overhead']:.1f}% time (throughput ratio {result['throughput_ratio']:.3f})"
    )
    if output is not None:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(json.dumps(result, indent=2), encoding="utf8")
