"""Command line: `python -m spacy_ember COMMAND`."""
from pathlib import Path

import typer

app = typer.Typer(name="spacy_ember", help="EMBER NER in a frozen causal LM, for spaCy.", no_args_is_help=True)


@app.command()
def convert(
    input_path: Path = typer.Argument(..., exists=True, dir_okay=False, help="CoNLL-2003 or WNUT-17 BIO file"),
    output_path: Path = typer.Argument(..., help="Where to write the .spacy file"),
    lang: str = typer.Option("en", help="Language of the blank vocab"),
) -> None:
    """Convert a BIO file (CoNLL-2003 columns or WNUT-17 TAB-separated) to .spacy."""
    import spacy

    from .corpora import CorpusFormatError
    from .corpora import convert as convert_file

    try:
        counts = convert_file(input_path, output_path, spacy.blank(lang).vocab)
    except CorpusFormatError as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(1)
    total = sum(counts["entities"].values())
    per_type = ", ".join(f"{k} {v}" for k, v in counts["entities"].items())
    typer.echo(
        f"{output_path}: {counts['sentences']} sentences, {counts['tokens']} tokens, "
        f"{total} entities ({per_type})"
    )


@app.command()
def info() -> None:
    """Versions of spacy-ember and the libraries it runs on."""
    import spacy
    import torch
    import transformers

    from .about import __version__

    typer.echo(f"spacy-ember {__version__}")
    typer.echo(f"spacy {spacy.__version__}, transformers {transformers.__version__}, torch {torch.__version__}")
    typer.echo(f"torch threads {torch.get_num_threads()}, cuda {torch.cuda.is_available()}")
