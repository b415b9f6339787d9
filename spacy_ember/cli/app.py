"""The `python -m spacy_ember` Typer app the command modules register on."""

import typer

app = typer.Typer(
    name="spacy_ember", help="EMBER NER in a frozen causal LM, for spaCy.", no_args_is_help=True
)
