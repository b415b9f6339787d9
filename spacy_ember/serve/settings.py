"""What the server allows and where it listens; each default written once.

Kept free of heavy imports: the command line reads its option defaults from here.
"""

from dataclasses import dataclass

API_KEY_ENV = "SPACY_EMBER_API_KEY"  # the server's API key, if not given by --api-key


@dataclass(frozen=True)
class ServeSettings:
    """Limits of one server. A request over a limit gets a 400, a full queue a 503."""

    host: str = "127.0.0.1"  # loopback only unless asked
    port: int = 8000
    model_name: str = "ember"  # the id /v1/models lists
    api_key: str | None = None  # None: no key is checked
    default_max_tokens: int = 256  # a chat request without max_tokens
    max_tokens: int = 1024  # the most a chat request may ask for
    max_prompt_tokens: int = 2048  # the longest prompt, chat template included
    queue_size: int = 8  # requests waiting for the LM beside the one it runs
    max_texts: int = 64  # texts per /v1/ner request
    max_text_chars: int = 100_000  # characters per /v1/ner text
    ner_batch_size: int = 8  # nlp.pipe batch size of /v1/ner
    shutdown_grace_s: float = 5.0  # how long a stream may finish after shutdown starts
