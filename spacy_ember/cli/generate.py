"""`python -m spacy_ember generate`: text from the LM, with entities coloured live."""

from pathlib import Path

import typer

from ..generate.settings import GenerationSettings
from .app import app

_D = GenerationSettings()  # the options' defaults


@app.command()
def generate(
    model: Path = typer.Argument(..., exists=True, file_okay=False, help="Trained pipeline"),
    prompt: str = typer.Argument(..., help="What to ask the LM"),
    max_new_tokens: int = typer.Option(
        _D.max_new_tokens, "--max-new-tokens", "-n", help="Tokens to generate"
    ),
    sample: bool = typer.Option(_D.do_sample, "--sample/--greedy", help="Sample instead of greedy"),
    temperature: float = typer.Option(_D.temperature, help="Sampling temperature"),
    top_p: float = typer.Option(_D.top_p, help="Nucleus sampling mass"),
    seed: int = typer.Option(_D.seed, help="Random seed for sampling"),
    chat: bool = typer.Option(_D.chat, "--chat/--no-chat", help="Chat template (default: if any)"),
    html: Path = typer.Option(None, "--html", help="Write a displaCy page of the result here"),
) -> None:
    """Generate text and print it with entities coloured as they are recognised."""
    import spacy
    from spacy import displacy

    from ..generate.streaming import generate_with_entities
    from ..generate.terminal import LivePrinter
    from ..workflow.visualize import LABEL_COLORS

    nlp = spacy.load(model)
    settings = GenerationSettings(max_new_tokens, sample, temperature, top_p, seed, chat)
    try:
        doc = generate_with_entities(nlp, prompt, LivePrinter(), settings)
    except ValueError as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(1) from err
    for ent in doc.ents:
        typer.echo(f"  {ent.text!r} {ent.label_} {ent._.ember_score:.2f}")
    if html is not None:
        page = displacy.render(doc, style="ent", page=True, options={"colors": LABEL_COLORS})
        html.parent.mkdir(parents=True, exist_ok=True)
        html.write_text(page, encoding="utf8")
        typer.echo(f"{html}: displaCy page")
