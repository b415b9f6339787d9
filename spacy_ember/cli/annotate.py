"""`python -m spacy_ember annotate`: entities for a whole corpus file, resumable."""

from pathlib import Path

import typer

from ..annotate.local import AnnotateSettings, pipeline_overrides
from ..annotate.outputs import OUTPUT_FORMATS
from .app import app

_D = AnnotateSettings()  # the options' defaults
ENGINES = ("local", "ray")


@app.command()
def annotate(
    model: Path = typer.Argument(..., exists=True, file_okay=False, help="Trained pipeline"),
    source: Path = typer.Argument(..., exists=True, dir_okay=False, help=".txt, .jsonl, .parquet"),
    out_dir: Path = typer.Argument(..., file_okay=False, help="Shards, errors, manifest.json"),
    text_field: str = typer.Option(_D.text_field, help="The text's field (jsonl, parquet)"),
    id_field: str = typer.Option(
        _D.id_field, help="The id's field; rows without one get their index in the file"
    ),
    batch_size: int = typer.Option(_D.batch_size, help="nlp.pipe batch size"),
    shard_size: int = typer.Option(_D.shard_size, help="Rows per output shard"),
    output_format: str = typer.Option(
        _D.output_format, "--format", help=f"One of {', '.join(OUTPUT_FORMATS)}"
    ),
    engine: str = typer.Option("local", help="local, or ray (extra spacy-ember[ray])"),
    address: str = typer.Option(None, help="Ray cluster address ('auto'); none: a local cluster"),
    workers: int = typer.Option(1, help="Ray actors, each with its own pipeline"),
    gpus_per_worker: float = typer.Option(0.0, help="GPUs per Ray actor"),
    llm_cache: Path = typer.Option(
        None, help="linkner_router's response cache, a folder every worker can reach"
    ),
    feature_cache: bool = typer.Option(
        False, help="Keep the pipeline's LM feature cache (off: one pass never reuses it)"
    ),
) -> None:
    """Annotate every row of SOURCE into OUT_DIR; a re-run resumes after the last shard."""
    from tqdm import tqdm

    from ..annotate.outputs import job_description

    if engine not in ENGINES or output_format not in OUTPUT_FORMATS:
        typer.echo(
            f"error: --engine is one of {ENGINES}, --format one of {OUTPUT_FORMATS}", err=True
        )
        raise typer.Exit(1)
    if min(batch_size, shard_size, workers) < 1 or gpus_per_worker < 0:
        typer.echo(
            "error: need batch-size, shard-size, workers >= 1, gpus-per-worker >= 0", err=True
        )
        raise typer.Exit(1)
    settings = AnnotateSettings(text_field, id_field or None, shard_size, batch_size, output_format)
    overrides = pipeline_overrides(feature_cache, llm_cache)
    try:
        job = job_description(model, source, settings.__dict__)
        with tqdm(unit="row", desc="annotate") as bar:
            if engine == "local":
                import spacy

                from ..annotate.local import annotate_local

                nlp = spacy.load(model, config=overrides)
                report = annotate_local(nlp, source, out_dir, settings, job, bar.update)
            else:
                from ..annotate.ray_engine import annotate_ray

                report = annotate_ray(
                    model,
                    source,
                    out_dir,
                    settings,
                    job,
                    overrides=overrides,
                    address=address,
                    workers=workers,
                    gpus_per_worker=gpus_per_worker,
                    progress=bar.update,
                )
    except (ValueError, RuntimeError) as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(1) from err
    typer.echo(
        f"{out_dir}: {report.rows} rows annotated, {report.errors} errors (errors-*.jsonl), "
        f"{report.shards} shards ({report.skipped_shards} from an earlier run)"
    )
