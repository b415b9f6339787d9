"""`python -m spacy_ember serve`: the web page and OpenAI-compatible API of a pipeline."""

import os
from pathlib import Path

import typer

from ..serve.settings import API_KEY_ENV, ServeSettings
from .app import app

_D = ServeSettings()  # the options' defaults


@app.command()
def serve(
    model: Path = typer.Argument(..., exists=True, file_okay=False, help="Trained pipeline"),
    host: str = typer.Option(_D.host, help="Address to bind (loopback unless you open it)"),
    port: int = typer.Option(_D.port),
    api_key: str = typer.Option(
        None, help=f"Require this key on every endpoint but /health (default: ${API_KEY_ENV})"
    ),
    model_name: str = typer.Option(_D.model_name, help="The model id clients see"),
    max_tokens: int = typer.Option(_D.max_tokens, help="Most tokens a request may generate"),
    max_prompt_tokens: int = typer.Option(_D.max_prompt_tokens, help="Longest prompt, in tokens"),
    queue_size: int = typer.Option(_D.queue_size, help="Requests waiting beside the running one"),
) -> None:
    """Serve a page (/) and OpenAI's chat API (/v1/chat/completions) streaming entities."""
    import spacy
    import uvicorn

    from ..serve.app import create_app

    if min(max_tokens, max_prompt_tokens) < 1 or queue_size < 0:
        typer.echo(
            "error: max-tokens and max-prompt-tokens must be >= 1, queue-size >= 0", err=True
        )
        raise typer.Exit(1)
    settings = ServeSettings(
        host=host,
        port=port,
        model_name=model_name,
        api_key=api_key or os.environ.get(API_KEY_ENV) or None,
        default_max_tokens=min(_D.default_max_tokens, max_tokens),
        max_tokens=max_tokens,
        max_prompt_tokens=max_prompt_tokens,
        queue_size=queue_size,
    )
    try:
        application = create_app(spacy.load(model), settings)
    except ValueError as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(1) from err
    typer.echo(f"spacy-ember: http://{host}:{port}/ (API: http://{host}:{port}/v1)")
    uvicorn.run(
        application,
        host=host,
        port=port,
        log_level="info",
        timeout_graceful_shutdown=int(settings.shutdown_grace_s),
    )
