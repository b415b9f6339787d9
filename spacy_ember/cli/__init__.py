"""Command line: `python -m spacy_ember COMMAND`; each module registers its commands."""

from . import annotate, backbone, generate, linkner, project, serve  # noqa: F401 (commands)
from .app import app

__all__ = ["app"]
