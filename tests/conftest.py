import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

import pytest  # noqa: E402
import spacy  # noqa: E402
from spacy.language import Language  # noqa: E402

from .helpers import make_examples, tiny_lm_config  # noqa: E402
from .linkner_server import FakeLLMServer, Reply  # noqa: E402


@pytest.fixture(autouse=True)
def clean_openai_env(monkeypatch):
    """No test sees a real API key or endpoint from the environment."""
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "OPENAI_CUSTOM_HEADERS", "OPENAI_ADMIN_KEY"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def serve():
    """Start loopback OpenAI-compatible servers with scripted replies; stopped after."""
    servers: list[FakeLLMServer] = []

    def start(script=(Reply(),)) -> FakeLLMServer:
        servers.append(FakeLLMServer(script))
        return servers[-1]

    yield start
    for server in servers:
        server.stop()


@pytest.fixture(params=["llama", "gpt2"])
def architecture(request) -> str:
    return request.param


@pytest.fixture
def lm_nlp(architecture) -> Language:
    nlp = spacy.blank("en")
    nlp.add_pipe("causal_lm", config=tiny_lm_config(architecture))
    return nlp


@pytest.fixture
def ember_nlp(architecture) -> Language:
    """A blank pipeline with causal_lm + ember_ner, initialised on TRAIN_DATA."""
    nlp = spacy.blank("en")
    nlp.add_pipe("causal_lm", config=tiny_lm_config(architecture))
    nlp.add_pipe("ember_ner", config={"threshold": 0.3})
    nlp.initialize(lambda: make_examples(nlp))
    return nlp
