from .cli import app
from .linkner import commands  # noqa: F401  (registers the LinkNER commands)

if __name__ == "__main__":
    app()
